import { type Cidr, cidrContains, parseCidr, parseIp } from '../net/address.js';
import { type AskerClass, AskerClassifier, hostAddressCidrs } from './askers.js';
import { type DnsAddress, dnsAddressKey } from './dns-address.js';
import type { Transport } from './exchange.js';
import { Forwarder } from './forwarder.js';
import { DnsListener, type TcpLimits } from './listener.js';
import type { NameEntry } from './name-entry.js';
import { type RateLimitOptions, ResponseRateLimit } from './rate-limit.js';
import { RecordTable } from './record-table.js';
import { Responder, slipReply } from './responder.js';
import type { Scope } from './scope.js';
import type { UpstreamSource } from './upstreams.js';

/** One socket pair tsnet should serve, and for whom. */
export interface ListenerSpec extends DnsAddress {
  /** Set for a network's own listener (its gateway or host shim); absent for --dns-listen. */
  networkId?: string;
  /** Whether names tsnet does not own go upstream. */
  forward: boolean;
  /** Subnets (CIDR) whose hosts may ask; absent = anyone. Others get no answer at all. */
  askers?: string[];
}

export interface ListenerStatus extends ListenerSpec {
  state: 'serving' | 'failed';
  /** Why it could not bind, e.g. "EADDRINUSE". */
  error?: string;
}

/** The largest UDP answer for askers that are not tsnet's: the size that avoids fragmentation (DNS flag day 2020), and no amplifier. */
export const STRANGER_UDP_LIMIT = 1232;

/** One listener's scope per asker class: what it serves them (a scope object per class, as answers are cached per scope). */
type Scopes = Record<AskerClass, Scope>;

function scopesOf(spec: ListenerSpec): Scopes {
  const network = spec.networkId ? { networkId: spec.networkId } : {};
  return {
    local: { ...network, forward: spec.forward },
    trusted: { ...network, forward: spec.forward, udpLimit: STRANGER_UDP_LIMIT },
    stranger: { ...network, forward: false, udpLimit: STRANGER_UDP_LIMIT },
  };
}
const askersOf = (spec: ListenerSpec): Cidr[] | undefined => spec.askers?.flatMap((text) => parseCidr(text)?.cidr ?? []);

/** One open listener: whom it serves, as its handler reads it on every query (a reconcile may replace both). */
interface OpenListener {
  listener: DnsListener;
  spec: ListenerSpec;
  scopes: Scopes;
  askers: Cidr[] | undefined;
}

/** Whether `from` lies in one of the subnets (an IPv4-mapped IPv6 address counts as its IPv4 address). */
function mayAsk(askers: readonly Cidr[], from: string): boolean {
  const ip = parseIp(from.startsWith('::ffff:') && from.includes('.') ? from.slice(7) : from);
  return ip !== undefined && askers.some((cidr) => cidrContains(cidr, ip));
}

/** What the server answered, by `<transport> <RCODE>`, and how many queries got no answer at all; for the daemon's metrics. */
export interface DnsCounts {
  answers: Record<string, number>;
  dropped: number;
}

/** RFC 1035/6895 names of the RCODEs the responder and upstreams give. */
const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

export interface DnsServerOptions {
  domain: string;
  /** undefined: nothing is forwarded (every listener refuses foreign names). */
  upstreams?: UpstreamSource;
  /** Called for what goes wrong while serving (a socket error, a bug); serving goes on. */
  onError: (error: Error, context: string) => void;
  /** --dns-recursion-from: CIDRs of askers that are not tsnet's but may have other names resolved. */
  recursionFrom?: readonly string[];
  /** The UDP answers an asker that is not tsnet's gets (default: DEFAULT_RATE_LIMIT). */
  rateLimit?: RateLimitOptions;
  /** What a TCP client may hold of a listener (default: DEFAULT_TCP_LIMITS). */
  tcp?: TcpLimits;
  /** Bytes of answers cached for all listeners together (default: DEFAULT_CACHE_BYTES). */
  cacheBytes?: number;
}

/** Enough for a LAN host using tsnet as its resolver, far too little to amplify with. */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { perSecond: 100, burst: 200, maxAskers: 10_000 };

/**
 * The DNS server: the record table, the forwarder and the listeners, each
 * listener with its scope. Listeners are reconciled against a wanted list;
 * one that could not bind stays failed (and reported) until it is no longer
 * wanted or forgetFailures() is called, so a port held by a host service is
 * not retried on every change.
 */
export class DnsServer {
  private table: RecordTable;
  private readonly askers: AskerClassifier;
  private readonly rateLimit: ResponseRateLimit;
  /** What makes an asker local besides the host's current addresses: owned subnets and tsnet's containers. */
  private localNetworks: string[] = [];
  private readonly responder: Responder;
  private readonly forwarder: Forwarder | undefined;
  private readonly listeners = new Map<string, OpenListener>();
  private readonly failed = new Map<string, ListenerStatus>();
  private reconciling: Promise<unknown> = Promise.resolve();
  /** Answers by transport and RCODE (the header's 4 bits), and queries left unanswered: plain numbers, as counting is on every query's path. */
  private readonly answered: Record<Transport, number[]> = { udp: new Array<number>(16).fill(0), tcp: new Array<number>(16).fill(0) };
  private dropped = 0;

  constructor(private readonly options: DnsServerOptions) {
    this.table = new RecordTable(options.domain, []);
    this.askers = new AskerClassifier(options.recursionFrom ?? []);
    this.askers.setLocal(hostAddressCidrs());
    this.rateLimit = new ResponseRateLimit(options.rateLimit ?? DEFAULT_RATE_LIMIT);
    this.forwarder = options.upstreams && new Forwarder(options.upstreams);
    this.responder = new Responder(() => this.table, this.forwarder, options.cacheBytes);
  }

  /**
   * The names to serve, and the subnets tsnet owns whole (bridge networks):
   * their hosts and the entries' addresses are tsnet's own askers.
   */
  setEntries(entries: readonly NameEntry[], ownedSubnets: readonly string[] = []): void {
    this.table = new RecordTable(this.options.domain, entries, ownedSubnets);
    this.localNetworks = [...ownedSubnets, ...entries.flatMap((e) => [...(e.ipv4 ? [`${e.ipv4}/32`] : []), ...(e.ipv6 ? [`${e.ipv6}/128`] : [])])];
    this.refreshHostAddresses();
  }

  /** The host's addresses change without tsnet (DHCP on the LAN): its queries to itself stay local. */
  refreshHostAddresses(): void {
    this.askers.setLocal([...this.localNetworks, ...hostAddressCidrs()]);
  }

  /** Opens what is wanted and not open, closes what is open and not wanted; resolves with every wanted listener's state. */
  /** The next setListeners tries to bind the listeners that failed again (the host service may have gone). */
  forgetFailures(): void {
    this.failed.clear();
  }

  setListeners(wanted: readonly ListenerSpec[]): Promise<ListenerStatus[]> {
    const run = this.reconciling.then(() => this.reconcile(wanted));
    this.reconciling = run.catch(() => undefined);
    return run;
  }

  private async reconcile(wanted: readonly ListenerSpec[]): Promise<ListenerStatus[]> {
    const byKey = new Map(wanted.map((spec) => [dnsAddressKey(spec), spec]));
    for (const [key, open] of this.listeners) {
      if (byKey.has(key)) continue;
      this.listeners.delete(key);
      await open.listener.close();
    }
    for (const key of this.failed.keys()) if (!byKey.has(key)) this.failed.delete(key);

    const statuses: ListenerStatus[] = [];
    for (const [key, spec] of byKey) {
      const open = this.listeners.get(key);
      if (open) {
        // Same socket, maybe another network or forwarding choice now.
        if (open.spec.networkId !== spec.networkId || open.spec.forward !== spec.forward) open.scopes = scopesOf(spec);
        open.askers = askersOf(spec);
        open.spec = spec;
        statuses.push({ ...spec, state: 'serving' });
        continue;
      }
      const failure = this.failed.get(key);
      if (failure) {
        statuses.push({ ...failure, ...spec });
        continue;
      }
      try {
        const entry: Omit<OpenListener, 'listener'> = { spec, scopes: scopesOf(spec), askers: askersOf(spec) };
        const listener = await DnsListener.open(
          spec.address,
          spec.port,
          (message, transport, from) => this.answer(message, transport, from, entry),
          (error) => this.options.onError(error, `listener ${key}`),
          // Askers are read at each connection: a reconcile may change them.
          { admits: (from) => !entry.askers || mayAsk(entry.askers, from), ...(this.options.tcp ? { tcp: this.options.tcp } : {}) },
        );
        this.listeners.set(key, Object.assign(entry, { listener }));
        statuses.push({ ...spec, state: 'serving' });
      } catch (error) {
        const status: ListenerStatus = { ...spec, state: 'failed', error: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
        this.failed.set(key, status);
        statuses.push(status);
      }
    }
    return statuses;
  }

  private answer(message: Buffer, transport: Transport, from: string, entry: Omit<OpenListener, 'listener'>): Buffer | undefined | Promise<Buffer | undefined> {
    if (entry.askers && !mayAsk(entry.askers, from)) return this.count(transport, undefined);
    const asker = this.askers.classify(from);
    // Over UDP a source address proves nothing: only tsnet's own askers are never limited. TCP needs a handshake.
    if (transport === 'udp' && asker !== 'local') {
      const verdict = this.rateLimit.verdict(from);
      if (verdict !== 'send') return this.count(transport, verdict === 'slip' ? slipReply(message) : undefined);
    }
    const scope = entry.scopes[asker];
    const cached = this.responder.cached(message, transport, scope);
    if (cached) return this.count(transport, cached);
    return this.respond(message, transport, scope).then((answer) => this.count(transport, answer));
  }

  /** Counts an answer by its RCODE (the low bits of the header's fourth byte), or a query left unanswered. */
  private count(transport: Transport, answer: Buffer | undefined): Buffer | undefined {
    if (answer === undefined || answer.length < 4) this.dropped++;
    else this.answered[transport][answer[3]! & 0x0f]!++;
    return answer;
  }

  /** What the server answered so far, by `<transport> <RCODE>`. */
  get counts(): DnsCounts {
    const answers: Record<string, number> = {};
    for (const [transport, byRcode] of Object.entries(this.answered)) {
      byRcode.forEach((n, rcode) => {
        if (n > 0) answers[`${transport} ${RCODES[rcode] ?? `RCODE${rcode}`}`] = n;
      });
    }
    return { answers, dropped: this.dropped };
  }

  private async respond(message: Buffer, transport: Transport, scope: Scope): Promise<Buffer | undefined> {
    try {
      return await this.responder.respond(message, transport, scope);
    } catch (error) {
      // A bug must cost one answer, never the server.
      this.options.onError(error as Error, 'answering a query');
      return undefined;
    }
  }

  /** The answer cache's size now (all listeners share it). */
  get cacheSize(): { entries: number; bytes: number } {
    return this.responder.cacheSize;
  }

  /** Bytes of answers TCP clients have not read yet, over every listener. */
  get tcpPendingBytes(): number {
    return [...this.listeners.values()].reduce((sum, open) => sum + open.listener.tcpPendingBytes, 0);
  }

  /** Upstream questions not answered yet (a leak check for tests). */
  get pendingForwards(): number {
    return this.forwarder?.pending ?? 0;
  }

  async close(): Promise<void> {
    await this.setListeners([]);
  }
}
