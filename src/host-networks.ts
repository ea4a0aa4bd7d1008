import { type Cidr, parseCidr, parseCidrWithIp, parseIp } from './net/address.js';
import type { Ip } from './sys/index.js';

/**
 * Subnets the host already uses (its routes and its addresses' subnets), so
 * that automatic pools never shadow them.
 */
export async function hostNetworks(ip: Ip): Promise<Cidr[]> {
  const out: Cidr[] = [];
  for (const family of [4, 6] as const) {
    for (const route of await ip.routes(family)) {
      if (route.dst === 'default') continue;
      const cidr = route.dst.includes('/') ? parseCidr(route.dst)?.cidr : hostRoute(route.dst);
      if (cidr) out.push(cidr);
    }
  }
  for (const link of await ip.addresses()) {
    for (const a of link.addr_info ?? []) {
      const parsed = parseCidrWithIp(`${a.local}/${a.prefixlen}`);
      if (parsed) out.push(parsed.cidr);
    }
  }
  return out;
}

function hostRoute(text: string): Cidr | undefined {
  const ip = parseIp(text);
  return ip && { family: ip.family, network: ip.value, prefix: ip.family === 4 ? 32 : 128 };
}
