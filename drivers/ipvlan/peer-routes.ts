import type { PeerTable, RemotePeer } from '../../src/overlay/vxlan.js';
import { cidrContains, parseCidr, parseIp } from '../../src/net/address.js';
import type { Ip } from '../../src/sys/index.js';

/**
 * The protocol number on tsnet's peer routes: rtnetlink leaves the numbers
 * above RTPROT_STATIC to routing daemons, and one of its own tells tsnet's
 * routes from the user's and other daemons' after a restart.
 */
export const PEER_ROUTE_PROTO = '116';

/** `ip route replace` words of one peer: its address through its host, out of the parent. */
export const peerRouteLine = (parent: string, peer: RemotePeer): string[] => ['route', 'replace', `${peer.ip}/32`, 'via', peer.host, 'dev', parent, 'proto', PEER_ROUTE_PROTO];

/**
 * tsnet.routes on an ipvlan l3 network: a route on this host to every
 * container of the shared pool on another host, through that host's
 * address (flannel's host-gw idea). The other host's ipvlan takes the
 * packet by its destination address, so no router needs to know the subnet.
 * The next hop must be on the parent's wire, as for any host-gw setup.
 */
export class PeerRoutes implements PeerTable {
  /** Peer address → the host it is routed through, as written. */
  private readonly applied = new Map<string, string>();

  constructor(
    private readonly ip: Ip,
    private readonly parent: string,
    /** The network's IPv4 subnet: another network's peer routes on the same parent are not this table's. */
    private readonly subnet: string,
  ) {}

  async set(wanted: readonly RemotePeer[]): Promise<{ written: number; removed: number }> {
    const byIp = new Map(wanted.map((p) => [p.ip, p.host]));
    const gone = [...this.applied.keys()].filter((ip) => !byIp.has(ip));
    const changed = wanted.filter((p) => this.applied.get(p.ip) !== p.host);
    for (const ip of gone) await this.ip.undo(['route', 'del', `${ip}/32`, 'dev', this.parent, 'proto', PEER_ROUTE_PROTO]);
    await this.ip.batch(changed.map((p) => peerRouteLine(this.parent, p)));
    for (const ip of gone) this.applied.delete(ip);
    for (const peer of changed) this.applied.set(peer.ip, peer.host);
    return { written: changed.length, removed: gone.length };
  }

  /** Takes the routes of tsnet's protocol on the parent as written (a restarted daemon): the next set() removes those the store dropped meanwhile. */
  async adoptKernel(): Promise<void> {
    const subnet = parseCidr(this.subnet)!.cidr;
    for (const route of await this.ip.routes(4)) {
      const address = parseIp(route.dst);
      if (route.dev === this.parent && route.protocol === PEER_ROUTE_PROTO && route.gateway && address && cidrContains(subnet, address)) this.applied.set(route.dst, route.gateway);
    }
  }
}
