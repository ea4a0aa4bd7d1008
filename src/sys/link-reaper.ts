import type { Logger } from 'pino';
import type { Ip } from './ip.js';

/** At most this many links per kernel batch: the kernel holds its lock (rtnl) for the whole batch, ~150 ms for 8 bridges, and every link write on the host waits that long. */
const BATCH = 8;

/**
 * Deletes links a moment after they are taken out of service, several at
 * once. Deleting a bridge costs the kernel ~40 ms (its RCU grace periods),
 * which a network delete would otherwise wait for. A link that is down and
 * has no address carries no traffic and holds no route (the host stops
 * owning its gateway address, which down alone would keep), so what a
 * request must see is done once it is. The names handed here
 * are never used again (they derive from the deleted object's ID), so a
 * retired link that is still there stands in nobody's way. A crash before
 * the deletion leaves links no record owns, which start-up removes.
 */
export class LinkReaper {
  private readonly waiting: string[] = [];
  private readonly retired = new Set<string>();
  private draining: Promise<void> | undefined;

  constructor(
    private readonly ip: Ip,
    private readonly log: Logger,
  ) {}

  /** Puts the links down and takes their addresses now, and deletes them soon. */
  async retire(names: readonly string[]): Promise<void> {
    for (const name of names) {
      await this.ip.undo(['link', 'set', 'dev', name, 'down']);
      await this.ip.undo(['address', 'flush', 'dev', name]);
    }
    for (const name of names) this.retired.add(name);
    this.waiting.push(...names);
    this.draining ??= this.drain();
  }

  /** Whether the link is retired and on its way out (not tsnet's to keep any more). */
  has(name: string): boolean {
    return this.retired.has(name);
  }

  /** Once every link retired so far is deleted (the daemon's stop, tests). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Batches follow each other: what is retired while one runs goes in the next. */
  private async drain(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, BATCH);
        await this.ip.deleteLinks(batch).catch((error: unknown) => this.log.warn({ err: error, links: batch }, 'could not delete retired links; they are removed at the next start'));
        for (const name of batch) this.retired.delete(name);
      }
    } finally {
      this.draining = undefined;
    }
  }
}
