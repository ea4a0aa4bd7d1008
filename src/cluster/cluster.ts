import type { Logger } from 'pino';
import type { NetworkRecord } from '../../drivers/model.js';
import type { RecordSource } from '../dns/name-entry.js';
import type { SharedPools } from '../ipam/shared-pools.js';
import type { PeerWriteHooks } from '../overlay/segment-follower.js';
import { ClusterSegments, type Segments } from '../overlay/segments.js';
import { findUnderlay, type Underlay } from '../overlay/underlay.js';
import type { Store } from '../store/store.js';
import { Ip } from '../sys/ip.js';
import { OverlayGate } from '../sys/overlay-gate.js';
import { Xfrm } from '../sys/xfrm.js';
import { HostCiphers } from '../overlay/ciphers.js';
import { RequestError } from '../errors.js';
import type { Rotation } from '../overlay/key-rotation.js';
import type { KeyEvents } from '../overlay/segment-encryption.js';
import { ExecaRunner } from '../sys/runner.js';
import type { ClusterConfig } from './cluster-config.js';
import { ADMIN_READ_MS, type ClusterView, gcDeadHost, gcOrphans, type GcProgress, type GcResult, holdNames, orphansOf, readCluster } from './cluster-admin.js';
import { deadlineFromNow, EtcdClient } from './etcd-client.js';
import { HostRegistry } from './host-registry.js';
import { HostMembership, LEASE_TTL_SECONDS } from './membership.js';
import { NamePublisher } from './name-publisher.js';
import { RemoteNames } from './remote-names.js';
import { SharedNetworks } from './shared-networks.js';
import { SharedPoolService } from './shared-pool-service.js';

/** What `tsnet cluster ls` shows: the cluster, and what this host knows that etcd alone cannot tell. */
export interface ClusterReport extends ClusterView {
  /** Allocations of this host that lost a race to another host and were retried (dockerd never saw them). */
  racesLost: number;
  /** etcd work this host still has to do (releases while etcd was unreachable). */
  pending: number;
  /** Of that work, what etcd refused again and again (the rest of the queue goes on without it). */
  stuck: number;
  /** `pool address` held in etcd by this host but unknown to its own record: `tsnet cluster gc` frees them. */
  orphans: string[];
  /** `pool address (who)` this host holds that etcd gives to another hold (found when it registered again): two containers may use each. */
  conflicts: string[];
  /**
   * `pool address` this host holds for no endpoint: what a daemon killed after
   * recording an address but before dockerd read it leaves (a container being
   * started right now shows here for a moment too). Freed when the network goes.
   */
  unattached: string[];
}

/** What the cross-host names read of this host: its networks, their DNS names, and its own name entries. */
export interface LocalNames {
  networks(): readonly NetworkRecord[];
  networkName(networkId: string): string;
  /** This host's entries (LocalRecords). */
  records: RecordSource;
}

/**
 * The cluster room, wired: etcd client, this host's membership, the shared
 * pools, the names shared with other hosts, `ls`/`gc` for the admin API,
 * and the optional reclaimer.
 */
export class Cluster {
  readonly etcd: EtcdClient;
  readonly membership: HostMembership;
  private pools: SharedPoolService | undefined;
  private publisher: NamePublisher | undefined;
  private remote: RemoteNames | undefined;
  private overlays: ClusterSegments | undefined;
  private unsubscribe: (() => void) | undefined;
  private reclaimTimer: NodeJS.Timeout | undefined;
  /** When this daemon first saw each dead host dead (reclaim counts from there; a restart starts over, the safe way). */
  private readonly deadSince = new Map<string, number>();
  /** Reads of the host's own addresses and routes (the underlay), outside the plugin's sessions. */
  private readonly hostIp = new Ip(new ExecaRunner());
  /** Who the other hosts are and where their underlay is: one mirror for the names and the overlay. */
  private readonly registry: HostRegistry;
  /** Lets VXLAN in from the cluster's hosts only (docs/overlay.md). */
  readonly gate = new OverlayGate(new ExecaRunner());
  /** The IPsec SAs and policies of this host's encrypted segments (docs/overlay.md). */
  readonly ciphers: HostCiphers;

  constructor(
    private readonly config: ClusterConfig,
    private readonly store: Store,
    private readonly log: Logger,
    /** Around every write of overlay peers (metrics, the drift watcher's own-change notes), and told of rekeys (metrics). */
    private readonly peerWrites: PeerWriteHooks & KeyEvents = {},
  ) {
    this.etcd = new EtcdClient(config);
    this.registry = new HostRegistry(this.etcd, log);
    this.ciphers = new HostCiphers(new Xfrm(new ExecaRunner()), peerWrites.asOwnChange);
    this.membership = new HostMembership(this.etcd, config.hostId, store, log, () => this.registered(), LEASE_TTL_SECONDS, () => this.underlay());
  }

  /** Refuses an --advertise-address this host does not have (at start, before anything is created). */
  async checkUnderlay(): Promise<void> {
    if (this.config.advertiseAddress !== undefined) await findUnderlay(this.config, this.hostIp);
  }

  /**
   * Where the other hosts send this host's overlay traffic, for its registry
   * entry; one that cannot be found (no route to etcd's address yet) is
   * logged and left out: registration, and every network but an overlay, go on without it.
   */
  private async underlay(): Promise<Underlay | undefined> {
    try {
      return await findUnderlay(this.config, this.hostIp);
    } catch (error) {
      this.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'no underlay address for overlay networks');
      return undefined;
    }
  }

  get hostId(): string {
    return this.config.hostId;
  }

  /** The shared pools, loaded from this host's record (no etcd needed); `subnetInUse` comes from the network service. */
  async sharedPools(subnetInUse: (subnet: string) => boolean): Promise<SharedPools> {
    await this.membership.load();
    this.pools = new SharedPoolService(this.store, this.etcd, this.membership, subnetInUse, this.log);
    await this.pools.load();
    return this.pools;
  }

  /**
   * Cross-host names: this host's entries of shared-pool networks are
   * published in etcd, and other hosts' come back as the record source
   * returned, mapped onto this host's network on the same pool.
   */
  names(local: LocalNames): RecordSource {
    const shared = new SharedNetworks(
      () => local.networks(),
      () => (this.pools?.localPools() ?? []).map(({ record }) => ({ name: record.name, subnet: record.pool })),
      (id) => local.networkName(id),
    );
    const log = this.log.child({ room: 'cluster-names' });
    this.publisher = new NamePublisher(this.etcd, this.membership, local.records, shared, log);
    this.remote = new RemoteNames(this.etcd, this.hostId, shared, this.registry, log);
    const [publisher, remote] = [this.publisher, this.remote];
    // The records change with the networks too: a network on a new pool brings that pool's names.
    this.unsubscribe = local.records.onChange(() => {
      publisher.publishSoon();
      remote.followPools();
    });
    return remote;
  }

  /** Overlay segments on the shared pools (docs/overlay.md); undefined until the shared pools are loaded. */
  segments(): Segments | undefined {
    const pools = this.pools;
    if (!pools) return undefined;
    const localPools = () => pools.localPools().map(({ record }) => ({ name: record.name, subnet: record.pool }));
    this.overlays ??= new ClusterSegments(this.etcd, this.hostId, localPools, this.registry, () => this.underlay(), this.gate, this.log.child({ room: 'overlay' }), this.ciphers, this.config.tls?.cert !== undefined, this.peerWrites);
    return this.overlays;
  }

  /** `tsnet cluster rotate-key`: replaces an encrypted segment's key on every host (src/overlay/key-rotation.ts). */
  rotateKey(pool: string): Promise<Rotation> {
    const segments = this.segments();
    if (!segments) throw new RequestError('network', 'the shared pools are not loaded yet; try again');
    return segments.rotateKey(pool);
  }

  /** Each (re)registration: etcd answers again, and keys must be bound to the new lease. */
  private registered(): void {
    this.pools?.drainSoon();
    this.publisher?.leaseChanged();
    this.pools?.checkHolds().catch((error: unknown) => this.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'cannot check this host\'s addresses against the cluster store'));
  }

  /** Registers in the background and works off postponed etcd work; never waits for etcd. */
  start(): void {
    this.remote?.start();
    this.membership.start();
    this.pools?.drainSoon();
    if (this.config.reclaimAfterMs !== undefined) {
      const every = Math.min(Math.max(this.config.reclaimAfterMs / 4, 500), 30_000);
      this.reclaimTimer = setInterval(() => void this.reclaim(this.config.reclaimAfterMs!), every);
      this.reclaimTimer.unref();
    }
  }

  /** `endpointAddresses`: the plain addresses of this host's endpoints. */
  async report(endpointAddresses: ReadonlySet<string>): Promise<ClusterReport> {
    const { view, holds } = await readCluster(this.etcd, this.hostId, deadlineFromNow(ADMIN_READ_MS));
    const orphans = holdNames(orphansOf(holds, this.hostId, this.knowsHold));
    const unattached = (this.pools?.localPools() ?? []).flatMap(({ record, holds: mine }) =>
      mine.filter((h) => h.kind === 'container' && !endpointAddresses.has(h.address)).map((h) => `${record.name} ${h.address}`),
    );
    return { ...view, racesLost: this.pools?.racesLost ?? 0, pending: this.pools?.pendingCount ?? 0, stuck: this.pools?.stuckCount ?? 0, conflicts: this.pools?.conflicts ?? [], orphans, unattached };
  }

  /** `pool address (who)` this host holds that etcd gives to another hold, as found when it last registered. */
  conflicts(): string[] {
    return this.pools?.conflicts ?? [];
  }

  /** `--host ID`: free a dead host; no host: free this host's orphans. */
  gc(host?: string): Promise<GcResult> {
    const target = host ?? this.hostId;
    const progress: GcProgress = (freed, total) => this.log.info({ host: target, freed, total }, 'cluster gc: freeing addresses');
    if (target === this.hostId) return gcOrphans(this.etcd, this.hostId, this.knowsHold, progress);
    return gcDeadHost(this.etcd, target, progress);
  }

  private readonly knowsHold = (value: string): boolean => this.pools?.knowsHold(value) ?? false;

  /** --reclaim-after: frees hosts this daemon has seen dead for that long. */
  private async reclaim(afterMs: number): Promise<void> {
    try {
      const { view } = await readCluster(this.etcd, this.hostId, deadlineFromNow(ADMIN_READ_MS));
      const now = Date.now();
      for (const host of view.hosts) {
        if (host.alive || host.id === this.hostId) {
          this.deadSince.delete(host.id);
          continue;
        }
        const since = this.deadSince.get(host.id) ?? now;
        this.deadSince.set(host.id, since);
        if (now - since < afterMs) continue;
        const result = await gcDeadHost(this.etcd, host.id);
        this.deadSince.delete(host.id);
        this.log.warn({ host: host.id, freed: result.freed.length, pools: result.pools }, 'reclaimed the addresses of a dead host (--reclaim-after)');
      }
    } catch (error) {
      this.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'reclaim pass failed; next pass retries');
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.reclaimTimer);
    this.unsubscribe?.();
    this.publisher?.stop();
    this.remote?.stop();
    this.overlays?.stop();
    this.registry.stop();
    this.pools?.stop();
    await this.membership.stop();
    this.etcd.close();
  }
}
