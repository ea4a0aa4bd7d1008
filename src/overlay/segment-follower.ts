import type { Logger } from 'pino';
import { BackgroundTask, errorText } from '../cluster/background-task.js';
import type { EtcdClient, Entry } from '../cluster/etcd-client.js';
import type { HostRegistry } from '../cluster/host-registry.js';
import { AddressHold, decodeValue, type PoolKeys } from '../cluster/keys.js';
import { PrefixMirror } from '../cluster/prefix-mirror.js';
import type { SegmentEncryption } from './segment-encryption.js';
import { remotePeers, type SegmentMember, segmentMembers } from './segment-members.js';
import type { PeerTable, RemotePeer } from './vxlan.js';

/** How soon a kernel write that failed is tried again. */
const RETRY_MS = 1000;

/** One write of a segment's peers into the kernel: entries written and removed, and the time since the store's change arrived. */
export interface PeerWrite {
  written: number;
  removed: number;
  seconds: number;
}

/** What the daemon hears of, and wraps around, each write of peers. */
export interface PeerWriteHooks {
  /** Told of every write that changed something (metrics). */
  observe?: (write: PeerWrite) => void;
  /** Runs each write as tsnet's own change, so the drift watcher takes the kernel's events about it for no drift. */
  asOwnChange?: <T>(work: () => Promise<T>) => Promise<T>;
}

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
  /** When the oldest change not yet written arrived. */
  private changedAt: bigint | undefined;
  /** An encrypted segment's users and keys (tsnet.encrypt=on). */
  private readonly encryption: SegmentEncryption | undefined;

  constructor(
    etcd: EtcdClient,
    private readonly keys: PoolKeys,
    private readonly registry: HostRegistry,
    private readonly self: string,
    private peers: PeerTable,
    private readonly log: Logger,
    private readonly hooks: PeerWriteHooks = {},
    encrypt?: (changed: () => void) => SegmentEncryption,
  ) {
    this.encryption = encrypt?.(() => this.changed());
    const decode = (entry: Entry) => decodeValue(AddressHold, entry.key, entry.value);
    this.holds = new PrefixMirror(etcd, keys.addressesPrefix, `the addresses of segment ${keys.name}`, decode, () => this.changed(), log);
    this.sync = new BackgroundTask(() => this.apply(), (error) => this.log.warn({ segment: keys.name, err: errorText(error) }, 'cannot write the segment\'s peer entries; retrying'), RETRY_MS);
  }

  start(): void {
    this.unsubscribe = this.registry.onChange(() => this.changed());
    this.holds.start();
    this.encryption?.start();
  }

  /** Stops following; `drop` (the network is gone) also takes an encrypted segment's SAs and policies out of the kernel. */
  async stop(drop = false): Promise<void> {
    this.unsubscribe?.();
    this.holds.stop();
    this.sync.stop();
    await this.encryption?.stop(drop);
  }

  /**
   * Takes over `peers`, a table that adopted the kernel's entries again (a
   * repair: someone changed them), and writes the store's difference now
   * when the store was read already: no new read of etcd, which may be down.
   */
  async repair(peers: PeerTable): Promise<void> {
    this.peers = peers;
    this.encryption?.forgetKernel();
    this.changed();
    await this.sync.settle();
  }

  /** Waits for the read and the kernel writes in progress (tests). */
  async settle(): Promise<void> {
    await this.holds.settle();
    await this.encryption?.settle();
    await this.sync.settle();
  }

  /**
   * The peers the store asks for, to compare with the kernel (doctor, the
   * drift watcher); undefined while that comparison would mislead: before
   * the first read, or while a write is under way or waits for a retry.
   */
  wanted(): RemotePeer[] | undefined {
    if (!this.holds.loaded || this.sync.busy || this.changedAt !== undefined) return undefined;
    return remotePeers(this.addressHolds(), this.registry.hosts(), this.self);
  }

  /** The hosts with containers on the segment, as last read; undefined before the first read. */
  members(): SegmentMember[] | undefined {
    if (!this.holds.loaded) return undefined;
    return segmentMembers(this.addressHolds(), this.registry, this.self);
  }

  private changed(): void {
    this.changedAt ??= process.hrtime.bigint();
    this.sync.request();
  }

  private addressHolds(): Array<readonly [string, AddressHold]> {
    return [...this.holds.entries()].map(([key, hold]) => [this.keys.addressOf(key), hold] as const);
  }

  private async apply(): Promise<void> {
    // Before the first read the entries the kernel has are all there is to go by: none is removed.
    // An encrypted segment's keys and users come first: no peer is written that its SAs could not carry.
    if (!this.holds.loaded || this.encryption?.loaded === false) return;
    const since = this.changedAt ?? process.hrtime.bigint();
    this.changedAt = undefined;
    let changed: { written: number; removed: number };
    try {
      await this.encryption?.apply();
      const wanted = remotePeers(this.addressHolds(), this.registry.hosts(), this.self);
      changed = await (this.hooks.asOwnChange ?? ((work) => work()))(() => this.peers.set(wanted));
      await this.encryption?.acknowledge();
    } catch (error) {
      // Not written: the retry measures from the same change.
      this.changedAt = since;
      throw error;
    }
    if (changed.written + changed.removed === 0) return;
    this.log.debug({ segment: this.keys.name, ...changed }, 'segment peers written');
    this.hooks.observe?.({ ...changed, seconds: Number(process.hrtime.bigint() - since) / 1e9 });
  }
}
