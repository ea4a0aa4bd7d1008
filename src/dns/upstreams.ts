import { readFile, stat } from 'node:fs/promises';
import { parseIp } from '../net/address.js';
import { type DnsAddress, dnsAddressKey } from './dns-address.js';

/** A resolver tsnet forwards to. */
export type Upstream = DnsAddress;

/** Where the forwarder finds its upstreams, asked before each forward. */
export interface UpstreamSource {
  current(): Promise<Upstream[]>;
}

/** --dns-upstream: a fixed list. */
export class StaticUpstreams implements UpstreamSource {
  constructor(private readonly upstreams: readonly Upstream[]) {}

  current(): Promise<Upstream[]> {
    return Promise.resolve([...this.upstreams]);
  }
}

/** The nameserver lines of a resolv.conf; IPv6 zone suffixes (%eth0) are dropped. */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    const address = match?.[1]?.replace(/%.*$/, '');
    if (address && parseIp(address)) out.push({ address, port: 53 });
  }
  return out;
}

/** How often at most the file is looked at again. */
const RECHECK_MS = 1_000;

/**
 * The host's resolv.conf, read again when it changes (checked at most once
 * a second, on use; a file replaced by rename counts as changed). Our own
 * listeners are left out, so a host that points at tsnet makes no loop.
 */
export class ResolvConfUpstreams implements UpstreamSource {
  private upstreams: Upstream[] = [];
  private version = '';
  private checkedAt = -Infinity;

  constructor(
    readonly path: string,
    private readonly own: ReadonlySet<string>,
  ) {}

  async current(): Promise<Upstream[]> {
    const now = performance.now();
    if (now - this.checkedAt >= RECHECK_MS) {
      this.checkedAt = now;
      await this.reload();
    }
    return this.upstreams;
  }

  private async reload(): Promise<void> {
    try {
      const info = await stat(this.path);
      const version = `${info.ino}:${info.mtimeMs}:${info.size}`;
      if (version === this.version) return;
      this.version = version;
      this.upstreams = parseResolvConf(await readFile(this.path, 'utf8')).filter((u) => !this.own.has(dnsAddressKey(u)));
    } catch {
      // No file: no upstreams, as with an empty one.
      this.version = '';
      this.upstreams = [];
    }
  }
}
