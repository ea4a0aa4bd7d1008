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
