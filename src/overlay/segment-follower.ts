import type { Logger } from 'pino';
import { BackgroundTask, errorText } from '../cluster/background-task.js';
import type { EtcdClient, Entry } from '../cluster/etcd-client.js';
import type { HostRegistry } from '../cluster/host-registry.js';
import { AddressHold, decodeValue, type PoolKeys } from '../cluster/keys.js';
import { PrefixMirror } from '../cluster/prefix-mirror.js';
import { remotePeers } from './segment-members.js';
import type { SegmentPeers } from './vxlan.js';

/** How soon a kernel write that failed is tried again. */
const RETRY_MS = 1000;

/**
 * Keeps one segment's peer entries on this host equal to the store: the
 * pool's address holds (mirrored: a paged read, then a watch, read again
 * after a reconnect or a compaction) and the host registry. While etcd is
 * unreachable the entries stay as they are, so traffic keeps flowing; a
 * burst of changes is written as one difference.
 */
export class SegmentFollower {
  private readonly holds: PrefixMirror<AddressHold>;
  private readonly sync: BackgroundTask;
  private unsubscribe: (() => void) | undefined;

  constructor(
    etcd: EtcdClient,
    keys: PoolKeys,
    private readonly registry: HostRegistry,
    private readonly self: string,
    private readonly peers: SegmentPeers,
    private readonly log: Logger,
  ) {
    const decode = (entry: Entry) => decodeValue(AddressHold, entry.key, entry.value);
    this.holds = new PrefixMirror(etcd, keys.addressesPrefix, `the addresses of segment ${keys.name}`, decode, () => this.sync.request(), log);
    this.sync = new BackgroundTask(() => this.apply(keys), (error) => this.log.warn({ segment: keys.name, err: errorText(error) }, 'cannot write the segment\'s peer entries; retrying'), RETRY_MS);
  }

  start(): void {
    this.unsubscribe = this.registry.onChange(() => this.sync.request());
    this.holds.start();
  }

  stop(): void {
    this.unsubscribe?.();
    this.holds.stop();
    this.sync.stop();
  }

  /** Waits for the read and the kernel writes in progress (tests). */
  async settle(): Promise<void> {
    await this.holds.settle();
    await this.sync.settle();
  }

  private async apply(keys: PoolKeys): Promise<void> {
    // Before the first read the entries the kernel has are all there is to go by: none is removed.
    if (!this.holds.loaded) return;
    const holds = [...this.holds.entries()].map(([key, hold]) => [keys.addressOf(key), hold] as const);
    const changed = await this.peers.set(remotePeers(holds, this.registry.hosts(), this.self));
    if (changed.written + changed.removed > 0) this.log.debug({ segment: keys.name, ...changed }, 'segment peers written');
  }
}
