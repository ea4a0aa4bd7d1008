import type { Logger } from 'pino';
import { BackgroundTask, errorText } from '../cluster/background-task.js';
import { deadlineFromNow, type EtcdClient } from '../cluster/etcd-client.js';
import type { HostRegistry } from '../cluster/host-registry.js';
import { decodeValue, PoolDefinition, PoolKeys } from '../cluster/keys.js';
import { segmentVni } from '../cluster/pool-definition.js';
import { RequestError } from '../errors.js';
import { canonicalCidr, parseCidr } from '../net/address.js';
import type { OverlayGate } from '../sys/overlay-gate.js';
import { type PeerWriteHooks, SegmentFollower } from './segment-follower.js';
import type { SegmentMember } from './segment-members.js';
import type { Underlay } from './underlay.js';
import type { PeerTable, RemotePeer } from './vxlan.js';

/** An overlay network's segment, as its host sees it. */
export interface Segment {
  /** The shared pool's name: the segment's identity across hosts. */
  pool: string;
  vni: number;
  underlay: Underlay;
}

/** What the bridge driver asks of the cluster for an overlay network (docs/overlay.md). */
export interface Segments {
  /** The segment of the shared pool on `subnet`: its VNI (given now, when it has none), and this host's underlay. `field` names the option a refusal blames. */
  join(subnet: string, field: string): Promise<Segment>;
  /** The name of this host's shared pool on `subnet`; undefined when it has none there. */
  sharedPool(subnet: string): string | undefined;
  /** The VNI of the shared pool on `subnet` when it is an overlay segment; undefined for any other subnet. */
  vniOf(subnet: string): Promise<number | undefined>;
  /** Lets VXLAN on `port` in from the cluster's hosts only, for the network: before its VXLAN device is made, kept as hosts come and go, until unfollow. */
  guard(networkId: string, port: number): Promise<void>;
  /** Keeps `peers` equal to the pool's containers on other hosts in the store, until unfollow; followed already, `peers` (which adopted the kernel's entries) takes over and is repaired. */
  follow(networkId: string, pool: string, peers: PeerTable): Promise<void>;
  unfollow(networkId: string): void;
  /** The peers the store asks of the network's device, to compare with the kernel; undefined while not known or being written. */
  wanted(networkId: string): RemotePeer[] | undefined;
  /** The hosts with containers on the network's segment; undefined before the store was read. */
  members(networkId: string): SegmentMember[] | undefined;
}

/** The shared pools this host has networks on (the shared pool service's record). */
export type LocalPools = () => ReadonlyArray<{ name: string; subnet: string }>;

/**
 * Segments on the cluster store: one follower per overlay network, the
 * daemon's host registry, and the gate that lets VXLAN in from the
 * registered hosts only, up before the first VXLAN device and gone with the last.
 */
export class ClusterSegments implements Segments {
  private readonly followers = new Map<string, { pool: string; follower: SegmentFollower }>();
  /** The VXLAN port the gate guards, while an overlay network is there. */
  private port: number | undefined;
  /** The overlay networks the gate is up for. */
  private readonly guarded = new Set<string>();
  private readonly gateTask: BackgroundTask;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly hostId: string,
    private readonly localPools: LocalPools,
    /** The host registry (shared with the cluster names; its owner stops it). */
    private readonly registry: HostRegistry,
    private readonly underlay: () => Promise<Underlay | undefined>,
    private readonly gate: OverlayGate,
    private readonly log: Logger,
    private readonly peerWrites: PeerWriteHooks = {},
  ) {
    this.gateTask = new BackgroundTask(() => this.keepGate(), (error) => this.log.warn({ err: errorText(error) }, 'cannot update the overlay gate; retrying'), 1000);
    this.registry.onChange(() => this.gateTask.request());
  }

  /** Members in, everyone else out; no gate once no overlay is left. */
  private async keepGate(): Promise<void> {
    if (this.port === undefined) return;
    if (this.guarded.size === 0) {
      this.port = undefined;
      return this.gate.remove();
    }
    const members = [...this.registry.hosts().values()].flatMap((h) => (h.underlay ? [h.underlay] : []));
    await this.gate.set(this.port, members);
  }

  /** The shared pool this host has on `subnet`, if any. */
  private poolOn(subnet: string): { name: string; subnet: string } | undefined {
    return this.localPools().find((p) => canonicalCidr(p.subnet) === canonicalCidr(subnet));
  }

  async join(subnet: string, field: string): Promise<Segment> {
    const pool = this.poolOn(subnet);
    if (!pool) throw new RequestError(field, `an overlay needs a shared pool: create it with --ipam-driver tsnet --ipam-opt tsnet.pool=NAME (${subnet} is no shared pool of this host)`);
    const underlay = await this.underlay();
    if (!underlay) throw new RequestError(field, 'this host has no underlay address for overlays: give tsnet daemon --advertise-address');
    const family = parseCidr(subnet)!.cidr.family;
    const vni = await segmentVni(this.etcd, new PoolKeys(pool.name, family), field, deadlineFromNow());
    return { pool: pool.name, vni, underlay };
  }

  sharedPool(subnet: string): string | undefined {
    return this.poolOn(subnet)?.name;
  }

  async vniOf(subnet: string): Promise<number | undefined> {
    const pool = this.poolOn(subnet);
    if (!pool) return undefined;
    const keys = new PoolKeys(pool.name, parseCidr(subnet)!.cidr.family);
    const entry = await this.etcd.get(keys.definition, deadlineFromNow());
    return entry ? decodeValue(PoolDefinition, entry.key, entry.value).vni : undefined;
  }

  async guard(networkId: string, port: number): Promise<void> {
    this.guarded.add(networkId);
    if (this.port === port) return;
    // Closed before the first device exists: members come in as the registry is read.
    this.port = port;
    await this.gate.set(port, []);
    this.registry.start();
    this.gateTask.request();
  }

  async follow(networkId: string, pool: string, peers: PeerTable): Promise<void> {
    const current = this.followers.get(networkId);
    if (current?.pool === pool) return current.follower.repair(peers);
    this.registry.start();
    current?.follower.stop();
    const follower = new SegmentFollower(this.etcd, new PoolKeys(pool, 4), this.registry, this.hostId, peers, this.log, this.peerWrites);
    this.followers.set(networkId, { pool, follower });
    follower.start();
  }

  unfollow(networkId: string): void {
    this.followers.get(networkId)?.follower.stop();
    this.followers.delete(networkId);
    this.guarded.delete(networkId);
    this.gateTask.request();
  }

  wanted(networkId: string): RemotePeer[] | undefined {
    return this.followers.get(networkId)?.follower.wanted();
  }

  members(networkId: string): SegmentMember[] | undefined {
    return this.followers.get(networkId)?.follower.members();
  }

  /** Waits for the followers' reads and kernel writes in progress (tests). */
  async settle(): Promise<void> {
    await this.registry.settle();
    await Promise.all([...this.followers.values()].map(({ follower }) => follower.settle()));
    await this.gateTask.settle();
  }

  stop(): void {
    for (const id of [...this.followers.keys()]) this.unfollow(id);
    this.gateTask.stop();
  }
}
