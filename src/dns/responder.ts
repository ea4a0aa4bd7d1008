import * as packet from 'dns-packet';
import { AnswerCache } from './answer-cache.js';
import { OPCODE_MASK, QR, queryShape } from './query-shape.js';
import { EDNS_UDP_SIZE, type Transport } from './exchange.js';
import type { ForwardedAnswer, Forwarder } from './forwarder.js';
import type { Lookup, RecordTable } from './record-table.js';
import type { Scope } from './scope.js';
import { encodeQuestion, questionEnd, typeOf } from './wire.js';

/** TTL of every record tsnet owns: containers come and go, caches must follow within seconds. */
export const RECORD_TTL = 5;

/** Response codes tsnet sends; BADVERS is an extended code (RFC 6891): 0 in the header, 1 in OPT. */
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
type Rcode = (typeof RCODE)[keyof typeof RCODE];

/** Without EDNS0 a UDP answer may have 512 bytes (RFC 1035); a client's larger EDNS0 buffer is honoured up to its scope's limit. */
const MIN_UDP_SIZE = 512;
const MAX_UDP_SIZE = 4096;
const MAX_TCP_SIZE = 65535;
/** The answers cached for every listener together (see AnswerCache). */
export const DEFAULT_CACHE_BYTES = 4 * 1024 * 1024;

/** The largest answer a query may get over `transport` in `scope`. */
function sizeLimit(transport: Transport, scope: Scope, ednsSize: number | undefined): number {
  if (transport === 'tcp') return MAX_TCP_SIZE;
  return ednsSize === undefined ? MIN_UDP_SIZE : Math.min(scope.udpLimit ?? MAX_UDP_SIZE, Math.max(MIN_UDP_SIZE, ednsSize));
}

/** Zone transfers are not served. */
const REFUSED_TYPES = new Set(['AXFR', 'IXFR']);


interface Reply {
  rcode: Rcode;
  authoritative: boolean;
  truncated?: boolean;
  answers: packet.Answer[];
  authorities: packet.Answer[];
  additionals: packet.Answer[];
}

const emptyReply = (rcode: Rcode, authoritative = false): Reply => ({ rcode, authoritative, answers: [], authorities: [], additionals: [] });

/**
 * A header-only reply with the question copied byte for byte from the
 * query: for what tsnet refuses before it can trust its reading of the
 * question (another class, a name that would not survive re-encoding).
 */
function rawReply(query: Buffer, rcode: Rcode, questionEnd: number, truncated = false): Buffer {
  const reply = Buffer.alloc(questionEnd);
  query.copy(reply, 0, 0, questionEnd);
  // The opcode too: a resolver drops a reply whose opcode is not its query's (RFC 1035 4.1.1).
  reply.writeUInt16BE(QR | (query.readUInt16BE(2) & (OPCODE_MASK | packet.RECURSION_DESIRED)) | (truncated ? packet.TRUNCATED_RESPONSE : 0) | rcode, 2);
  reply.writeUInt16BE(questionEnd > 12 ? 1 : 0, 4);
  reply.fill(0, 6, 12);
  return reply;
}

/**
 * An empty truncated reply to a query, question echoed: what a rate-limited
 * asker gets now and then instead of its answer, so a real client retries
 * over TCP. undefined for what is not a plain query.
 */
export function slipReply(query: Buffer): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(2) & (QR | OPCODE_MASK) || query.readUInt16BE(4) !== 1) return undefined;
  const end = questionEnd(query);
  return end === undefined ? undefined : rawReply(query, RCODE.NOERROR, end, true);
}

/** The EDNS flag DNSSEC OK; the other flags are undefined and never echoed. */
const DO = 0x8000;

/** tsnet's OPT: its own buffer size, no options, and the query's DO bit copied back (RFC 3225). */
function optRecord(rcode: Rcode, query: packet.OptAnswer): packet.OptAnswer {
  const dnssecOk = ((query.flags ?? 0) & DO) !== 0;
  return { type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: rcode >> 4, ednsVersion: 0, flags: dnssecOk ? DO : 0, flag_do: dnssecOk, options: [] };
}

/**
 * Turns one DNS query into its answer, whatever the transport: checks,
 * EDNS0, the record table (authoritative, TTL 5 s, NXDOMAIN vs NODATA),
 * forwarding, truncation. undefined: nothing is sent back (not a query at all).
 */
export class Responder {
  private readonly cache: AnswerCache;

  constructor(
    private readonly table: () => RecordTable,
    private readonly forwarder: Forwarder | undefined,
    cacheBytes = DEFAULT_CACHE_BYTES,
  ) {
    this.cache = new AnswerCache(cacheBytes);
  }

  /**
   * The answer to a query answered before from the same records, at once
   * (no promise, no decoding): the hot path of a busy server.
   */
  cached(message: Buffer, transport: Transport, scope: Scope): Buffer | undefined {
    const shape = queryShape(message);
    if (!shape) return undefined;
    return this.cache.follow(this.table()).get(message, shape, scope, sizeLimit(transport, scope, shape.opt?.size));
  }

  /** The answer cache's size now. */
  get cacheSize(): { entries: number; bytes: number } {
    return { entries: this.cache.entries, bytes: this.cache.bytes };
  }

  async respond(message: Buffer, transport: Transport, scope: Scope): Promise<Buffer | undefined> {
    if (message.length < 12) return undefined;
    const flags = message.readUInt16BE(2);
    // A response, or a message of ours come back: answering could start a loop.
    if (flags & QR) return undefined;
    if (flags & OPCODE_MASK) return rawReply(message, RCODE.NOTIMP, 12);
    const table = this.table();

    let query: packet.DecodedPacket;
    try {
      query = packet.decode(message);
    } catch {
      return rawReply(message, RCODE.FORMERR, 12);
    }
    const questions = query.questions ?? [];
    const additionals = query.additionals ?? [];
    const opts = additionals.filter((r): r is packet.OptAnswer => r.type === 'OPT');
    // A query is one question and at most one OPT, nothing else, not a byte more: the rest would only
    // make it big (and a cache key of it); 512 bytes at most without EDNS0 (RFC 1035).
    const wellFormed = questions.length === 1 && opts.length === additionals.length && opts.length <= 1 && (query.answers ?? []).length === 0 &&
      (query.authorities ?? []).length === 0 && decodedBytes() === message.length && (opts.length === 1 || message.length <= MIN_UDP_SIZE);
    if (!wellFormed) return rawReply(message, RCODE.FORMERR, 12);
    const question = questions[0]!;
    const echo = encodeQuestion(question);
    const questionEnd = 12 + echo.length;
    const opt = opts[0];
    const limit = sizeLimit(transport, scope, opt?.udpPayloadSize);
    const forwards = scope.forward && this.forwarder !== undefined;

    let reply: Reply;
    if (opt && opt.ednsVersion !== 0) reply = emptyReply(RCODE.BADVERS);
    // Another class, or a name that would not survive re-encoding (a dot or bad UTF-8 inside a label).
    else if ((question.class ?? 'IN') !== 'IN' || !echo.equals(message.subarray(12, questionEnd))) return rawReply(message, RCODE.REFUSED, questionEnd);
    else if (REFUSED_TYPES.has(typeOf(question))) reply = emptyReply(RCODE.REFUSED);
    else reply = await this.answer(table, question, transport, scope);

    const response = (r: Reply): packet.Packet => ({
      type: 'response',
      id: query.id ?? 0,
      flags: (flags & packet.RECURSION_DESIRED) | (forwards ? packet.RECURSION_AVAILABLE : 0) | (r.authoritative ? packet.AUTHORITATIVE_ANSWER : 0) |
        (r.truncated ? packet.TRUNCATED_RESPONSE : 0) | (r.rcode & 0xf),
      questions: [question],
      answers: r.answers,
      authorities: r.authorities,
      additionals: [...r.additionals, ...(opt ? [optRecord(r.rcode, opt)] : [])],
    });
    const full = packet.encode(response(reply));
    // Too large for this transport: the question and the TC flag; the client asks again over TCP.
    const answer = full.length <= limit ? full : packet.encode(response({ ...emptyReply(reply.rcode, reply.authoritative), truncated: true }));
    // Only answers from our own records (and of the table cached() checks): forwarded ones age, and refusals of junk would crowd the cache.
    const shape = reply.authoritative ? queryShape(message) : undefined;
    if (shape) this.cache.follow(table).set(message, shape, scope, limit, answer);
    return answer;
  }

  private async answer(table: RecordTable, question: packet.Question, transport: Transport, scope: Scope): Promise<Reply> {
    const found = table.lookup(question.name, scope.networkId);
    if (found.kind !== 'outside') return this.authoritative(table, question, found);
    if (!scope.forward || !this.forwarder) return emptyReply(RCODE.REFUSED);
    const forwarded = await this.forwarder.forward(question, transport);
    return forwarded ? fromUpstream(forwarded) : emptyReply(RCODE.SERVFAIL);
  }

  private authoritative(table: RecordTable, question: packet.Question, found: Exclude<Lookup, { kind: 'outside' }>): Reply {
    const name = question.name;
    const answers: packet.Answer[] = [];
    if (found.kind === 'found') {
      const wants = (type: string) => typeOf(question) === type || typeOf(question) === 'ANY';
      if (wants('A')) for (const data of found.a) answers.push({ type: 'A', name, ttl: RECORD_TTL, data });
      if (wants('AAAA')) for (const data of found.aaaa) answers.push({ type: 'AAAA', name, ttl: RECORD_TTL, data });
      if (wants('PTR')) for (const data of found.ptr) answers.push({ type: 'PTR', name, ttl: RECORD_TTL, data });
    }
    const isSoaQuery = found.kind === 'found' && name.toLowerCase() === table.domain && (typeOf(question) === 'SOA' || typeOf(question) === 'ANY');
    if (isSoaQuery) answers.push(soa(table.domain));
    // Negative answers carry the SOA, whose minimum tells caches how long to keep them (RFC 2308).
    const authorities = answers.length === 0 && table.inDomain(name) ? [soa(table.domain)] : [];
    return { rcode: found.kind === 'nxdomain' ? RCODE.NXDOMAIN : RCODE.NOERROR, authoritative: true, answers, authorities, additionals: [] };
  }
}

function fromUpstream(answer: ForwardedAnswer): Reply {
  return { rcode: answer.rcode as Rcode, authoritative: false, truncated: answer.truncated, answers: answer.answers, authorities: answer.authorities, additionals: answer.additionals };
}

function soa(domain: string): packet.SoaAnswer {
  return {
    type: 'SOA',
    name: domain,
    ttl: RECORD_TTL,
    data: { mname: `ns.${domain}`, rname: `hostmaster.${domain}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: RECORD_TTL },
  };
}

/** How many bytes dns-packet's last decode read (its codec counts them; its types leave it out). */
const decodedBytes = (): number => (packet.decode as unknown as { bytes: number }).bytes;
