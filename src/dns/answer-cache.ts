/**
 * Encoded answers one listener gave from tsnet's own records, by everything
 * in the query but its ID: the same bytes asked again get the same bytes
 * back, with the asker's ID, without decoding or encoding. Valid for one
 * record table: it empties itself when shown another. Bounded, emptied
 * whole when full.
 */
export class AnswerCache {
  private readonly answers = new Map<string, Buffer>();
  private table: unknown;

  constructor(private readonly maxEntries = 10_000) {}

  /** Forgets everything if `table` is not the one the answers came from. */
  follow(table: unknown): this {
    if (table !== this.table) {
      this.answers.clear();
      this.table = table;
    }
    return this;
  }

  /** A copy of the cached answer carrying the query's ID. */
  get(message: Buffer): Buffer | undefined {
    const cached = this.answers.get(message.toString('latin1', 2));
    if (!cached) return undefined;
    const answer = Buffer.allocUnsafe(cached.length);
    cached.copy(answer, 2, 2);
    message.copy(answer, 0, 0, 2);
    return answer;
  }

  set(message: Buffer, answer: Buffer): void {
    if (this.answers.size >= this.maxEntries) this.answers.clear();
    this.answers.set(message.toString('latin1', 2), answer);
  }
}
