import type { Logger } from 'pino';
import type { EtcdClient, Entry } from './etcd-client.js';
import { ALIVE_PREFIX, AliveRecord, aliveKey, decodeValue, HostRecord, hostKey, hostOfKey, HOSTS_PREFIX } from './keys.js';
import { PrefixMirror } from './prefix-mirror.js';

/**
 * The host registry (hosts/), mirrored once for the whole daemon: who the
 * other hosts are (names across hosts are served for registered hosts only)
 * and where their underlay is (overlay peers and the gate); and which of
 * them hold their lease (alive/), for what tsnet shows of a segment.
 */
export class HostRegistry {
  private readonly listeners = new Set<() => void>();
  private readonly mirror: PrefixMirror<HostRecord>;
  private readonly alive: PrefixMirror<AliveRecord>;
  private started = false;

  constructor(etcd: EtcdClient, log: Logger) {
    const decode = (entry: Entry) => (hostOfKey(entry.key) ? decodeValue(HostRecord, entry.key, entry.value) : undefined);
    this.mirror = new PrefixMirror(etcd, HOSTS_PREFIX, 'the host registry', decode, () => this.listeners.forEach((l) => l()), log);
    // Only shown, never acted on: a host whose lease lapsed keeps its peers and its place in the gate (docs/overlay.md).
    this.alive = new PrefixMirror(etcd, ALIVE_PREFIX, 'the alive hosts', (entry) => decodeValue(AliveRecord, entry.key, entry.value), () => undefined, log);
  }

  /** Reads the registry in the background, then follows it; once, whoever asks first. */
  start(): void {
    if (!this.started) {
      this.mirror.start();
      this.alive.start();
    }
    this.started = true;
  }

  stop(): void {
    this.mirror.stop();
    this.alive.stop();
  }

  /** Whether the host holds its lease, as last read; undefined before the first read. */
  isAlive(hostId: string): boolean | undefined {
    return this.alive.loaded ? this.alive.get(aliveKey(hostId)) !== undefined : undefined;
  }

  has(hostId: string): boolean {
    return this.mirror.get(hostKey(hostId)) !== undefined;
  }

  /** host ID → its record. */
  hosts(): Map<string, HostRecord> {
    return new Map([...this.mirror.entries()].map(([, record]) => [record.id, record]));
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async settle(): Promise<void> {
    await Promise.all([this.mirror.settle(), this.alive.settle()]);
  }
}
