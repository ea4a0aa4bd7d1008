import * as packet from 'dns-packet';

/**
 * dns-packet's question codec, which its type definitions leave out. Its
 * encode writes into the buffer it is given (and returns the question).
 */
interface QuestionCodec {
  encode(question: packet.Question, buf: Buffer, offset: number): unknown;
  encodingLength(question: packet.Question): number;
}
const questionCodec = (packet as unknown as { question: QuestionCodec }).question;

/** A question's wire form. */
export function encodeQuestion(question: packet.Question): Buffer {
  const bytes = Buffer.alloc(questionCodec.encodingLength(question));
  questionCodec.encode(question, bytes, 0);
  return bytes;
}

/**
 * The type of a decoded question as a plain string: besides the names in
 * dns-packet's types, a decoded question may say ANY or UNKNOWN_<number>.
 */
export const typeOf = (question: packet.Question): string => question.type;

/**
 * Where the first question of a message ends, read without decoding: its
 * name's labels (a query's name has no compression pointer), then type and
 * class. undefined when the message is cut short or the name is not plain.
 */
export function questionEnd(message: Buffer): number | undefined {
  let offset = 12;
  while (offset < message.length) {
    const length = message[offset]!;
    if (length === 0) return offset + 5 <= message.length ? offset + 5 : undefined;
    if (length > 63) return undefined;
    offset += 1 + length;
  }
  return undefined;
}
