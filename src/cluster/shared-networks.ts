import type { NetworkRecord } from '../../drivers/model.js';
import { type Cidr, canonicalCidr, parseCidr } from '../net/address.js';

/** A shared pool this host uses: its name and subnet (one network per pool per host). */
export interface PoolSubnet {
  name: string;
  subnet: string;
}

/** One of this host's networks on a shared pool, with the name its DNS serves it under. */
export interface LocalNetwork {
  id: string;
  name: string;
}

/**
 * Which of this host's networks is on which shared pool. The same shared
 * network has a different Docker ID (and maybe name) on every host; its pool
 * is what ties them together, so names cross hosts by pool name. Computed
 * afresh on each call: networks and pools change together with requests.
 */
export class SharedNetworks {
  constructor(
    private readonly networks: () => readonly NetworkRecord[],
    private readonly pools: () => readonly PoolSubnet[],
    /** The network's name in this host's DNS (Docker's name, or its short ID). */
    private readonly networkName: (networkId: string) => string,
  ) {}

  /** network ID → pool name, for this host's networks on shared pools. */
  poolByNetwork(): Map<string, string> {
    const bySubnet = new Map(this.pools().map((p) => [p.subnet, p.name]));
    const out = new Map<string, string>();
    for (const network of this.networks()) {
      // A dual-stack network's two families share one pool name; the IPv4 one is asked first.
      const pool = [...network.ipv4, ...network.ipv6Subnets].map((s) => bySubnet.get(canonicalCidr(s.pool))).find((name) => name !== undefined);
      if (pool !== undefined) out.set(network.id, pool);
    }
    return out;
  }

  /** pool name → this host's network on it. */
  networkByPool(): Map<string, LocalNetwork> {
    const out = new Map<string, LocalNetwork>();
    for (const [id, pool] of this.poolByNetwork()) out.set(pool, { id, name: this.networkName(id) });
    return out;
  }

  /** pool name → its subnets (one per family): where the addresses of its names must lie. */
  subnetsByPool(): Map<string, Cidr[]> {
    const out = new Map<string, Cidr[]>();
    for (const pool of this.pools()) {
      const cidr = parseCidr(pool.subnet)?.cidr;
      if (cidr) out.set(pool.name, [...(out.get(pool.name) ?? []), cidr]);
    }
    return out;
  }
}
