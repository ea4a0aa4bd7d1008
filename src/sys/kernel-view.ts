import type { Ip, LinkInfo } from './ip.js';

/** A link as one `ip -json -details address show` shows it: its details and its addresses (`address/prefix`). */
export interface LinkView extends LinkInfo {
  addresses: string[];
}

/**
 * What the host netns holds of links, addresses and routes at one moment,
 * read in one go for a check of every network (drift, `tsnet doctor`):
 * each network compares itself against it without a read of its own.
 */
export interface KernelView {
  links: ReadonlyMap<string, LinkView>;
  /** IPv4 routes of the main table as `dst dev`, e.g. `10.1.2.3 dev tss0123456789ab`. */
  routes: ReadonlySet<string>;
}

/** One program for links and addresses, one for routes. */
export async function readKernelView(ip: Ip): Promise<KernelView> {
  const [shown, routes] = await Promise.all([ip.detailedAddresses(), ip.routes(4)]);
  const links = new Map(shown.map(({ addr_info, ...link }) => [link.ifname, { ...link, addresses: addr_info.map((a) => `${a.local}/${a.prefixlen}`) }]));
  return { links, routes: new Set(routes.filter((r) => r.dev).map((r) => `${r.dst} dev ${r.dev}`)) };
}
