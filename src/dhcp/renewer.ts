import type { Logger } from 'pino';
import type { Lease } from './client.js';

/** How soon a renewal or rebinding that failed is tried again, at most. */
const RETRY_MAX_MS = 60_000;
const RETRY_MIN_MS = 1_000;

/** What the renewer asks of the leases it keeps: where they are, and how to extend one. */
export interface LeaseBook<L extends Lease> {
  leases(): readonly L[];
  /** Extends `lease` (renew: unicast to its server; rebind: broadcast) and stores the new terms; throws when nobody acknowledged. */
  extend(lease: L, how: 'renew' | 'rebind'): Promise<void>;
  /** Told once when a lease runs out with no server to extend it. */
  expired(lease: L): void;
}

/** The moments that matter for a lease, in ms since the epoch. */
export function deadlines(lease: Lease): { renew: number; rebind: number; expire: number } {
  return {
    renew: lease.grantedAt + lease.renewalSeconds * 1000,
    rebind: lease.grantedAt + lease.rebindingSeconds * 1000,
    expire: lease.grantedAt + lease.leaseSeconds * 1000,
  };
}

/**
 * Keeps every lease of the daemon alive: at T1 it renews with the server
 * that granted it, from T2 it rebinds with any server, past expiry it
 * tells once and keeps rebinding (a server back after an outage takes the
 * client again). One timer for the earliest moment, no process per lease:
 * each extension starts the short-lived relay (wire.ts) and ends it.
 */
export class LeaseRenewer<L extends Lease> {
  private timer: NodeJS.Timeout | undefined;
  /** Next try per address after a failure (ms since the epoch). */
  private readonly retryAt = new Map<string, number>();
  private readonly toldExpired = new Set<string>();
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly book: LeaseBook<L>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Looks again at when the next lease is due (a lease was added, extended or dropped). */
  reschedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const due = this.book.leases().map((lease) => this.dueAt(lease));
    if (due.length === 0) return;
    const wait = Math.max(0, Math.min(...due) - this.now());
    this.timer = setTimeout(() => void this.runDue(), Math.min(wait, 2 ** 31 - 1));
    this.timer.unref();
  }

  private dueAt(lease: L): number {
    return this.retryAt.get(lease.address) ?? deadlines(lease).renew;
  }

  /** Waits for the extensions under way (tests, shutdown). */
  async settle(): Promise<void> {
    await this.running;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private runDue(): Promise<void> {
    this.running ??= this.extendDue().finally(() => {
      this.running = undefined;
      this.reschedule();
    });
    return this.running;
  }

  private async extendDue(): Promise<void> {
    for (const lease of this.book.leases()) {
      if (this.stopped) return;
      const now = this.now();
      if (this.dueAt(lease) > now) continue;
      const { rebind, expire } = deadlines(lease);
      if (now >= expire && !this.toldExpired.has(lease.address)) {
        this.toldExpired.add(lease.address);
        this.book.expired(lease);
      }
      const how = now >= rebind ? 'rebind' : 'renew';
      try {
        // Before its T1 (soon()), a renewal: the server that granted it is there to hear.
        await this.book.extend(lease, how);
        this.retryAt.delete(lease.address);
        this.toldExpired.delete(lease.address);
      } catch (error) {
        // RFC 2131 4.4.5: half the time left to the next deadline, within bounds; past expiry, the longest wait.
        const next = now < rebind ? rebind : now < expire ? expire : now + 2 * RETRY_MAX_MS;
        const wait = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, (next - now) / 2));
        this.retryAt.set(lease.address, now + wait);
        this.log.warn({ address: lease.address, how, retryInMs: Math.round(wait), err: error instanceof Error ? error.message : String(error) }, 'could not extend a DHCP lease');
      }
    }
  }

  /** Extends the lease of `address` as soon as possible, whatever its deadlines (it has news for the server). */
  soon(address: string): void {
    this.retryAt.set(address, this.now());
    this.reschedule();
  }

  /** A lease that went (released, dropped): nothing more is tried for its address. */
  forget(address: string): void {
    this.retryAt.delete(address);
    this.toldExpired.delete(address);
    this.reschedule();
  }
}
