import { networkInterfaces } from 'node:os';
import { type Cidr, cidrContains, parseCidr, parseIp } from '../net/address.js';

/** How the server treats whoever sent a query. */
export type AskerClass =
  /** The host itself and tsnet's own containers: any name, answers as large as they ask for, no rate limit. */
  | 'local'
  /** Allowed to recurse by --dns-recursion-from, but not tsnet's: UDP answers capped, rate limited. */
  | 'trusted'
  /** Anyone else who reaches a listener (the LAN): tsnet's names only, UDP answers capped, rate limited. */
  | 'stranger';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];
/** Classes remembered per address; a flood of spoofed sources only refills it. */
const MEMO_LIMIT = 4096;

const toCidrs = (texts: Iterable<string>): Cidr[] => [...texts].flatMap((text) => parseCidr(text)?.cidr ?? []);

/** The host's own addresses, each as a host route: a query the host sends to its own LAN address comes from one of them. */
export function hostAddressCidrs(): string[] {
  return Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((a) => `${a.address.split('%')[0]}/${a.family === 'IPv4' ? 32 : 128}`));
}

/**
 * Sorts askers into classes by their source address. "Local" is what tsnet
 * answers for anyway: loopback, the host's addresses, the subnets it owns
 * whole (bridge networks) and its containers' addresses elsewhere (macvlan,
 * where the rest of the subnet is the LAN).
 */
export class AskerClassifier {
  private local: Cidr[] = toCidrs(LOOPBACK);
  private readonly trusted: Cidr[];
  private readonly memo = new Map<string, AskerClass>();

  constructor(recursionFrom: readonly string[]) {
    this.trusted = toCidrs(recursionFrom);
  }

  /** `local`: CIDRs besides loopback; replaces the previous set. */
  setLocal(local: Iterable<string>): void {
    this.local = toCidrs([...LOOPBACK, ...local]);
    this.memo.clear();
  }

  classify(from: string): AskerClass {
    let found = this.memo.get(from);
    if (found === undefined) {
      found = this.lookUp(from);
      if (this.memo.size >= MEMO_LIMIT) this.memo.clear();
      this.memo.set(from, found);
    }
    return found;
  }

  private lookUp(from: string): AskerClass {
    // An IPv4 asker of a dual-stack socket shows as ::ffff:a.b.c.d.
    const ip = parseIp(from.startsWith('::ffff:') && from.includes('.') ? from.slice(7) : from);
    if (ip === undefined) return 'stranger';
    if (this.local.some((cidr) => cidrContains(cidr, ip))) return 'local';
    return this.trusted.some((cidr) => cidrContains(cidr, ip)) ? 'trusted' : 'stranger';
  }
}
