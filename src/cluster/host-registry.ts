import type { Logger } from 'pino';
import type { EtcdClient, Entry } from './etcd-client.js';
import { decodeValue, HostRecord, hostKey, hostOfKey, HOSTS_PREFIX } from './keys.js';
import { PrefixMirror } from './prefix-mirror.js';

/**
 * The host registry (hosts/), mirrored once for the whole daemon: who the
 * other hosts are (names across hosts are served for registered hosts only)
 * and where their underlay is (overlay peers and the gate).
 */
export class HostRegistry {
  private readonly listeners = new Set<() => void>();
  private readonly mirror: PrefixMirror<HostRecord>;
  private started = false;

  constructor(etcd: EtcdClient, log: Logger) {
    const decode = (entry: Entry) => (hostOfKey(entry.key) ? decodeValue(HostRecord, entry.key, entry.value) : undefined);
    this.mirror = new PrefixMirror(etcd, HOSTS_PREFIX, 'the host registry', decode, () => this.listeners.forEach((l) => l()), log);
  }

  /** Reads the registry in the background, then follows it; once, whoever asks first. */
  start(): void {
    if (!this.started) this.mirror.start();
    this.started = true;
  }

  stop(): void {
    this.mirror.stop();
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

  settle(): Promise<void> {
    return this.mirror.settle();
  }
}
