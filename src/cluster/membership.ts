import { randomBytes } from 'node:crypto';
import type { Lease } from 'etcd3';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import type { Underlay } from '../overlay/underlay.js';
import { put, type Store } from '../store/store.js';
import { deadlineFromNow, type EtcdClient, type Entry } from './etcd-client.js';
import { AliveRecord, aliveKey, decodeValue, hostKey, HostRecord } from './keys.js';
import type { Membership } from './shared-pool-service.js';

/** A host whose daemon stopped answering etcd this long is shown dead. */
export const LEASE_TTL_SECONDS = 10;

const INSTANCE_META_KEY = 'cluster-instance';
const RETRY_MS = 2000;

/**
 * This host in the cluster: a registry entry (hosts/<id>, kept until gc) and
 * an alive key bound to a lease the daemon keeps alive. A second daemon with
 * the same host ID is refused while the first is alive; a daemon restarted on
 * the same state takes its predecessor's place at once (same instance token).
 */
export class HostMembership implements Membership {
  private lease: Lease | undefined;
  private currentLeaseId: string | undefined;
  private registering: Promise<void> | undefined;
  private instance = '';
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly etcd: EtcdClient,
    readonly hostId: string,
    private readonly store: Store,
    private readonly log: Logger,
    /** Called each time the host (re)registers: etcd is reachable, postponed work can go. */
    private readonly onAlive: () => void = () => {},
    private readonly ttlSeconds = LEASE_TTL_SECONDS,
    /** This host's overlay underlay, written to its registry entry at each registration; undefined: none known. */
    private readonly underlay?: () => Promise<Underlay | undefined>,
  ) {}

  async load(): Promise<void> {
    const meta = await this.store.readAll<string>('meta');
    const known = meta.get(INSTANCE_META_KEY);
    if (known) {
      this.instance = known;
      return;
    }
    this.instance = randomBytes(8).toString('hex');
    await this.store.commit([put('meta', INSTANCE_META_KEY, this.instance)]);
  }

  /** Registers in the background and keeps trying while etcd is unreachable; the daemon serves meanwhile. */
  start(): void {
    this.ensureAlive(deadlineFromNow()).catch((error: unknown) => {
      this.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'not registered in the cluster store yet');
      this.retryLater();
    });
  }

  private retryLater(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), RETRY_MS);
    this.timer.unref();
  }

  /** The lease this host's keys are bound to now; undefined while not registered. */
  get leaseId(): string | undefined {
    return this.lease ? this.currentLeaseId : undefined;
  }

  ensureAlive(deadline: number): Promise<void> {
    if (this.lease) return Promise.resolve();
    this.registering ??= this.register(deadline).finally(() => {
      this.registering = undefined;
    });
    return this.registering;
  }

  private async register(deadline: number): Promise<void> {
    const key = aliveKey(this.hostId);
    const existing = await this.etcd.get(key, deadline);
    if (existing) {
      const other = decodeValue(AliveRecord, key, existing.value);
      if (other.instance !== this.instance) {
        throw new RequestError('--host-id', `host ID ${this.hostId} is alive in the cluster already (tsnet pid ${other.pid} there, since ${other.since}); every host needs its own --host-id`);
      }
    }
    const { id: leaseId, lease } = await this.etcd.grantLease(this.ttlSeconds, deadline);
    try {
      await this.claim(existing, leaseId, deadline);
    } catch (error) {
      // Granted but never bound to this host: revoked, or it would be kept alive for nothing (one more every retry while etcd is flaky).
      await lease.revoke({ deadline: Date.now() + 1000 }).catch(() => lease.release());
      throw error;
    }
    lease.on('lost', () => {
      if (this.lease !== lease) return;
      this.lease = undefined;
      this.log.warn({ host: this.hostId }, 'cluster lease lost (etcd unreachable for longer than its TTL); registering again');
      this.retryLater();
    });
    this.lease = lease;
    this.currentLeaseId = leaseId;
    this.log.info({ host: this.hostId, store: this.etcd.url, lease: leaseId }, 'registered in the cluster store');
    this.onAlive();
  }

  /** Binds the alive key to the new lease (taking it over from this host's predecessor, if any) and adds this host to the registry. */
  private async claim(existing: Entry | undefined, leaseId: string, deadline: number): Promise<void> {
    const key = aliveKey(this.hostId);
    const record: AliveRecord = { id: this.hostId, instance: this.instance, since: new Date().toISOString(), pid: process.pid };
    const claimed = await this.etcd.txn(
      [existing ? { key, value: existing.value } : { key, absent: true }],
      [{ put: key, value: JSON.stringify(record), lease: leaseId }],
      [],
      deadline,
    );
    if (!claimed.succeeded) throw new RequestError('--host-id', `host ID ${this.hostId} was registered by another daemon at the same moment`);
    // Our predecessor's lease (a killed daemon) would keep nothing alive now, only expire later.
    if (existing && existing.lease !== '0') await this.etcd.revokeLease(existing.lease, deadline).catch(() => undefined);
    await this.writeRegistryEntry(record.since, deadline);
  }

  /** hosts/<id>: written once (when it joined), and again when its underlay changed (another address, another port). */
  private async writeRegistryEntry(since: string, deadline: number): Promise<void> {
    const key = hostKey(this.hostId);
    const underlay = await this.underlay?.();
    const fields = underlay ? { underlay: underlay.address, vxlanPort: underlay.port } : {};
    const existing = await this.etcd.get(key, deadline);
    const before = existing && decodeValue(HostRecord, key, existing.value);
    if (before && before.underlay === fields.underlay && before.vxlanPort === fields.vxlanPort) return;
    const entry: HostRecord = { ...(before ?? { id: this.hostId, joined: since }), ...fields };
    await this.etcd.txn([existing ? { key, value: existing.value } : { key, absent: true }], [{ put: key, value: JSON.stringify(entry) }], [], deadline);
  }

  /** Revokes the lease, so other hosts see this one stopped at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke({ deadline: Date.now() + 1000 }).catch(() => undefined);
  }
}
