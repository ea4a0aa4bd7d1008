import { type Cidr, cidrSize, parseCidr } from '../net/address.js';

/** A base network cut into subnets of one size: `172.17.0.0/16` split into /16s, `192.168.0.0/16` into /20s. */
export interface DefaultPool {
  base: Cidr;
  size: number;
}

/** Docker's own defaults for IPv4, so users find the subnets they know. */
export const DEFAULT_POOLS_V4 = '172.17.0.0/16/16,172.18.0.0/15/16,172.20.0.0/14/16,172.24.0.0/13/16,192.168.0.0/16/20';
/** A unique-local /48 cut into /64s: Docker has no IPv6 defaults at all. */
export const DEFAULT_POOLS_V6 = 'fd74:736e:6574::/48/64';

/** Parses `base/len/size,…` (the form of dockerd's --default-address-pool, flattened). */
export function parseDefaultPools(spec: string): DefaultPool[] {
  return spec
    .split(',')
    .filter((part) => part.trim() !== '')
    .map((part) => {
      const match = /^(.+\/\d+)\/(\d+)$/.exec(part.trim());
      const parsed = match ? parseCidr(match[1]!) : undefined;
      const size = match ? Number(match[2]) : NaN;
      if (!parsed || parsed.hostBitsSet || !(size >= parsed.cidr.prefix) || size > (parsed.cidr.family === 4 ? 32 : 128)) {
        throw new Error(`default pool "${part}" is not of the form <subnet>/<size>, e.g. 10.200.0.0/16/24`);
      }
      return { base: parsed.cidr, size };
    });
}

/** Every candidate subnet, in order. Lazy: an IPv6 /48 holds 65536 /64s. */
export function* candidateSubnets(pools: readonly DefaultPool[]): Generator<Cidr> {
  for (const { base, size } of pools) {
    const step = cidrSize({ ...base, prefix: size });
    const end = base.network + cidrSize(base);
    for (let network = base.network; network < end; network += step) yield { family: base.family, network, prefix: size };
  }
}
