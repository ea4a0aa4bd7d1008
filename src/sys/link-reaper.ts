import type { Logger } from 'pino';
import type { Ip } from './ip.js';

/** At most this many links per kernel batch: the kernel takes its lock (rtnl) for part of a batch's work, and other link writes on the host wait that long. */
const BATCH = 8;
/** How late a monitor's line about a deleted link may come (a busy host). */
const MONITOR_LAG_MS = 2_000;

/**
 * Deletes the links of deleted networks and endpoints in the background,
 * several at once. Deleting a bridge costs the kernel ~40 ms here, a veth
 * pair ~20 ms (RCU grace periods, part of it under the rtnl lock, which
 * every link write on the host needs), so a delete that waited for it, or
 * even for a `link set down` queued behind the previous delete's lock, took
 * that long; in a group of 8 the kernel takes ~19 ms a bridge. A retired
 * link has no tsnet rules any more and carries no container (a bridge has
 * no endpoint left, dockerd deletes those first; a veth's container end went
 * with its sandbox). A bridge keeps its address until it goes, so a network
 * created meanwhile waits for settled() first (see NetworkService). Names
 * derive from the deleted object's ID; one made again at once waits too. A
 * crash before the deletion leaves links no record owns, which start-up
 * removes.
 */
export class LinkReaper {
  /** Links to delete, in order, each with what tells its waiters that it is gone. */
  private readonly waiting: Array<{ name: string; gone: () => void }> = [];
  /** Deletions not done yet: what settled() waits for. */
  private readonly pending = new Set<Promise<void>>();
  private readonly retired = new Set<string>();
  private draining = false;

  constructor(
    private readonly ip: Ip,
    private readonly log: Logger,
  ) {}

  /** Deletes the links soon; touches nothing now. */
  retire(names: readonly string[]): void {
    for (const name of names) {
      this.retired.add(name);
      let gone!: () => void;
      const deleted = new Promise<void>((resolve) => (gone = resolve));
      this.pending.add(deleted);
      void deleted.then(() => this.pending.delete(deleted));
      this.waiting.push({ name, gone });
    }
    if (!this.draining) void this.drain();
  }

  /** Whether the link is retired and on its way out (not tsnet's to keep any more). */
  has(name: string): boolean {
    return this.retired.has(name);
  }

  /**
   * Once every link retired so far is deleted (a network create, the
   * daemon's stop, tests); not those retired meanwhile: containers that keep
   * exiting would otherwise hold a network create back for good.
   */
  async settled(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  /** Batches follow each other: what is retired while one runs goes in the next. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, BATCH);
        const names = batch.map((link) => link.name);
        await this.ip.deleteLinks(names).catch((error: unknown) => this.log.warn({ err: error, links: names }, 'could not delete retired links; they are removed at the next start'));
        batch.forEach((link) => link.gone());
        // The kernel monitor reports a deletion a moment later: until then the name is still not tsnet's to keep.
        setTimeout(() => names.forEach((name) => this.retired.delete(name)), MONITOR_LAG_MS).unref();
      }
    } finally {
      this.draining = false;
    }
  }
}
