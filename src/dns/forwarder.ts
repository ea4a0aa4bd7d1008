import type * as packet from 'dns-packet';
import { exchange, type Transport, type UpstreamAnswer } from './exchange.js';
import type { UpstreamSource } from './upstreams.js';

/** What a forwarded question got: passed on to the client with its own ID and EDNS. */
export interface ForwardedAnswer {
  rcode: number;
  /** Over UDP the upstream's answer was cut: the client must ask again over TCP. */
  truncated: boolean;
  answers: packet.Answer[];
  authorities: packet.Answer[];
  additionals: packet.Answer[];
}

export interface ForwarderOptions {
  /** Per upstream tried (default 2 s). */
  timeoutMs?: number;
  /** Answers kept (default 1000); the oldest go first. */
  cacheEntries?: number;
  /** Questions on their way upstream at once (default 512); more get SERVFAIL instead of sockets. */
  maxInFlight?: number;
}

/** Nothing stays cached longer than this, whatever TTL upstream gave. */
const MAX_CACHE_SECONDS = 3600;

const RCODES: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

interface CacheEntry {
  storedAt: number;
  expiresAt: number;
  answer: ForwardedAnswer;
}

const withoutOpt = (records: readonly packet.Answer[] | undefined) => (records ?? []).filter((r) => r.type !== 'OPT');
const ttlOf = (record: packet.Answer) => ('ttl' in record && typeof record.ttl === 'number' ? record.ttl : 0);

/**
 * How long an answer may be reused: the smallest TTL of its answers, or for
 * a negative answer the SOA's (RFC 2308); 0 = not at all.
 */
function cacheSeconds(answer: ForwardedAnswer): number {
  if (answer.truncated || (answer.rcode !== 0 && answer.rcode !== 3)) return 0;
  if (answer.answers.length > 0 && answer.rcode === 0) return Math.min(MAX_CACHE_SECONDS, ...answer.answers.map(ttlOf));
  const soa = answer.authorities.find((r): r is packet.SoaAnswer => r.type === 'SOA');
  return soa ? Math.min(MAX_CACHE_SECONDS, ttlOf(soa), soa.data.minimum ?? 0) : 0;
}

/** The records with `elapsed` seconds taken off their TTLs. */
const aged = (records: readonly packet.Answer[], elapsed: number) =>
  records.map((r) => ('ttl' in r && typeof r.ttl === 'number' ? { ...r, ttl: Math.max(0, r.ttl - elapsed) } : r));

/**
 * Forwards the questions tsnet does not own to the upstream resolvers, in
 * order, each with a timeout, and keeps the answers for their TTL. The same
 * question asked again while on its way shares the one upstream query.
 */
export class Forwarder {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<ForwardedAnswer | undefined>>();
  private readonly timeoutMs: number;
  private readonly cacheEntries: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly upstreams: UpstreamSource,
    options: ForwarderOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.cacheEntries = options.cacheEntries ?? 1_000;
    this.maxInFlight = options.maxInFlight ?? 512;
  }

  /** undefined: no upstream answered (SERVFAIL). */
  forward(question: packet.Question, transport: Transport): Promise<ForwardedAnswer | undefined> {
    const key = `${question.name.toLowerCase()}|${question.type}|${question.class ?? 'IN'}|${transport}`;
    const cached = this.cache.get(key);
    const now = Date.now();
    if (cached && cached.expiresAt > now) {
      const elapsed = Math.floor((now - cached.storedAt) / 1000);
      const { answer } = cached;
      return Promise.resolve({ ...answer, answers: aged(answer.answers, elapsed), authorities: aged(answer.authorities, elapsed), additionals: aged(answer.additionals, elapsed) });
    }
    if (cached) this.cache.delete(key);
    const running = this.inFlight.get(key);
    if (running) return running;
    if (this.inFlight.size >= this.maxInFlight) return Promise.resolve(undefined);
    const asked = this.ask(question, transport).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, asked);
    return asked.then((answer) => {
      if (answer) this.remember(key, answer, now);
      return answer;
    });
  }

  /** Questions waiting for an upstream now. */
  get pending(): number {
    return this.inFlight.size;
  }

  private async ask(question: packet.Question, transport: Transport): Promise<ForwardedAnswer | undefined> {
    for (const upstream of await this.upstreams.current()) {
      let reply: UpstreamAnswer;
      try {
        reply = await exchange(upstream, question, transport, this.timeoutMs);
      } catch {
        continue;
      }
      const rcode = RCODES[reply.rcode ?? 'NOERROR'];
      // SERVFAIL, REFUSED or a code we do not know: the next upstream may do better.
      if (rcode === undefined || rcode === 2 || rcode === 5) continue;
      return {
        rcode,
        truncated: reply.flag_tc,
        answers: reply.answers ?? [],
        authorities: reply.authorities ?? [],
        additionals: withoutOpt(reply.additionals),
      };
    }
    return undefined;
  }

  private remember(key: string, answer: ForwardedAnswer, now: number): void {
    const seconds = cacheSeconds(answer);
    if (seconds <= 0) return;
    if (this.cache.size >= this.cacheEntries) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { storedAt: now, expiresAt: now + seconds * 1000, answer });
  }
}
