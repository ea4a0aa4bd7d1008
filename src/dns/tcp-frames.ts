/** The smallest DNS message: a header. */
export const HEADER_BYTES = 12;

/** DNS over TCP prefixes every message with its length as two bytes (RFC 1035 4.2.2). */
export function frame(message: Buffer): Buffer {
  const prefix = Buffer.allocUnsafe(2);
  prefix.writeUInt16BE(message.length);
  return Buffer.concat([prefix, message]);
}

/**
 * Cuts a TCP byte stream into DNS messages. Holds at most one message
 * (≤ 64 KiB) plus one chunk; throws on a length that cannot be a message.
 */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    while (this.pending.length >= 2) {
      const length = this.pending.readUInt16BE(0);
      if (length < HEADER_BYTES) throw new Error(`a TCP message of ${length} bytes is shorter than a DNS header`);
      if (this.pending.length < 2 + length) break;
      out.push(this.pending.subarray(2, 2 + length));
      this.pending = this.pending.subarray(2 + length);
    }
    return out;
  }

  /** Bytes received that are not a whole message yet. */
  get buffered(): number {
    return this.pending.length;
  }
}
