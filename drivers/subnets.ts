import { cidrOverlaps, parseCidr } from '../src/net/address.js';
import type { NetworkRecord, NetworkSpec } from './model.js';

/** The first subnet of `spec` that overlaps one of `other`'s, as [mine, theirs]; undefined when they share no address. */
export function overlappingSubnets(spec: NetworkSpec, other: NetworkRecord): [string, string] | undefined {
  for (const mine of [...spec.ipv4, ...spec.ipv6Subnets]) {
    for (const theirs of [...other.ipv4, ...other.ipv6Subnets]) {
      const a = parseCidr(mine.pool)?.cidr;
      const b = parseCidr(theirs.pool)?.cidr;
      if (a && b && cidrOverlaps(a, b)) return [mine.pool, theirs.pool];
    }
  }
  return undefined;
}
