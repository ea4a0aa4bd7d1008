import { type Cidr, cidrOverlaps, parseCidr } from '../src/net/address.js';
import type { NetworkRecord, NetworkSpec } from './model.js';

/** The parsed subnets of each network record (records are replaced, never changed): a create checks against hundreds of them. */
const parsed = new WeakMap<NetworkSpec, Array<{ text: string; cidr: Cidr }>>();

function subnetsOf(network: NetworkSpec): Array<{ text: string; cidr: Cidr }> {
  let subnets = parsed.get(network);
  if (!subnets) {
    subnets = [...network.ipv4, ...network.ipv6Subnets].flatMap((s) => {
      const cidr = parseCidr(s.pool)?.cidr;
      return cidr ? [{ text: s.pool, cidr }] : [];
    });
    parsed.set(network, subnets);
  }
  return subnets;
}

/** The first subnet of `spec` that overlaps one of `others`', with whose. */
export function firstOverlap(spec: NetworkSpec, others: readonly NetworkRecord[]): { mine: string; theirs: string; other: NetworkRecord } | undefined {
  const mine = subnetsOf(spec);
  for (const other of others) {
    for (const theirs of subnetsOf(other)) {
      const clash = mine.find((m) => cidrOverlaps(m.cidr, theirs.cidr));
      if (clash) return { mine: clash.text, theirs: theirs.text, other };
    }
  }
  return undefined;
}
