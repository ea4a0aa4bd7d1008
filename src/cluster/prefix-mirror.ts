import type { Logger } from 'pino';
import { BackgroundTask, errorText } from './background-task.js';
import { deadlineFromNow, type EtcdClient, type Entry, type WatchHandle } from './etcd-client.js';

/** How soon a read that etcd refused is tried again. */
const RETRY_MS = 2000;

/** A change seen by the watch: a put carries its entry, a delete none. */
interface Change {
  key: string;
  modRevision: bigint;
  entry?: Entry;
}

/**
 * The keys under one etcd prefix, mirrored here, each decoded once as it
 * arrives (undefined: skipped; a decode that throws: logged and skipped). The mirror is one paged read (a snapshot at
 * revision R) followed by a watch from R+1. When the watch breaks (etcd down,
 * restarted), the values stay as last known; when it is back, the prefix is
 * read again in full (changes during the gap may be gone from etcd's
 * history), and a watch that etcd cancelled (history compacted) is started
 * again after the read.
 */
export class PrefixMirror<T> {
  private values = new Map<string, T>();
  /** The revision of the last full read: the watch's older changes are in it already. */
  private readRevision = 0n;
  /** Changes the watch reports while a full read is in flight, applied on top of its result. */
  private duringRead: Change[] | undefined;
  private watch: WatchHandle | undefined;
  private disconnected = false;
  private readonly resync = new BackgroundTask(
    () => this.readAll(),
    (error) => this.log.warn({ err: errorText(error), prefix: this.prefix }, `cannot read ${this.what} from the cluster store; serving the last known, retrying`),
    RETRY_MS,
  );

  constructor(
    private readonly etcd: EtcdClient,
    readonly prefix: string,
    /** What the prefix holds, for log lines ("other hosts' names"). */
    private readonly what: string,
    private readonly decode: (entry: Entry) => T | undefined,
    /** Called after the values changed. */
    private readonly changed: () => void,
    private readonly log: Logger,
  ) {}

  /** Reads the prefix in the background, then follows it. */
  start(): void {
    this.resync.request();
  }

  stop(): void {
    this.resync.stop();
    this.watch?.cancel();
    this.watch = undefined;
  }

  /** Whether the prefix was read once: until then, no value means nothing known, not nothing there. */
  get loaded(): boolean {
    return this.readRevision > 0n;
  }

  get(key: string): T | undefined {
    return this.values.get(key);
  }

  entries(): IterableIterator<[string, T]> {
    return this.values.entries();
  }

  /** Waits for the read in progress (tests). */
  settle(): Promise<void> {
    return this.resync.settle();
  }

  /** One full read; starts the watch from just after it when there is none. */
  private async readAll(): Promise<void> {
    this.duringRead = [];
    try {
      const { entries, revision } = await this.etcd.snapshot(this.prefix, deadlineFromNow());
      const values = new Map<string, T>();
      for (const entry of entries) this.put(values, entry);
      const read = BigInt(revision);
      for (const change of this.duringRead) if (change.modRevision > read) this.apply(values, change);
      this.values = values;
      this.readRevision = read;
      this.watch ??= this.etcd.watchPrefix(this.prefix, (read + 1n).toString(), {
        put: (entry) => this.seen({ key: entry.key, modRevision: BigInt(entry.modRevision), entry }),
        delete: (key, modRevision) => this.seen({ key, modRevision: BigInt(modRevision) }),
        disconnected: (reason) => {
          if (!this.disconnected) this.log.warn({ reason, prefix: this.prefix }, `lost the watch on ${this.what}; serving the last known`);
          this.disconnected = true;
        },
        reconnected: () => {
          this.log.info({ prefix: this.prefix }, `the watch on ${this.what} is back; reading them again`);
          this.disconnected = false;
          this.resync.request();
        },
        cancelled: (reason) => {
          this.log.warn({ reason, prefix: this.prefix }, `etcd ended the watch on ${this.what}; reading them again`);
          this.watch?.cancel();
          this.watch = undefined;
          this.resync.request();
        },
      });
      this.changed();
    } finally {
      this.duringRead = undefined;
    }
  }

  private seen(change: Change): void {
    this.duringRead?.push(change);
    // Already in the last full read (a watch resumed from an older revision replays it).
    if (change.modRevision <= this.readRevision) return;
    this.apply(this.values, change);
    this.changed();
  }

  private apply(values: Map<string, T>, change: Change): void {
    if (change.entry) this.put(values, change.entry);
    else values.delete(change.key);
  }

  /** A value that does not decode (another version, a hand edit) is logged and left out: it never breaks the watch. */
  private put(values: Map<string, T>, entry: Entry): void {
    let value: T | undefined;
    try {
      value = this.decode(entry);
    } catch (error) {
      this.log.warn({ key: entry.key, err: errorText(error) }, `skipped a key of ${this.what} in the cluster store`);
    }
    if (value === undefined) values.delete(entry.key);
    else values.set(entry.key, value);
  }
}
