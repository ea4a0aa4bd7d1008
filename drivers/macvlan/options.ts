import { RequestError } from '../../src/errors.js';
import { cidrContains, parseCidr, parseIp } from '../../src/net/address.js';
import type { LinkInfo } from '../../src/sys/index.js';
import type { NetworkRecord, NetworkSpec } from '../model.js';
import { shimName } from '../names.js';
import { OptionReader } from '../option-values.js';
import { firstOverlap } from '../subnets.js';
import type { ParentName } from './parent.js';

/** Docker's macvlan keys (`parent`, `macvlan_mode`) mean the same with tsnet; the rest are tsnet's own. */
export const MACVLAN_OPTIONS = {
  parent: 'parent',
  mode: 'macvlan_mode',
  vlan: 'tsnet.vlan',
  promisc: 'tsnet.promisc',
  hostShim: 'tsnet.host_shim',
  arpProbe: 'tsnet.arp_probe',
} as const;

export const MACVLAN_MODES = ['bridge', 'vepa', 'private', 'passthru'] as const;
export type MacvlanMode = (typeof MACVLAN_MODES)[number];

/** One interface whose PROMISC flag a network holds on, with the setting to restore. */
export interface PromiscHold {
  iface: string;
  /** The flag before the first tsnet network turned it on (copied from that network's hold). */
  wasOn: boolean;
}

export interface MacvlanConfig {
  parent: string;
  /** Set for an 802.1Q parent; `created` = tsnet made the subinterface and removes it with its last network. */
  vlan?: { base: string; id: number; created: boolean };
  mode: MacvlanMode;
  /** Explicit com.docker.network.driver.mtu; without it the macvlan inherits the parent's. */
  mtu?: number;
  /** Empty unless -o tsnet.promisc=on: the parent, and the base of a VLAN parent. */
  promisc: PromiscHold[];
  /** The host's own macvlan on the parent, so the host reaches its containers. */
  hostShim?: { name: string; address: string };
  /** -o tsnet.arp_probe=on: an address a device on the LAN answers for is never handed out (tsnet's IPAM). */
  arpProbe?: boolean;
}

/** What the kernel says about the parent (and the base of a VLAN parent) at network creation. */
export interface ParentLinks {
  parent: LinkInfo | undefined;
  base: LinkInfo | undefined;
}

export const macvlanNetworks = (networks: readonly NetworkRecord[]) =>
  networks.filter((n): n is NetworkRecord<MacvlanConfig> => n.kind === 'macvlan');

/**
 * Checks a macvlan network's options against the kernel and the other tsnet
 * networks and returns its config. Changes nothing.
 */
export function parseMacvlanConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): MacvlanConfig {
  const options = new OptionReader(spec.options);
  const mode = options.oneOf(MACVLAN_OPTIONS.mode, MACVLAN_MODES, 'bridge');
  const wantPromisc = options.onOff(MACVLAN_OPTIONS.promisc, false);
  const arpProbe = options.onOff(MACVLAN_OPTIONS.arpProbe, false);
  const siblings = macvlanNetworks(others);

  const parentLinks = [parent.name, ...(parent.vlan ? [parent.vlan.base] : [])];
  if (parentLinks.includes('lo')) throw new RequestError(MACVLAN_OPTIONS.parent, 'the loopback interface cannot be a macvlan parent');
  const shimOwner = siblings.find((n) => n.config.hostShim && parentLinks.includes(n.config.hostShim.name));
  if (shimOwner) throw new RequestError(MACVLAN_OPTIONS.parent, `${parent.name} is the host shim of network ${shimOwner.id.slice(0, 12)}, not a parent`);
  if (!links.parent) {
    if (!parent.vlan) throw new RequestError(MACVLAN_OPTIONS.parent, `interface ${parent.name} does not exist (only <if>.<vlan> parents are created)`);
    if (!links.base) throw new RequestError(MACVLAN_OPTIONS.parent, `base interface ${parent.vlan.base} of VLAN ${parent.name} does not exist`);
  }
  if (spec.mtu !== undefined && links.parent && spec.mtu > links.parent.mtu) {
    throw new RequestError('com.docker.network.driver.mtu', `${spec.mtu} is above the MTU ${links.parent.mtu} of parent ${parent.name}`);
  }

  checkSubnets(spec, siblings, parent.name);
  const hostShim = parseHostShim(options, spec, mode);

  const sameParent = siblings.filter((n) => n.config.parent === parent.name);
  const vlan = parent.vlan && {
    ...parent.vlan,
    // A subinterface another tsnet network created stays tsnet's: the last user removes it.
    created: !links.parent || sameParent.some((n) => n.config.vlan?.created === true),
  };
  const promiscIfaces = wantPromisc ? parentLinks : [];
  return {
    parent: parent.name,
    ...(vlan ? { vlan } : {}),
    mode,
    ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
    promisc: promiscIfaces.map((iface) => ({ iface, wasOn: originalPromisc(iface, siblings, iface === parent.name ? links.parent : links.base) })),
    ...(hostShim ? { hostShim: { name: shimName(spec.id), address: hostShim } } : {}),
    ...(arpProbe ? { arpProbe } : {}),
  };
}

/** Several networks may share a parent, but not an address space on it. */
function checkSubnets(spec: NetworkSpec, siblings: readonly NetworkRecord<MacvlanConfig>[], parent: string): void {
  if (spec.ipv4.length === 0) throw new RequestError('IPv4Data', 'a macvlan network needs an IPv4 subnet');
  for (const [index, subnet] of spec.ipv4.entries()) {
    if (parseCidr(subnet.pool)?.cidr.prefix === 0) throw new RequestError(`IPv4Data.${index}.Pool`, `"${subnet.pool}" cannot be a macvlan subnet`);
  }
  const overlap = firstOverlap(spec, siblings.filter((n) => n.config.parent === parent));
  if (overlap) {
    throw new RequestError(MACVLAN_OPTIONS.parent, `${overlap.mine} overlaps ${overlap.theirs} of network ${overlap.other.id.slice(0, 12)} on the same parent ${parent}`);
  }
}

/** The shim address must be a free-looking address of the network's first IPv4 subnet. */
function parseHostShim(options: OptionReader, spec: NetworkSpec, mode: MacvlanMode): string | undefined {
  const address = options.ipv4(MACVLAN_OPTIONS.hostShim);
  if (address === undefined) return undefined;
  // The shim is a bridge-mode sibling; private and vepa children never hear it, passthru allows no sibling.
  if (mode !== 'bridge') throw new RequestError(MACVLAN_OPTIONS.hostShim, `needs macvlan_mode=bridge, not ${mode}`);
  const subnet = spec.ipv4[0]!;
  if (!cidrContains(parseCidr(subnet.pool)!.cidr, parseIp(address)!)) throw new RequestError(MACVLAN_OPTIONS.hostShim, `${address} is not in the subnet ${subnet.pool}`);
  if (address === subnet.gateway) throw new RequestError(MACVLAN_OPTIONS.hostShim, `${address} is the gateway of ${subnet.pool}`);
  return address;
}

/**
 * The PROMISC setting to restore when the last tsnet network holding `iface`
 * goes: what an earlier holder recorded, else what the kernel shows now.
 */
function originalPromisc(iface: string, siblings: readonly NetworkRecord<MacvlanConfig>[], link: LinkInfo | undefined): boolean {
  for (const other of siblings) {
    const hold = other.config.promisc.find((h) => h.iface === iface);
    if (hold) return hold.wasOn;
  }
  return link?.flags.includes('PROMISC') ?? false;
}
