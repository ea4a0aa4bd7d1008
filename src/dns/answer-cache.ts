import { randomBytes } from 'node:crypto';
import type { QueryShape } from './query-shape.js';
import { type Scope, scopeValue } from './scope.js';

/** What an entry costs besides its key and answer bytes (the Map's slot, the entry and its two Buffers). */
const ENTRY_OVERHEAD_BYTES = 256;
/** Scopes numbered at once; past this (networks come and go) numbering and the cache start over. */
const MAX_SCOPES = 4096;
/** A key's bytes before the question: scope number (2), flags (1), EDNS version (1), size limit (2). */
const KEY_HEADER_BYTES = 6;
const RD_BIT = 1;
const EDNS_BIT = 2;
const DO_BIT = 4;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const UPPER_A = 0x41;
const UPPER_Z = 0x5a;
const TO_LOWER = 0x20;

interface Entry {
  key: Buffer;
  answer: Buffer;
  /** Hit since eviction last passed it: it gets a second chance (CLOCK), so a hit moves nothing. */
  used: boolean;
}

/**
 * Encoded answers tsnet gave from its own records, one cache for every
 * listener, keyed by everything such an answer depends on: the listener's
 * scope (by value: listeners alike share entries), RD, the EDNS version and
 * DO bit, the size limit, and the question whatever its letter case (a hit
 * echoes the asker's). Bounded in bytes, entries not hit since eviction last
 * passed going first; valid for one record table: it empties itself when
 * shown another.
 *
 * A hit is the busy server's whole work, so it allocates nothing but the
 * answer's copy: the key's bytes go to a scratch buffer and are found by
 * their 32-bit hash, then compared whole (two keys of one hash: the newer
 * entry replaces the older). Measured under dnsperf, string keys, LRU
 * reinsertion and copies through typed-array views were most of the cost.
 * The hash starts from a secret random seed, as V8's own string hash does:
 * askers cannot pick names whose entries all meet in one of the Map's
 * buckets (V8 hashes number keys without a seed).
 */
export class AnswerCache {
  private readonly answers = new Map<number, Entry>();
  private table: unknown;
  private usedBytes = 0;
  private scopeNumbers = new WeakMap<Scope, number>();
  private numbersByValue = new Map<string, number>();
  /** The key of the query at hand (its first keyLength bytes). */
  private scratch = Buffer.allocUnsafe(KEY_HEADER_BYTES + 512);
  private keyLength = 0;
  private readonly hashSeed: number;

  /** `hashSeed`: a test's fixed seed; by default a random one. */
  constructor(private readonly maxBytes: number, hashSeed = randomBytes(4).readUInt32LE()) {
    this.hashSeed = (FNV_OFFSET ^ hashSeed) | 0;
  }

  /** Forgets everything if `table` is not the one the answers came from. */
  follow(table: unknown): this {
    if (table !== this.table) {
      this.clear();
      this.table = table;
    }
    return this;
  }

  /**
   * A copy of the answer cached for a query (read by queryShape) asked in
   * `scope` with answers up to `sizeLimit` bytes, with the query's ID and
   * its question as asked: resolvers check that their letter case is echoed.
   */
  get(query: Buffer, shape: QueryShape, scope: Scope, sizeLimit: number): Buffer | undefined {
    const entry = this.answers.get(this.writeKey(query, shape, scope, sizeLimit));
    if (!entry || !this.keyIs(entry.key)) return undefined;
    entry.used = true;
    const answer = Buffer.allocUnsafe(entry.answer.length);
    // Whole-array set and index writes: Buffer#copy with offsets makes a typed-array view per call.
    answer.set(entry.answer);
    answer[0] = query[0]!;
    answer[1] = query[1]!;
    for (let i = 12; i < shape.questionEnd; i++) answer[i] = query[i]!;
    return answer;
  }

  set(query: Buffer, shape: QueryShape, scope: Scope, sizeLimit: number, answer: Buffer): void {
    const hash = this.writeKey(query, shape, scope, sizeLimit);
    const cost = this.keyLength + answer.length + ENTRY_OVERHEAD_BYTES;
    if (cost > this.maxBytes) return;
    this.remove(hash);
    // Oldest first; one hit since the last pass buys one more turn at the young end (the iterator meets it again there).
    for (const [oldHash, old] of this.answers) {
      if (this.usedBytes + cost <= this.maxBytes) break;
      if (old.used) {
        old.used = false;
        this.answers.delete(oldHash);
        this.answers.set(oldHash, old);
      } else this.remove(oldHash);
    }
    this.answers.set(hash, { key: Buffer.from(this.scratch.subarray(0, this.keyLength)), answer, used: false });
    this.usedBytes += cost;
  }

  get entries(): number {
    return this.answers.size;
  }

  get bytes(): number {
    return this.usedBytes;
  }

  /**
   * Writes the query's key to the scratch buffer and returns its hash. The
   * question's ASCII letters are folded to lower case: names are equal
   * whatever their case (RFC 4343), and resolvers that randomise it (0x20
   * bits) would otherwise get an entry per query. Only the name is folded:
   * the type's bytes are a number (65, HTTPS, is not 97). Label lengths are
   * below 64 and never letters.
   */
  private writeKey(query: Buffer, shape: QueryShape, scope: Scope, sizeLimit: number): number {
    const scopeNumber = this.numberOf(scope);
    const length = KEY_HEADER_BYTES + shape.questionEnd - 12;
    if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(length);
    const key = this.scratch;
    const { opt } = shape;
    key[0] = scopeNumber >> 8;
    key[1] = scopeNumber & 0xff;
    key[2] = (shape.recursionDesired ? RD_BIT : 0) | (opt ? EDNS_BIT : 0) | (opt?.dnssecOk ? DO_BIT : 0);
    key[3] = opt?.version ?? 0;
    key[4] = sizeLimit >> 8;
    key[5] = sizeLimit & 0xff;
    let hash = this.hashSeed;
    for (let i = 0; i < KEY_HEADER_BYTES; i++) hash = Math.imul(hash ^ key[i]!, FNV_PRIME);
    const nameEnd = shape.questionEnd - 4;
    let at = KEY_HEADER_BYTES;
    for (let i = 12; i < shape.questionEnd; i++) {
      const byte = query[i]!;
      const folded = i < nameEnd && byte >= UPPER_A && byte <= UPPER_Z ? byte | TO_LOWER : byte;
      key[at++] = folded;
      hash = Math.imul(hash ^ folded, FNV_PRIME);
    }
    this.keyLength = length;
    return hash;
  }

  /** Whether `key` is the key writeKey wrote last. */
  private keyIs(key: Buffer): boolean {
    if (key.length !== this.keyLength) return false;
    for (let i = 0; i < key.length; i++) if (key[i] !== this.scratch[i]) return false;
    return true;
  }

  private remove(hash: number): void {
    const entry = this.answers.get(hash);
    if (!entry) return;
    this.answers.delete(hash);
    this.usedBytes -= entry.key.length + entry.answer.length + ENTRY_OVERHEAD_BYTES;
  }

  private clear(): void {
    this.answers.clear();
    this.usedBytes = 0;
  }

  /** A small number per scope value, the same for equal scopes; renumbering empties the cache, whose keys hold the old numbers. */
  private numberOf(scope: Scope): number {
    const known = this.scopeNumbers.get(scope);
    if (known !== undefined) return known;
    const value = scopeValue(scope);
    let number = this.numbersByValue.get(value);
    if (number === undefined) {
      if (this.numbersByValue.size >= MAX_SCOPES) {
        this.numbersByValue = new Map();
        this.scopeNumbers = new WeakMap();
        this.clear();
      }
      number = this.numbersByValue.size;
      this.numbersByValue.set(value, number);
    }
    this.scopeNumbers.set(scope, number);
    return number;
  }
}
