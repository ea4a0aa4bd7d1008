import { type Cidr, cidrContains, type Ip, parseCidr, parseIp } from '../net/address.js';
import { endpointLabel, type NameEntry } from './name-entry.js';

/** The name PTR queries ask for: `4.3.2.1.in-addr.arpa`, or the 32 nibbles of an IPv6 address under ip6.arpa. */
export function reverseName(ip: Ip): string {
  if (ip.family === 4) {
    const n = Number(ip.value);
    return `${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${n >>> 24}.in-addr.arpa`;
  }
  return [...ip.value.toString(16).padStart(32, '0')].reverse().join('.') + '.ip6.arpa';
}

/** The address a full reverse name stands for (4 labels under in-addr.arpa, 32 nibbles under ip6.arpa); undefined for anything else. */
export function addressOfReverseName(name: string): Ip | undefined {
  const labels = name.toLowerCase().replace(/\.$/, '').split('.');
  if (labels.length === 6 && labels.slice(4).join('.') === 'in-addr.arpa' && labels.slice(0, 4).every((l) => /^(0|[1-9]\d{0,2})$/.test(l))) {
    return parseIp(labels.slice(0, 4).reverse().join('.'));
  }
  if (labels.length === 34 && labels.slice(32).join('.') === 'ip6.arpa' && labels.slice(0, 32).every((l) => /^[0-9a-f]$/.test(l))) {
    const hex = labels.slice(0, 32).reverse().join('');
    return parseIp(hex.match(/.{4}/g)!.join(':'));
  }
  return undefined;
}

/** What a name has, seen from one listener. */
export type Lookup =
  /** The name exists; empty lists for a type it lacks (NODATA). */
  | { kind: 'found'; a: string[]; aaaa: string[]; ptr: string[] }
  /** A name under the domain (or a reverse name of a served address) that this listener does not have. */
  | { kind: 'nxdomain' }
  /** Not ours to answer: forwarded upstream, if the listener forwards. */
  | { kind: 'outside' };

interface AddressRecord {
  networkId: string;
  ipv4?: string;
  ipv6?: string;
}

interface PointerRecord {
  networkId: string;
  target: string;
}

/** Networks a name belongs to; `all` for the domain itself. */
type Owners = Set<string> | 'all';

const unique = (values: Iterable<string | undefined>) => [...new Set([...values].filter((v): v is string => v !== undefined))];

/**
 * Every name tsnet serves, indexed for lookups:
 *   <container>.<network>.<domain>, <alias>.<network>.<domain> and
 *   ep-<12 hex>.<network>.<domain>   A / AAAA
 *   the reverse name of every address PTR to <container or ep-…>.<network>.<domain>
 * Keys are lower case (DNS names compare case-insensitively). A scope (a
 * network ID) limits a lookup to one network's names and addresses.
 */
export class RecordTable {
  readonly domain: string;
  private readonly addresses = new Map<string, AddressRecord[]>();
  private readonly pointers = new Map<string, PointerRecord[]>();
  /** Names that exist without records of their own: the domain, `<network>.<domain>`, and what lies between a dotted container name and its network. */
  private readonly nodes = new Map<string, Owners>();
  /** Subnets whose every address is tsnet's (bridge networks): their reverse names are answered here, never upstream. */
  private readonly owned: Cidr[];

  constructor(domain: string, entries: readonly NameEntry[], ownedSubnets: readonly string[] = []) {
    this.domain = domain.toLowerCase().replace(/\.$/, '');
    this.owned = ownedSubnets.flatMap((s) => parseCidr(s)?.cidr ?? []);
    this.nodes.set(this.domain, 'all');
    for (const entry of entries) this.add(entry);
  }

  private add(entry: NameEntry): void {
    const zone = `${entry.networkName}.${this.domain}`.toLowerCase();
    this.addNode(zone, entry.networkId);
    const record = { networkId: entry.networkId, ...(entry.ipv4 ? { ipv4: entry.ipv4 } : {}), ...(entry.ipv6 ? { ipv6: entry.ipv6 } : {}) };
    for (const label of unique([...entry.names, endpointLabel(entry.endpointId)])) {
      const name = `${label}.${zone}`.toLowerCase();
      push(this.addresses, name, record);
      // A dotted container name (a.b) makes b.<network>.<domain> exist too, without records.
      for (let dot = name.indexOf('.'); dot >= 0 && name.length - dot - 1 > zone.length; dot = name.indexOf('.', dot + 1)) {
        this.addNode(name.slice(dot + 1), entry.networkId);
      }
    }
    const target = `${entry.names[0] ?? endpointLabel(entry.endpointId)}.${entry.networkName}.${this.domain}`;
    for (const address of [entry.ipv4, entry.ipv6]) {
      const ip = address === undefined ? undefined : parseIp(address);
      if (ip) push(this.pointers, reverseName(ip), { networkId: entry.networkId, target });
    }
  }

  private addNode(name: string, networkId: string): void {
    const owners = this.nodes.get(name);
    if (owners === 'all') return;
    if (owners) owners.add(networkId);
    else this.nodes.set(name, new Set([networkId]));
  }

  /** True for the domain and every name under it: tsnet answers those with authority. */
  inDomain(name: string): boolean {
    const lower = name.toLowerCase();
    return lower === this.domain || lower.endsWith(`.${this.domain}`);
  }

  /**
   * A reverse name of an address of tsnet's own subnets: no one else knows
   * it, and sent upstream it may come back to tsnet (a systemd-resolved
   * that forwards here) and end as a SERVFAIL after the timeout.
   */
  private isOwnedReverse(name: string): boolean {
    const ip = addressOfReverseName(name);
    return ip !== undefined && this.owned.some((cidr) => cidrContains(cidr, ip));
  }

  /** `scope` undefined: every network's names (the host's and the LAN's listeners). */
  lookup(name: string, scope: string | undefined): Lookup {
    const key = name.toLowerCase();
    const inScope = (r: { networkId: string }) => scope === undefined || r.networkId === scope;

    const addresses = this.addresses.get(key)?.filter(inScope);
    if (addresses && addresses.length > 0) {
      return { kind: 'found', a: unique(addresses.map((r) => r.ipv4)), aaaa: unique(addresses.map((r) => r.ipv6)), ptr: [] };
    }
    const owners = this.nodes.get(key);
    if (owners === 'all' || (owners && (scope === undefined || owners.has(scope)))) return { kind: 'found', a: [], aaaa: [], ptr: [] };
    if (this.inDomain(key)) return { kind: 'nxdomain' };

    const pointers = this.pointers.get(key);
    if (!pointers) return this.isOwnedReverse(key) ? { kind: 'nxdomain' } : { kind: 'outside' };
    const mine = pointers.filter(inScope);
    // An address of another network: this listener knows nothing of it, and it is not for upstream to answer either.
    return mine.length > 0 ? { kind: 'found', a: [], aaaa: [], ptr: unique(mine.map((r) => r.target)) } : { kind: 'nxdomain' };
  }
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
