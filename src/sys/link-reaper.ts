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
  private readonly waiting: string[] = [];
  private readonly retired = new Set<string>();
  private draining: Promise<void> | undefined;

  constructor(
    private readonly ip: Ip,
    private readonly log: Logger,
  ) {}

  /** Deletes the links soon; touches nothing now. */
  retire(names: readonly string[]): void {
    for (const name of names) this.retired.add(name);
    this.waiting.push(...names);
    this.draining ??= this.drain();
  }

  /** Whether the link is retired and on its way out (not tsnet's to keep any more). */
  has(name: string): boolean {
    return this.retired.has(name);
  }

  /** Once every link retired so far is deleted (a network create, the daemon's stop, tests). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Batches follow each other: what is retired while one runs goes in the next. */
  private async drain(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, BATCH);
        await this.ip.deleteLinks(batch).catch((error: unknown) => this.log.warn({ err: error, links: batch }, 'could not delete retired links; they are removed at the next start'));
        // The kernel monitor reports a deletion a moment later: until then the name is still not tsnet's to keep.
        setTimeout(() => batch.forEach((name) => this.retired.delete(name)), MONITOR_LAG_MS).unref();
      }
    } finally {
      this.draining = undefined;
    }
  }
}
