// Reads of kernel state inside a test netns, for assertions.
import { ipIn } from '../harness/index.js';
import type { LinkInfo } from '../../src/sys/index.js';

export async function linksIn(netns: string): Promise<LinkInfo[]> {
  return JSON.parse((await ipIn(netns, ['-json', '-details', 'link', 'show'])).stdout) as LinkInfo[];
}

export async function linkIn(netns: string, name: string): Promise<LinkInfo | undefined> {
  return (await linksIn(netns)).find((l) => l.ifname === name);
}

/** The PROMISC flag as `ip link show` prints it (not the kernel's promiscuity counter). */
export async function promiscFlag(netns: string, name: string): Promise<boolean> {
  const link = await linkIn(netns, name);
  if (!link) throw new Error(`no link ${name} in ${netns}`);
  return link.flags.includes('PROMISC');
}

/** Names of the links tsnet made (tsm endpoint macvlans, tss shims, tsbr bridges, tsv/tsc veths). */
export async function tsnetLinks(netns: string): Promise<string[]> {
  return (await linksIn(netns)).map((l) => l.ifname).filter((n) => /^ts[mscv]|^tsbr-/.test(n));
}

/** Routes as `dst dev` strings, e.g. `10.61.0.10 tss0123456789ab`. */
export async function routesIn(netns: string): Promise<string[]> {
  const routes = JSON.parse((await ipIn(netns, ['-json', '-4', 'route', 'show'])).stdout) as Array<{ dst: string; dev: string }>;
  return routes.map((r) => `${r.dst} ${r.dev}`);
}
