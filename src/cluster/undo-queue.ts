import type { Logger } from 'pino';
import type { KeyedMutex } from '../mutex.js';
import type { Family } from '../net/address.js';
import { del, put, type Store, type Write } from '../store/store.js';
import { BackgroundTask, errorText } from './background-task.js';
import { ClusterUnreachableError, type ClusterKv, deadlineFromNow } from './etcd-client.js';
import { type AddressHold, PoolKeys } from './keys.js';
import { removeUser } from './pool-definition.js';

/**
 * etcd work that must still happen, kept in SQLite until etcd confirmed it:
 * undo a container hold (released, or written by a request that never got its
 * answer), or take this host off a pool's users.
 */
export type PendingOp =
  | { op: 'release'; name: string; family: Family; value: string; address?: string }
  | { op: 'leave'; name: string; family: Family };

/** A change of the queue that goes into a SQLite commit with a request's other writes: `write`, then `apply` once committed. */
export interface QueueChange {
  write: Write;
  apply(): void;
}

/** How soon etcd work is tried again after etcd was unreachable. */
const RETRY_MS = 2000;
/** How soon one operation etcd refused is tried again: doubling from the first, up to the last. */
const FIRST_BACKOFF_MS = 2000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** Refusals in a row after which an operation counts as stuck (reported, in `tsnet cluster ls` too). */
const STUCK_AFTER = 5;
/** How long a placeholder blocks a timed-out hold that etcd may still apply (see undoHold). */
const LATE_WRITE_TTL_SECONDS = 60;

const TABLE = 'cluster-pending';

interface Failure {
  count: number;
  nextTryAt: number;
}

/**
 * The durable queue of etcd work, worked off in the background: at start-up,
 * after each release, and when etcd answers again. An operation etcd refuses
 * (a damaged or oversized note) is retried with backoff and never blocks the
 * ones behind it; etcd unreachable stops the pass, as every operation would
 * fail alike.
 */
export class UndoQueue {
  private readonly pending = new Map<string, PendingOp>();
  private readonly failures = new Map<string, Failure>();
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly task = new BackgroundTask(
    () => this.drainAll(),
    (error) => this.log.warn({ err: errorText(error), pending: this.pending.size }, 'cluster store work postponed'),
    RETRY_MS,
  );

  constructor(
    private readonly store: Store,
    private readonly etcd: ClusterKv,
    /** The pools' locks: a request in flight owns its own note until it finishes. */
    private readonly mutex: KeyedMutex,
    private readonly hostId: string,
    /** Whether this host uses the pool again (a network re-created since): a queued leave is then dropped. */
    private readonly usesPool: (keys: PoolKeys) => boolean,
    private readonly log: Logger,
  ) {}

  async load(): Promise<void> {
    for (const [key, op] of await this.store.readAll<PendingOp>(TABLE)) this.pending.set(key, op);
  }

  /** The queue key of an operation: one leave per pool, one release per hold. */
  static keyOf(op: PendingOp): string {
    const keys = new PoolKeys(op.name, op.family);
    return op.op === 'leave' ? `leave ${keys.prefix}` : `release ${keys.prefix}${(JSON.parse(op.value) as AddressHold).holder}`;
  }

  add(key: string, op: PendingOp): QueueChange {
    return { write: put(TABLE, key, op), apply: () => void this.pending.set(key, op) };
  }

  remove(key: string): QueueChange {
    return { write: del(TABLE, key), apply: () => void this.pending.delete(key) };
  }

  /** Whether a release of the hold with this etcd value is queued. */
  releases(value: string): boolean {
    for (const op of this.pending.values()) if (op.op === 'release' && op.value === value) return true;
    return false;
  }

  get size(): number {
    return this.pending.size;
  }

  /** Operations etcd refused STUCK_AFTER times in a row or more. */
  get stuck(): number {
    return [...this.failures.values()].filter((f) => f.count >= STUCK_AFTER).length;
  }

  drainSoon(): void {
    this.task.request();
  }

  /** Waits for the pass in progress (tests, shutdown). */
  settle(): Promise<void> {
    return this.task.settle();
  }

  stop(): void {
    this.task.stop();
    clearTimeout(this.retryTimer);
  }

  /** One pass over the queue; throws only when etcd is unreachable (the task tries again soon). */
  private async drainAll(): Promise<void> {
    for (const [key, op] of [...this.pending]) {
      if ((this.failures.get(key)?.nextTryAt ?? 0) > Date.now()) continue;
      const keys = new PoolKeys(op.name, op.family);
      try {
        await this.mutex.run(keys.prefix, async () => {
          if (this.pending.get(key) !== op) return;
          if (op.op === 'leave') await this.leave(keys);
          else await this.undoHold(keys, op);
          const done = this.remove(key);
          await this.store.commit([done.write]);
          done.apply();
        });
        this.failures.delete(key);
      } catch (error) {
        if (error instanceof ClusterUnreachableError) throw error;
        this.refused(key, op, error);
      }
    }
    this.retryRefusedLater();
  }

  private refused(key: string, op: PendingOp, error: unknown): void {
    const count = (this.failures.get(key)?.count ?? 0) + 1;
    this.failures.set(key, { count, nextTryAt: Date.now() + Math.min(FIRST_BACKOFF_MS * 2 ** (count - 1), MAX_BACKOFF_MS) });
    if (count === 1 || count === STUCK_AFTER) {
      const where = { op: op.op, pool: op.name, ...(op.op === 'release' && op.address ? { address: op.address } : {}), refusals: count, err: errorText(error) };
      this.log.warn(where, count === 1 ? 'etcd refused queued work; the rest of the queue goes on, this is tried again with backoff' : 'queued etcd work is stuck (refused again and again); tsnet cluster ls counts it');
    }
  }

  /** Passes again when the earliest refused operation is due. */
  private retryRefusedLater(): void {
    clearTimeout(this.retryTimer);
    const due = Math.min(...[...this.failures].filter(([key]) => this.pending.has(key)).map(([, f]) => f.nextTryAt));
    if (!Number.isFinite(due)) return;
    this.retryTimer = setTimeout(() => this.task.request(), Math.max(0, due - Date.now()));
    this.retryTimer.unref();
  }

  /**
   * Deletes a container hold if it is still exactly the one this host wrote.
   * A write that timed out may still be applied after this runs: an etcd
   * that hung applies what waited in its buffers once it goes on. So where
   * the hold is not there yet, the same value is put with a lease nobody
   * keeps alive: the late write (which needs the key absent) fails, and the
   * placeholder goes by itself after LATE_WRITE_TTL_SECONDS.
   */
  private async undoHold(keys: PoolKeys, op: Extract<PendingOp, { op: 'release' }>): Promise<void> {
    const deadline = deadlineFromNow();
    if (!op.address) {
      // A note of an older tsnet: the hold is found by its value.
      for (const entry of (await this.etcd.list(keys.addressesPrefix, deadline)).filter((e) => e.value === op.value)) {
        await this.etcd.txn([{ key: entry.key, value: op.value }], [{ delete: entry.key }], [], deadline);
      }
      return;
    }
    const key = keys.address(op.address);
    const deleted = await this.etcd.txn([{ key, value: op.value }], [{ delete: key }], [], deadline);
    if (deleted.succeeded) return;
    const lease = await this.etcd.expiringLease(LATE_WRITE_TTL_SECONDS, deadline);
    await this.etcd.txn([{ key, absent: true }], [{ put: key, value: op.value, lease }], [], deadline);
  }

  /** Takes this host off the pool's users; the last user deletes the pool with everything under it. */
  private async leave(keys: PoolKeys): Promise<void> {
    if (this.usesPool(keys)) return;
    await removeUser(this.etcd, keys, this.hostId, deadlineFromNow());
  }
}
