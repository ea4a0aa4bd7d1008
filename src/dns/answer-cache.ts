import type { Transport } from './exchange.js';
import type { Scope } from './responder.js';

/**
 * Encoded answers tsnet gave from its own records, by everything in the
 * query but its ID: the same bytes asked again get the same bytes back, with
 * the asker's ID, without decoding or encoding. Valid for one record table
 * (the owner empties it when the table changes); bounded, emptied whole
 * when full (a new table empties it anyway).
 */
export class AnswerCache {
  private readonly answers = new Map<string, Buffer>();

  constructor(private readonly maxEntries = 10_000) {}

  key(message: Buffer, transport: Transport, scope: Scope): string {
    return `${transport}|${scope.networkId ?? '*'}|${scope.forward ? 1 : 0}|${message.toString('latin1', 2)}`;
  }

  /** A copy of the cached answer carrying the query's ID. */
  get(key: string, message: Buffer): Buffer | undefined {
    const cached = this.answers.get(key);
    if (!cached) return undefined;
    const answer = Buffer.allocUnsafe(cached.length);
    cached.copy(answer, 2, 2);
    message.copy(answer, 0, 0, 2);
    return answer;
  }

  set(key: string, answer: Buffer): void {
    if (this.answers.size >= this.maxEntries) this.answers.clear();
    this.answers.set(key, answer);
  }

  clear(): void {
    this.answers.clear();
  }
}
