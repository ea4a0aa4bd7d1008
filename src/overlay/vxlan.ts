import type { ForwardingTable } from '../sys/fdb.js';
import type { Ip } from '../sys/ip.js';

/** VXLAN adds 50 bytes to every frame on an IPv4 underlay (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14), 70 on IPv6. */
export const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;
/** IANA's VXLAN port, Linux's default is 8472. */
export const DEFAULT_VXLAN_PORT = 4789;

/** One segment's VXLAN device on one host. */
export interface VxlanDevice {
  name: string;
  vni: number;
  /** This host's underlay address: the source of what it sends, and where the others send to it. */
  local: string;
  port: number;
  /** The segment's bridge on this host, which the device is a port of. */
  bridge: string;
  mtu: number;
}

/**
 * A container of the segment on another host: its address and MAC, and
 * that host's underlay address. One neighbour entry (IP → MAC, which the
 * device answers ARP and NDP with) and one forwarding entry (MAC → host).
 */
export interface RemotePeer {
  ip: string;
  mac: string;
  host: string;
}

/**
 * Where a segment's remote peers go on this host: a VXLAN device's entries
 * (SegmentPeers), or routes to each peer through its host (an ipvlan l3
 * network's tsnet.routes). Made to hold exactly `wanted`, by address.
 */
export interface PeerTable {
  set(wanted: readonly RemotePeer[]): Promise<{ written: number; removed: number }>;
}

/**
 * The device: no learning (every entry comes from the store), ARP/NDP
 * answered from its neighbour table (`proxy`), and no l2miss/l3miss nor any
 * flooding entry, so broadcast stays on this host: the same gateway address
 * on every host's bridge is safe, and each host routes and NATs its own
 * containers' traffic.
 */
export function vxlanLines(device: VxlanDevice): string[][] {
  return [
    ['link', 'add', 'name', device.name, 'type', 'vxlan', 'id', String(device.vni), 'local', device.local, 'dstport', String(device.port), 'nolearning', 'proxy'],
    ['link', 'set', 'dev', device.name, 'master', device.bridge, 'mtu', String(device.mtu), 'up'],
  ];
}

/** The neighbour entry of a peer, replaced whatever was there (a MAC or an address can move between hosts). */
export const neighbourLine = (device: string, peer: RemotePeer): string[] => ['neigh', 'replace', peer.ip, 'lladdr', peer.mac, 'dev', device, 'nud', 'permanent'];
export const forwardingLine = (device: string, peer: RemotePeer): string[] => ['fdb', 'replace', peer.mac, 'dev', device, 'dst', peer.host, 'self', 'permanent'];

const peerKey = (peer: RemotePeer) => `${peer.ip} ${peer.mac} ${peer.host}`;

/**
 * The remote peers of one segment as this host's kernel holds them, kept
 * equal to what the store says: each change writes only the difference
 * (new or moved peers replaced, gone ones deleted), neighbour and
 * forwarding entries together.
 */
export class SegmentPeers implements PeerTable {
  private readonly applied = new Map<string, RemotePeer>();
  /** Forwarding entries found without a neighbour entry (adoptKernel): removed by the next set() unless wanted. */
  private readonly strays = new Set<string>();

  constructor(
    private readonly device: string,
    private readonly ip: Ip,
    private readonly fdb: ForwardingTable,
  ) {}

  /** Makes the kernel hold exactly `wanted` (by address). */
  async set(wanted: readonly RemotePeer[]): Promise<{ written: number; removed: number }> {
    const byIp = new Map(wanted.map((p) => [p.ip, p]));
    const gone = [...this.applied.values()].filter((p) => byIp.get(p.ip) === undefined);
    const changed = wanted.filter((p) => this.applied.get(p.ip) === undefined || peerKey(this.applied.get(p.ip)!) !== peerKey(p));
    // A MAC that left (its container gone, or moved to another address) loses its forwarding entry.
    const wantedMacs = new Set(wanted.map((p) => p.mac));
    const macsGone = new Set([...this.applied.values()].map((p) => p.mac).concat([...this.strays]).filter((mac) => !wantedMacs.has(mac)));
    for (const peer of gone) await this.ip.undo(['neigh', 'del', peer.ip, 'dev', this.device]);
    for (const mac of macsGone) await this.fdb.remove(this.device, mac);
    this.strays.clear();
    await this.ip.batch(changed.map((p) => neighbourLine(this.device, p)));
    await this.fdb.batch(changed.map((p) => forwardingLine(this.device, p)));
    for (const peer of gone) this.applied.delete(peer.ip);
    for (const peer of changed) this.applied.set(peer.ip, peer);
    return { written: changed.length, removed: gone.length };
  }

  /**
   * Takes what the kernel holds as written (a restarted daemon): peers
   * removed from the store while it was away are then deleted by the next
   * set(), and the rest are not written again.
   */
  async adoptKernel(): Promise<void> {
    const [neighbours, destinations] = await Promise.all([this.ip.permanentNeighbours(this.device), this.fdb.destinations(this.device)]);
    for (const { ip, mac } of neighbours) this.applied.set(ip, { ip, mac, host: destinations.get(mac) ?? '' });
    const macs = new Set(neighbours.map((n) => n.mac));
    for (const mac of destinations.keys()) if (!macs.has(mac)) this.strays.add(mac);
  }

  /** What this table wrote and believes the kernel holds. */
  peers(): RemotePeer[] {
    return [...this.applied.values()];
  }
}
