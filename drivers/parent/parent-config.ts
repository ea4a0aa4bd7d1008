import { RequestError } from '../../src/errors.js';
import { cidrContains, parseCidr, parseIp } from '../../src/net/address.js';
import type { LinkInfo } from '../../src/sys/index.js';
import type { DriverKind, NetworkRecord, NetworkSpec } from '../model.js';
import { GENERATED_LINK, shimName } from '../names.js';
import { OptionReader } from '../option-values.js';
import { firstOverlap } from '../subnets.js';
import type { ParentName } from './parent-name.js';

/** The kinds whose endpoints are child links of a parent interface. */
export type ParentKind = Extract<DriverKind, 'macvlan' | 'ipvlan'>;
const PARENT_KINDS: readonly DriverKind[] = ['macvlan', 'ipvlan'];

/** Keys both kinds read: Docker's `parent`, and tsnet's own. */
export const PARENT_OPTIONS = {
  parent: 'parent',
  vlan: 'tsnet.vlan',
  promisc: 'tsnet.promisc',
  hostShim: 'tsnet.host_shim',
  arpProbe: 'tsnet.arp_probe',
} as const;

/** One interface whose PROMISC flag a network holds on, with the setting to restore. */
export interface PromiscHold {
  iface: string;
  /** The flag before the first tsnet network turned it on (copied from that network's hold). */
  wasOn: boolean;
}

/** What every network on a parent keeps in its record; each kind adds its mode. */
export interface ParentConfig {
  parent: string;
  /** Set for an 802.1Q parent; `created` = tsnet made the subinterface and removes it with its last network. */
  vlan?: { base: string; id: number; created: boolean };
  /** Explicit com.docker.network.driver.mtu; without it the child links inherit the parent's. */
  mtu?: number;
  /** Empty unless -o tsnet.promisc=on: the parent, and the base of a VLAN parent. */
  promisc: PromiscHold[];
  /** The host's own child link on the parent, so the host reaches its containers. */
  hostShim?: { name: string; address: string };
  /** -o tsnet.arp_probe=on: an address a device on the LAN answers for is never handed out (tsnet's IPAM). */
  arpProbe?: boolean;
}

/** What the kernel says about the parent (and the base of a VLAN parent) at network creation. */
export interface ParentLinks {
  parent: LinkInfo | undefined;
  base: LinkInfo | undefined;
}

export type ParentNetwork<C extends ParentConfig = ParentConfig> = NetworkRecord<C>;

/** The networks of either kind on a parent: they share VLAN subinterfaces, PROMISC holds and subnets on a wire. */
export const parentNetworks = (networks: readonly NetworkRecord[]) =>
  networks.filter((n): n is ParentNetwork => PARENT_KINDS.includes(n.kind));

/** What a kind decides about the shared options. */
export interface ParentRules {
  kind: ParentKind;
  /** Why this network cannot have a host shim (its mode keeps the shim from hearing the containers); undefined: it can. */
  shimRefusal?: string;
  /** Why this network cannot probe ARP on the wire; undefined: it can. */
  arpProbeRefusal?: string;
}

/**
 * Checks the options both kinds share against the kernel and the other tsnet
 * networks, and returns the shared part of the config. Changes nothing.
 */
export function parseParentConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks, rules: ParentRules): ParentConfig {
  const options = new OptionReader(spec.options);
  const wantPromisc = options.onOff(PARENT_OPTIONS.promisc, false);
  const arpProbe = options.onOff(PARENT_OPTIONS.arpProbe, false);
  if (arpProbe && rules.arpProbeRefusal) throw new RequestError(PARENT_OPTIONS.arpProbe, rules.arpProbeRefusal);
  const siblings = parentNetworks(others);

  const parentLinks = [parent.name, ...(parent.vlan ? [parent.vlan.base] : [])];
  if (parentLinks.includes('lo')) throw new RequestError(PARENT_OPTIONS.parent, `the loopback interface cannot be a ${rules.kind} parent`);
  const shimOwner = siblings.find((n) => n.config.hostShim && parentLinks.includes(n.config.hostShim.name));
  if (shimOwner) throw new RequestError(PARENT_OPTIONS.parent, `${parent.name} is the host shim of network ${shimOwner.id.slice(0, 12)}, not a parent`);
  const own = parentLinks.find((name) => GENERATED_LINK.test(name));
  if (own) throw new RequestError(PARENT_OPTIONS.parent, `${own} is a link tsnet made for one of its networks, not a parent`);
  if (!links.parent) {
    if (!parent.vlan) throw new RequestError(PARENT_OPTIONS.parent, `interface ${parent.name} does not exist (only <if>.<vlan> parents are created)`);
    if (!links.base) throw new RequestError(PARENT_OPTIONS.parent, `base interface ${parent.vlan.base} of VLAN ${parent.name} does not exist`);
  }
  // A link is the port of one kind of children: the kernel refuses an ipvlan on a macvlan parent and the reverse.
  const otherKind = siblings.find((n) => n.kind !== rules.kind && n.config.parent === parent.name);
  if (otherKind) throw new RequestError(PARENT_OPTIONS.parent, `${parent.name} is the parent of ${otherKind.kind} network ${otherKind.id.slice(0, 12)}; a link carries macvlan or ipvlan children, not both`);
  if (spec.mtu !== undefined && links.parent && spec.mtu > links.parent.mtu) {
    throw new RequestError('com.docker.network.driver.mtu', `${spec.mtu} is above the MTU ${links.parent.mtu} of parent ${parent.name}`);
  }

  checkSubnets(spec, siblings, parent.name, rules.kind);
  const hostShim = parseHostShim(options, spec, rules.shimRefusal);

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
    ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
    promisc: promiscIfaces.map((iface) => ({ iface, wasOn: originalPromisc(iface, siblings, iface === parent.name ? links.parent : links.base) })),
    ...(hostShim ? { hostShim: { name: shimName(spec.id), address: hostShim } } : {}),
    ...(arpProbe ? { arpProbe } : {}),
  };
}

/** Several networks may share a parent, but not an address space on it. */
function checkSubnets(spec: NetworkSpec, siblings: readonly ParentNetwork[], parent: string, kind: ParentKind): void {
  if (spec.ipv4.length === 0) throw new RequestError('IPv4Data', `${kind} networks need an IPv4 subnet`);
  for (const [index, subnet] of spec.ipv4.entries()) {
    if (parseCidr(subnet.pool)?.cidr.prefix === 0) throw new RequestError(`IPv4Data.${index}.Pool`, `"${subnet.pool}" cannot be a ${kind} subnet`);
  }
  const overlap = firstOverlap(spec, siblings.filter((n) => n.config.parent === parent));
  if (overlap) {
    throw new RequestError(PARENT_OPTIONS.parent, `${overlap.mine} overlaps ${overlap.theirs} of network ${overlap.other.id.slice(0, 12)} on the same parent ${parent}`);
  }
}

/** The shim address must be a free-looking address of the network's first IPv4 subnet. */
function parseHostShim(options: OptionReader, spec: NetworkSpec, refusal: string | undefined): string | undefined {
  const address = options.ipv4(PARENT_OPTIONS.hostShim);
  if (address === undefined) return undefined;
  if (refusal) throw new RequestError(PARENT_OPTIONS.hostShim, refusal);
  const subnet = spec.ipv4[0]!;
  if (!cidrContains(parseCidr(subnet.pool)!.cidr, parseIp(address)!)) throw new RequestError(PARENT_OPTIONS.hostShim, `${address} is not in the subnet ${subnet.pool}`);
  if (address === subnet.gateway) throw new RequestError(PARENT_OPTIONS.hostShim, `${address} is the gateway of ${subnet.pool}`);
  return address;
}

/**
 * The PROMISC setting to restore when the last tsnet network holding `iface`
 * goes: what an earlier holder recorded, else what the kernel shows now.
 */
function originalPromisc(iface: string, siblings: readonly ParentNetwork[], link: LinkInfo | undefined): boolean {
  for (const other of siblings) {
    const hold = other.config.promisc.find((h) => h.iface === iface);
    if (hold) return hold.wasOn;
  }
  return link?.flags.includes('PROMISC') ?? false;
}
