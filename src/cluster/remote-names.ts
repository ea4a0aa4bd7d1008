import type { Logger } from 'pino';
import type { NameEntry, RecordSource } from '../dns/name-entry.js';
import { BackgroundTask, errorText } from './background-task.js';
import { deadlineFromNow, type EtcdClient, type Entry, type WatchHandle } from './etcd-client.js';
import { decodeValue, NAMES_PREFIX, parseNameKey, PublishedName } from './keys.js';
import type { SharedNetworks } from './shared-networks.js';

/** How soon a resync that etcd refused is tried again. */
const RETRY_MS = 2000;

/** Another host's endpoint, as it published it. */
interface RemoteName extends PublishedName {
  host: string;
  pool: string;
  endpointId: string;
}

/** A change seen by the watch: a put carries its entry, a delete none. */
interface Change {
  key: string;
  modRevision: bigint;
  entry?: Entry;
}

/**
 * The names other hosts publish in etcd (NamePublisher), mirrored here and
 * served by this host's DNS under its own network on the same shared pool:
 * `web.lan.tsnet` on host A answers container `web` of host B when A's
 * network on B's pool is called `lan` on A. This host's own names are left
 * out (they are served from its own records already).
 *
 * The mirror is one range read (a snapshot at revision R) followed by a
 * watch from R+1. When the watch breaks (etcd down, restarted), the names
 * stay as last known; when it is back, the mirror is read again in full
 * (changes during the gap may be gone from etcd's history), and a watch
 * that etcd cancelled (history compacted) is started again after the read.
 */
export class RemoteNames implements RecordSource {
  private names = new Map<string, RemoteName>();
  /** The revision of the last full read: the watch's older changes are in it already. */
  private readRevision = 0n;
  /** Changes the watch reports while a full read is in flight, applied on top of its result. */
  private duringRead: Change[] | undefined;
  private watch: WatchHandle | undefined;
  private disconnected = false;
  private readonly listeners = new Set<() => void>();
  private readonly resync = new BackgroundTask(
    () => this.readAll(),
    (error) => this.log.warn({ err: errorText(error) }, 'cannot read other hosts\' names from the cluster store; serving the last known, retrying'),
    RETRY_MS,
  );

  constructor(
    private readonly etcd: EtcdClient,
    private readonly hostId: string,
    private readonly shared: SharedNetworks,
    private readonly log: Logger,
  ) {}

  /** Reads the names in the background, then follows them. */
  start(): void {
    this.resync.request();
  }

  entries(): NameEntry[] {
    const networkOf = this.shared.networkByPool();
    const out: NameEntry[] = [];
    for (const name of this.names.values()) {
      const network = networkOf.get(name.pool);
      // No network on the pool on this host: nobody here to serve the name to.
      if (!network) continue;
      out.push({
        networkId: network.id,
        networkName: network.name,
        endpointId: name.endpointId,
        names: name.names,
        ...(name.ipv4 ? { ipv4: name.ipv4 } : {}),
        ...(name.ipv6 ? { ipv6: name.ipv6 } : {}),
      });
    }
    return out;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.resync.stop();
    this.watch?.cancel();
    this.watch = undefined;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** One full read; starts the watch from just after it when there is none. */
  private async readAll(): Promise<void> {
    this.duringRead = [];
    try {
      const { entries, revision } = await this.etcd.snapshot(NAMES_PREFIX, deadlineFromNow());
      const names = new Map<string, RemoteName>();
      for (const entry of entries) this.put(names, entry);
      const read = BigInt(revision);
      for (const change of this.duringRead) if (change.modRevision > read) this.apply(names, change);
      this.names = names;
      this.readRevision = read;
      this.watch ??= this.etcd.watchPrefix(NAMES_PREFIX, (read + 1n).toString(), {
        put: (entry) => this.seen({ key: entry.key, modRevision: BigInt(entry.modRevision), entry }),
        delete: (key, modRevision) => this.seen({ key, modRevision: BigInt(modRevision) }),
        disconnected: (reason) => {
          if (!this.disconnected) this.log.warn({ reason }, 'lost the watch on other hosts\' names; serving the last known');
          this.disconnected = true;
        },
        reconnected: () => {
          this.log.info('the watch on other hosts\' names is back; reading them again');
          this.disconnected = false;
          this.resync.request();
        },
        cancelled: (reason) => {
          this.log.warn({ reason }, 'etcd ended the watch on other hosts\' names; reading them again');
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
    this.apply(this.names, change);
    this.changed();
  }

  private apply(names: Map<string, RemoteName>, change: Change): void {
    if (change.entry) this.put(names, change.entry);
    else names.delete(change.key);
  }

  /** Adds another host's entry; this host's own, and what tsnet did not write, are skipped. */
  private put(names: Map<string, RemoteName>, entry: Entry): void {
    const where = parseNameKey(entry.key);
    if (!where || where.host === this.hostId) return;
    try {
      names.set(entry.key, { ...where, ...decodeValue(PublishedName, entry.key, entry.value) });
    } catch (error) {
      this.log.warn({ err: errorText(error) }, 'skipped a name in the cluster store');
      names.delete(entry.key);
    }
  }
}
