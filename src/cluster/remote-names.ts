import type { Logger } from 'pino';
import type { NameEntry, RecordSource } from '../dns/name-entry.js';
import { type Cidr, cidrContains, parseIp } from '../net/address.js';
import type { EtcdClient, Entry } from './etcd-client.js';
import type { HostRegistry } from './host-registry.js';
import { decodeValue, parseNameKey, poolNamesPrefix, PublishedName } from './keys.js';
import { PrefixMirror } from './prefix-mirror.js';
import type { SharedNetworks } from './shared-networks.js';

const REFUSED_KEPT = 1000;

/** Another host's endpoint, as it published it. */
interface RemoteName extends PublishedName {
  host: string;
  endpointId: string;
}

/** The address if it lies in one of the pool's subnets (this host's, one per family it has). */
function inPool(text: string | undefined, subnets: readonly Cidr[]): string | undefined {
  const ip = text === undefined ? undefined : parseIp(text);
  return ip && subnets.some((cidr) => cidrContains(cidr, ip)) ? text : undefined;
}

/**
 * The names other hosts publish in etcd (NamePublisher), mirrored here and
 * served by this host's DNS under its own network on the same shared pool:
 * `web.lan.tsnet` on host A answers container `web` of host B when A's
 * network on B's pool is called `lan` on A. One mirror per pool this host has
 * a network on (names go pool first), and one of the host registry: a name
 * is served only when its host is registered, and only with its addresses
 * that lie in the pool's subnets, so a stray or forged key cannot point a
 * name elsewhere.
 * This host's own names are left out (served from its own records already).
 */
export class RemoteNames implements RecordSource {
  private readonly pools = new Map<string, PrefixMirror<RemoteName>>();
  private unsubscribe: (() => void) | undefined;
  private readonly listeners = new Set<() => void>();
  /** Keys refused by validation, each logged once (forgotten all at once past REFUSED_KEPT, so a flood costs bounded memory). */
  private readonly refused = new Set<string>();
  private started = false;

  constructor(
    private readonly etcd: EtcdClient,
    private readonly hostId: string,
    private readonly shared: SharedNetworks,
    /** The host registry (shared with the overlay; its owner stops it). */
    private readonly hosts: HostRegistry,
    private readonly log: Logger,
  ) {}

  /** Reads the names in the background, then follows them. */
  start(): void {
    this.started = true;
    this.unsubscribe = this.hosts.onChange(() => this.changed());
    this.hosts.start();
    this.followPools();
  }

  /** Mirrors exactly the pools this host has a network on; called again whenever its networks change. */
  followPools(): void {
    if (!this.started) return;
    const wanted = new Set(this.shared.networkByPool().keys());
    for (const [pool, mirror] of this.pools) {
      if (wanted.has(pool)) continue;
      mirror.stop();
      this.pools.delete(pool);
      this.changed();
    }
    for (const pool of wanted) {
      if (this.pools.has(pool)) continue;
      const mirror = new PrefixMirror(this.etcd, poolNamesPrefix(pool), `other hosts' names on pool ${pool}`, (entry) => this.decode(entry), () => this.changed(), this.log);
      this.pools.set(pool, mirror);
      mirror.start();
    }
  }

  /** The pools whose names are mirrored now. */
  followedPools(): string[] {
    return [...this.pools.keys()];
  }

  entries(): NameEntry[] {
    const networkOf = this.shared.networkByPool();
    const subnetsOf = this.shared.subnetsByPool();
    const out: NameEntry[] = [];
    for (const [pool, mirror] of this.pools) {
      const network = networkOf.get(pool);
      if (!network) continue;
      const subnets = subnetsOf.get(pool) ?? [];
      for (const [key, name] of mirror.entries()) {
        if (!this.hosts.has(name.host)) continue;
        const [ipv4, ipv6] = [inPool(name.ipv4, subnets), inPool(name.ipv6, subnets)];
        if (ipv4 !== name.ipv4 || ipv6 !== name.ipv6) {
          this.refuse(key, `an address outside this host's subnets of pool ${pool} (not served)`);
          if (!ipv4 && !ipv6) continue;
        }
        out.push({ networkId: network.id, networkName: network.name, endpointId: name.endpointId, names: name.names, ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) });
      }
    }
    return out;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Waits for the reads in progress (tests). */
  async settle(): Promise<void> {
    await Promise.all([this.hosts.settle(), ...[...this.pools.values()].map((m) => m.settle())]);
  }

  stop(): void {
    this.started = false;
    this.unsubscribe?.();
    for (const mirror of this.pools.values()) mirror.stop();
    this.pools.clear();
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  /** Another host's name; this host's own, and what tsnet did not write, are skipped. */
  private decode(entry: Entry): RemoteName | undefined {
    const where = parseNameKey(entry.key);
    if (!where || where.host === this.hostId) return undefined;
    return { host: where.host, endpointId: where.endpointId, ...decodeValue(PublishedName, entry.key, entry.value) };
  }

  private refuse(key: string, reason: string): void {
    if (this.refused.has(key)) return;
    if (this.refused.size >= REFUSED_KEPT) this.refused.clear();
    this.refused.add(key);
    this.log.warn({ key, reason }, 'skipped a name in the cluster store');
  }
}
