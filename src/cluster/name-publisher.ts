import type { Logger } from 'pino';
import type { RecordSource } from '../dns/name-entry.js';
import { BackgroundTask, errorText } from './background-task.js';
import { deadlineFromNow, type EtcdClient, type Op } from './etcd-client.js';
import { hostNamesPrefix, nameKey, parseNameKey, type PublishedName } from './keys.js';
import type { SharedNetworks } from './shared-networks.js';

/** Who this host is and the lease its keys live on (HostMembership). */
export interface LeaseHolder {
  readonly hostId: string;
  /** Undefined while the host is not registered. */
  readonly leaseId: string | undefined;
}

/** Operations per etcd transaction (etcd refuses more than 128 by default). */
const BATCH = 64;
/** How soon a pass that etcd refused is tried again. */
const RETRY_MS = 2000;

interface Published {
  value: string;
  lease: string;
}

/**
 * Keeps this host's names in etcd: one key per endpoint of a network on a
 * shared pool, under pool-names/<pool>/<host>/<endpoint>, bound to the host's
 * lease, so they vanish on their own when the host dies. Each pass writes
 * only the difference between what the local records want and what etcd
 * holds; it runs after the local records change, after each registration
 * (a new lease: everything is written again under it), and again while etcd
 * refuses. It never runs inside a plugin request and nothing waits for it.
 */
export class NamePublisher {
  /** What etcd holds of this host's names, as last read or written; undefined = read it first. */
  private published: Map<string, Published> | undefined;
  /** Pools this host published names on. */
  private readonly pools = new Set<string>();
  private readonly task = new BackgroundTask(
    () => this.pass(),
    (error) => {
      // What etcd holds is unknown now: read it again next time.
      this.published = undefined;
      this.log.warn({ err: errorText(error) }, 'cannot publish this host\'s names in the cluster store; retrying');
    },
    RETRY_MS,
  );

  constructor(
    private readonly etcd: EtcdClient,
    private readonly holder: LeaseHolder,
    /** This host's own entries (LocalRecords). */
    private readonly local: RecordSource,
    private readonly shared: SharedNetworks,
    private readonly log: Logger,
  ) {}

  /** Key → value of every name this host should have in etcd now. */
  private wanted(): Map<string, string> {
    const poolOf = this.shared.poolByNetwork();
    const out = new Map<string, string>();
    for (const entry of this.local.entries()) {
      const pool = poolOf.get(entry.networkId);
      if (pool === undefined) continue;
      const value: PublishedName = { names: entry.names, ...(entry.ipv4 ? { ipv4: entry.ipv4 } : {}), ...(entry.ipv6 ? { ipv6: entry.ipv6 } : {}) };
      out.set(nameKey(this.holder.hostId, pool, entry.endpointId), JSON.stringify(value));
    }
    return out;
  }

  /** Publishes the local records as they are now, in the background. */
  publishSoon(): void {
    this.task.request();
  }

  /** A registration brought a new lease: the next pass rewrites every name under it. */
  leaseChanged(): void {
    this.published = undefined;
    this.task.request();
  }

  /** Waits for the pass in progress (tests, shutdown). */
  settle(): Promise<void> {
    return this.task.settle();
  }

  private async pass(): Promise<void> {
    const lease = this.holder.leaseId;
    // Not registered: the registration calls leaseChanged().
    if (lease === undefined) return;
    const deadline = deadlineFromNow();
    const wanted = this.wanted();
    const published = this.published ?? (await this.readPublished(wanted, deadline));
    this.published = published;
    const ops: Op[] = [];
    for (const key of published.keys()) if (!wanted.has(key)) ops.push({ delete: key });
    for (const [key, value] of wanted) {
      const now = published.get(key);
      if (now?.value !== value || now.lease !== lease) ops.push({ put: key, value, lease });
    }
    for (let i = 0; i < ops.length; i += BATCH) {
      const batch = ops.slice(i, i + BATCH);
      await this.etcd.txn([], batch, [], deadline);
      for (const op of batch) {
        if ('put' in op) published.set(op.put, { value: op.value, lease });
        else if ('delete' in op) published.delete(op.delete);
      }
    }
    if (ops.length > 0) this.log.debug({ changes: ops.length, names: wanted.size }, 'published this host\'s names');
  }

  /**
   * What etcd holds of this host's names: under each pool it publishes on
   * now or did during this daemon's life (a pool left while etcd refused
   * still has names to delete).
   */
  private async readPublished(wanted: Map<string, string>, deadline: number): Promise<Map<string, Published>> {
    for (const key of wanted.keys()) this.pools.add(parseNameKey(key)!.pool);
    const published = new Map<string, Published>();
    for (const pool of this.pools) {
      for (const e of await this.etcd.list(hostNamesPrefix(pool, this.holder.hostId), deadline)) published.set(e.key, { value: e.value, lease: e.lease });
    }
    return published;
  }

  stop(): void {
    this.task.stop();
  }
}
