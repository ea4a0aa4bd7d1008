import type { ForwardingTable } from './fdb.js';
import type { Ip, LinkInfo } from './ip.js';
import type { Xfrm, XfrmView } from './xfrm.js';

/** A link as one `ip -json -details address show` shows it: its details and its addresses (`address/prefix`). */
export interface LinkView extends LinkInfo {
  addresses: string[];
}

/**
 * What the host netns holds of links, addresses and routes at one moment,
 * read in one go for a check of every network (drift, `tsnet doctor`):
 * each network compares itself against it without a read of its own.
 */
export interface KernelView {
  links: ReadonlyMap<string, LinkView>;
  /** IPv4 routes of the main table as `dst dev`, e.g. `10.1.2.3 dev tss0123456789ab`. */
  routes: ReadonlySet<string>;
  /** The static entries of each VXLAN device: what an overlay's peers are made of. */
  vxlanEntries: ReadonlyMap<string, VxlanEntries>;
  /** tsnet's IPsec SAs and policies (encrypted overlays); read only while a VXLAN device exists. */
  xfrm?: XfrmView;
}

/** A VXLAN device's permanent neighbour entries (IP → MAC) and its own forwarding entries (MAC → underlay address). */
export interface VxlanEntries {
  neighbours: ReadonlyMap<string, string>;
  destinations: ReadonlyMap<string, string>;
}

/** One program for links and addresses, one for routes; with VXLAN devices, one for their neighbours, one per device for its forwarding entries and two for the IPsec tables. */
export async function readKernelView(ip: Ip, fdb: ForwardingTable, xfrm?: Xfrm): Promise<KernelView> {
  const [shown, routes] = await Promise.all([ip.detailedAddresses(), ip.routes(4)]);
  const links = new Map(shown.map(({ addr_info, ...link }) => [link.ifname, { ...link, addresses: addr_info.map((a) => `${a.local}/${a.prefixlen}`) }]));
  const vxlans = [...links.values()].filter((l) => l.linkinfo?.info_kind === 'vxlan').map((l) => l.ifname);
  const [vxlanEntries, ipsec] = await Promise.all([readVxlanEntries(ip, fdb, vxlans), vxlans.length > 0 ? xfrm?.read() : undefined]);
  return { links, routes: new Set(routes.filter((r) => r.dev).map((r) => `${r.dst} dev ${r.dev}`)), vxlanEntries, ...(ipsec ? { xfrm: ipsec } : {}) };
}

async function readVxlanEntries(ip: Ip, fdb: ForwardingTable, devices: readonly string[]): Promise<Map<string, VxlanEntries>> {
  if (devices.length === 0) return new Map();
  const [neighbours, destinations] = await Promise.all([ip.permanentNeighbours(), Promise.all(devices.map((d) => fdb.destinations(d)))]);
  return new Map(devices.map((device, i) => [device, { neighbours: new Map(neighbours.filter((n) => n.dev === device).map((n) => [n.ip, n.mac])), destinations: destinations[i]! }]));
}
