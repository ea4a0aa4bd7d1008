import { questionEnd } from './wire.js';

/** Header bits: a response, and the opcode. */
export const QR = 0x8000;
export const OPCODE_MASK = 0x7800;
const RD = 0x0100;
const OPT_TYPE = 41;
/** Root name (1) + type, class, TTL, RDLENGTH (10). */
const OPT_FIXED_BYTES = 11;

/** The EDNS0 part of a query that its answer depends on. */
export interface QueryOpt {
  /** The asker's UDP buffer. */
  size: number;
  version: number;
  dnssecOk: boolean;
}

/** A well-formed plain query, read without decoding: where its question ends, RD, and its OPT if any. */
export interface QueryShape {
  questionEnd: number;
  recursionDesired: boolean;
  opt: QueryOpt | undefined;
}

/**
 * Reads a query the way a cache lookup needs it: one question, no answer
 * or authority records, nothing in the additional section but one OPT,
 * and not a byte after it. Anything else is undefined: the responder
 * decodes it and answers FORMERR, NOTIMP or nothing.
 */
export function queryShape(message: Buffer): QueryShape | undefined {
  if (message.length < 12) return undefined;
  const flags = message.readUInt16BE(2);
  if (flags & (QR | OPCODE_MASK)) return undefined;
  if (message.readUInt16BE(4) !== 1 || message.readUInt16BE(6) !== 0 || message.readUInt16BE(8) !== 0) return undefined;
  const end = questionEnd(message);
  if (end === undefined) return undefined;
  const recursionDesired = (flags & RD) !== 0;
  const additional = message.readUInt16BE(10);
  if (additional === 0) return end === message.length ? { questionEnd: end, recursionDesired, opt: undefined } : undefined;
  if (additional !== 1 || message.length < end + OPT_FIXED_BYTES || message[end] !== 0 || message.readUInt16BE(end + 1) !== OPT_TYPE) return undefined;
  if (end + OPT_FIXED_BYTES + message.readUInt16BE(end + 9) !== message.length) return undefined;
  return { questionEnd: end, recursionDesired, opt: { size: message.readUInt16BE(end + 3), version: message[end + 6]!, dnssecOk: (message[end + 7]! & 0x80) !== 0 } };
}
