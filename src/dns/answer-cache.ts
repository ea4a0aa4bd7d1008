/** What an entry costs besides its key and answer bytes (the Map's slot, the Buffer object). */
const ENTRY_OVERHEAD_BYTES = 96;

/**
 * Encoded answers tsnet gave from its own records, by what the answer
 * depends on (see Responder's cache key: the question as asked, RD, the
 * EDNS bits, the size limit, the listener's scope), one cache for every
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

  /** A copy of the cached answer carrying `id`. */
  get(key: string, id: Buffer): Buffer | undefined {
    const cached = this.answers.get(key);
    if (!cached) return undefined;
    // Used again: to the young end.
    this.answers.delete(key);
    this.answers.set(key, cached);
    const answer = Buffer.allocUnsafe(cached.length);
    cached.copy(answer, 2, 2);
    id.copy(answer, 0, 0, 2);
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
