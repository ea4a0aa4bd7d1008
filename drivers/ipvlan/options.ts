import { RequestError } from '../../src/errors.js';
import type { Segments } from '../../src/overlay/segments.js';
import type { NetworkRecord, NetworkSpec } from '../model.js';
import { OptionReader } from '../option-values.js';
import { type ParentConfig, type ParentLinks, PARENT_OPTIONS, parentNetworks, parseParentConfig } from '../parent/parent-config.js';
import type { ParentName } from '../parent/parent-name.js';

/** Docker's ipvlan keys (`parent`, `ipvlan_mode`, `ipvlan_flag`) mean the same with tsnet; the rest are tsnet's own. */
export const IPVLAN_OPTIONS = { ...PARENT_OPTIONS, mode: 'ipvlan_mode', flag: 'ipvlan_flag', routes: 'tsnet.routes' } as const;

export const IPVLAN_MODES = ['l2', 'l3', 'l3s'] as const;
export type IpvlanMode = (typeof IPVLAN_MODES)[number];
export const IPVLAN_FLAGS = ['bridge', 'private', 'vepa'] as const;
export type IpvlanFlag = (typeof IPVLAN_FLAGS)[number];

export interface IpvlanConfig extends ParentConfig {
  mode: IpvlanMode;
  flag: IpvlanFlag;
  /** The MAC every child shares (the parent's, or its base's for a VLAN tsnet creates): what the endpoints show as theirs. */
  parentMac?: string;
  /** -o tsnet.routes=on: routes to the shared pool's containers on the other hosts, through those hosts (peer-routes.ts). */
  routes?: { pool: string };
}

/** l3 and l3s: the host routes the containers' traffic; nothing of theirs is bridged onto the wire. */
export const isRouted = (config: IpvlanConfig): boolean => config.mode !== 'l2';

/**
 * Checks an ipvlan network's options against the kernel and the other tsnet
 * networks and returns its config. Changes nothing.
 */
export function parseIpvlanConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks, segments: Segments | undefined): IpvlanConfig {
  const options = new OptionReader(spec.options);
  const mode = options.oneOf(IPVLAN_OPTIONS.mode, IPVLAN_MODES, 'l2');
  const flag = options.oneOf(IPVLAN_OPTIONS.flag, IPVLAN_FLAGS, 'bridge');
  // Mode and flag belong to the parent's ipvlan port, not to a child: a child of another mode would switch every network on the parent to it.
  const sameParent = parentNetworks(others).filter((n): n is NetworkRecord<IpvlanConfig> => n.kind === 'ipvlan' && n.config.parent === parent.name);
  const other = sameParent.find((n) => n.config.mode !== mode || n.config.flag !== flag);
  if (other) {
    const key = other.config.mode !== mode ? IPVLAN_OPTIONS.mode : IPVLAN_OPTIONS.flag;
    throw new RequestError(key, `${parent.name} carries ipvlan network ${other.id.slice(0, 12)} in ${other.config.mode} ${other.config.flag}; the kernel has one ipvlan mode and flag per parent, so this network needs ${other.config.mode} ${other.config.flag} too`);
  }
  if (mode !== 'l2') refuseWireGateway(spec, mode);
  const rules = {
    kind: 'ipvlan' as const,
    // private keeps children from each other, vepa sends them through the switch: the shim would not hear its containers.
    ...(flag !== 'bridge' ? { shimRefusal: `needs ipvlan_flag=bridge, not ${flag}` } : {}),
    ...(mode !== 'l2' ? { arpProbeRefusal: `needs ipvlan_mode=l2: in ${mode} the subnet is routed to this host, not on the wire` } : {}),
  };
  const parentMac = links.parent?.address ?? links.base?.address;
  const shared = parseParentConfig(spec, others, parent, links, rules);
  const routes = options.onOff(IPVLAN_OPTIONS.routes, false) ? routedPool(spec, mode, segments) : undefined;
  return { ...shared, mode, flag, ...(parentMac ? { parentMac } : {}), ...(routes ? { routes } : {}) };
}

/** tsnet.routes=on: the shared pool whose containers on other hosts get routes here. */
function routedPool(spec: NetworkSpec, mode: IpvlanMode, segments: Segments | undefined): { pool: string } {
  const key = IPVLAN_OPTIONS.routes;
  if (mode === 'l2') throw new RequestError(key, 'needs ipvlan_mode=l3 or l3s: l2 containers answer ARP on the wire themselves');
  // The store's holds are followed per IPv4 pool; IPv6 containers on other hosts would be unreachable without a word.
  if (spec.ipv6) throw new RequestError(key, 'routes IPv4 only so far; create the network without --ipv6');
  if (!segments) throw new RequestError(key, 'needs the cluster store, where the other hosts\' containers are: run tsnet daemon with --cluster-store');
  const subnet = spec.ipv4[0]!.pool;
  const pool = segments.sharedPool(subnet);
  if (!pool) throw new RequestError(key, `needs a shared pool: create the network with --ipam-driver tsnet --ipam-opt tsnet.pool=NAME (${subnet} is no shared pool of this host)`);
  return { pool };
}

/**
 * In l3 and l3s the containers have no gateway: their default route is the
 * interface itself and the host routes. A --gateway the user chose would be
 * an address on the wire that nothing answers for, so it is refused; the
 * one an IPAM picks by itself is only kept out of the containers' way.
 */
function refuseWireGateway(spec: NetworkSpec, mode: IpvlanMode): void {
  for (const [index, subnet] of [...spec.ipv4, ...spec.ipv6Subnets].entries()) {
    if (subnet.gatewayChosen) {
      const family = index < spec.ipv4.length ? 'IPv4Data' : 'IPv6Data';
      const at = index < spec.ipv4.length ? index : index - spec.ipv4.length;
      throw new RequestError(`${family}.${at}.Gateway`, `ipvlan_mode=${mode} has no gateway on the wire (containers route through the host): create the network without --gateway ${subnet.gateway}`);
    }
  }
}
