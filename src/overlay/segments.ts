import type { Logger } from 'pino';
import { deadlineFromNow, type EtcdClient } from '../cluster/etcd-client.js';
import { PoolKeys } from '../cluster/keys.js';
import { segmentVni } from '../cluster/pool-definition.js';
import { RequestError } from '../errors.js';
import { formatCidr, parseCidr } from '../net/address.js';
import { HostRegistry, SegmentFollower } from './segment-follower.js';
import type { Underlay } from './underlay.js';
import type { SegmentPeers } from './vxlan.js';

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
  /** Keeps `peers` equal to the segment's other containers in the store, until unfollow. */
  follow(networkId: string, pool: string, peers: SegmentPeers): void;
  unfollow(networkId: string): void;
}

/** The shared pools this host has networks on (the shared pool service's record). */
export type LocalPools = () => ReadonlyArray<{ name: string; subnet: string }>;

const canonical = (cidr: string) => {
  const parsed = parseCidr(cidr);
  return parsed ? formatCidr(parsed.cidr) : cidr;
};

/** Segments on the cluster store: one follower per overlay network, one host registry mirror for all. */
export class ClusterSegments implements Segments {
  private readonly followers = new Map<string, SegmentFollower>();
  private readonly registry: HostRegistry;
  private registryStarted = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly hostId: string,
    private readonly localPools: LocalPools,
    private readonly underlay: () => Promise<Underlay | undefined>,
    private readonly log: Logger,
  ) {
    this.registry = new HostRegistry(etcd, log);
  }

  async join(subnet: string, field: string): Promise<Segment> {
    const pool = this.localPools().find((p) => canonical(p.subnet) === canonical(subnet));
    if (!pool) throw new RequestError(field, `an overlay needs a shared pool: create it with --ipam-driver tsnet --ipam-opt tsnet.pool=NAME (${subnet} is no shared pool of this host)`);
    const underlay = await this.underlay();
    if (!underlay) throw new RequestError(field, 'this host has no underlay address for overlays: give tsnet daemon --advertise-address');
    const family = parseCidr(subnet)!.cidr.family;
    const vni = await segmentVni(this.etcd, new PoolKeys(pool.name, family), field, deadlineFromNow());
    return { pool: pool.name, vni, underlay };
  }

  follow(networkId: string, pool: string, peers: SegmentPeers): void {
    if (!this.registryStarted) this.registry.start();
    this.registryStarted = true;
    this.followers.get(networkId)?.stop();
    const follower = new SegmentFollower(this.etcd, new PoolKeys(pool, 4), this.registry, this.hostId, peers, this.log);
    this.followers.set(networkId, follower);
    follower.start();
  }

  unfollow(networkId: string): void {
    this.followers.get(networkId)?.stop();
    this.followers.delete(networkId);
  }

  /** Waits for the followers' reads and kernel writes in progress (tests). */
  async settle(): Promise<void> {
    await this.registry.settle();
    await Promise.all([...this.followers.values()].map((f) => f.settle()));
  }

  stop(): void {
    for (const id of [...this.followers.keys()]) this.unfollow(id);
    this.registry.stop();
  }
}
