/** What an entry costs besides its key and answer bytes (the Map's slot, the Buffer object). */
const ENTRY_OVERHEAD_BYTES = 96;

/**
 * Encoded answers tsnet gave from its own records, by what the answer
 * depends on (see Responder's cache key: the question, RD, the EDNS bits,
 * the size limit, the listener's scope), one cache for every
 * listener. Bounded in bytes, the least recently used going first; valid for
 * one record table: it empties itself when shown another.
 */
export class AnswerCache {
  private readonly answers = new Map<string, Buffer>();
  private table: unknown;
  private usedBytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Forgets everything if `table` is not the one the answers came from. */
  follow(table: unknown): this {
    if (table !== this.table) {
      this.answers.clear();
      this.usedBytes = 0;
      this.table = table;
    }
    return this;
  }

  /**
   * A copy of the cached answer for `query`: its ID, and its question as
   * asked (bytes 12 to `questionEnd`; 0: the ID only): the letter case
   * differs between askers (see questionKey), and resolvers check that it
   * is echoed.
   */
  get(key: string, query: Buffer, questionEnd: number): Buffer | undefined {
    const cached = this.answers.get(key);
    if (!cached) return undefined;
    // Used again: to the young end.
    this.answers.delete(key);
    this.answers.set(key, cached);
    const answer = Buffer.allocUnsafe(cached.length);
    cached.copy(answer, 2, 2);
    query.copy(answer, 0, 0, 2);
    if (questionEnd > 12) query.copy(answer, 12, 12, questionEnd);
    return answer;
  }

  set(key: string, answer: Buffer): void {
    const cost = costOf(key, answer);
    if (cost > this.maxBytes) return;
    const previous = this.answers.get(key);
    if (previous) {
      this.answers.delete(key);
      this.usedBytes -= costOf(key, previous);
    }
    for (const [oldKey, oldAnswer] of this.answers) {
      if (this.usedBytes + cost <= this.maxBytes) break;
      this.answers.delete(oldKey);
      this.usedBytes -= costOf(oldKey, oldAnswer);
    }
    this.answers.set(key, answer);
    this.usedBytes += cost;
  }

  get entries(): number {
    return this.answers.size;
  }

  get bytes(): number {
    return this.usedBytes;
  }
}

/** A string key's bytes in V8 (one byte a char, latin1) plus the answer and the overhead. */
const costOf = (key: string, answer: Buffer) => key.length + answer.length + ENTRY_OVERHEAD_BYTES;

const UPPER_A = 0x41;
const UPPER_Z = 0x5a;
const TO_LOWER = 0x20;

/**
 * A question (name, type, class; bytes 12 to `questionEnd` of a query) as
 * a cache key, its name's ASCII letters in lower case: names are equal
 * whatever their case (RFC 4343), and resolvers that randomise it (0x20
 * bits) would otherwise get an entry per query. Only the name is folded:
 * the type's bytes are a number (65, HTTPS, is not 97). Label lengths are
 * below 64 and never letters.
 */
export function questionKey(message: Buffer, questionEnd: number): string {
  const nameEnd = questionEnd - 4;
  let upper = -1;
  for (let i = 12; i < nameEnd; i++) {
    const byte = message[i]!;
    if (byte >= UPPER_A && byte <= UPPER_Z) {
      upper = i;
      break;
    }
  }
  if (upper < 0) return message.toString('latin1', 12, questionEnd);
  const folded = Buffer.from(message.subarray(12, questionEnd));
  for (let i = upper - 12; i < nameEnd - 12; i++) if (folded[i]! >= UPPER_A && folded[i]! <= UPPER_Z) folded[i] = folded[i]! | TO_LOWER;
  return folded.toString('latin1');
}
