import type { z } from 'zod';
import { RequestError } from '../errors.js';

/** One protocol method: its path name, its request schema and what answers it. */
export interface Route<S extends z.ZodType = z.ZodType> {
  method: string;
  schema: S;
  handle(request: z.infer<S>): Promise<object> | object;
}

export const route = <S extends z.ZodType>(method: string, schema: S, handle: (request: z.infer<S>) => Promise<object> | object): Route =>
  ({ method, schema, handle }) as Route;

/**
 * Decodes a body the way dockerd sends it: no Content-Type, empty for
 * argument-less calls, JSON otherwise. The first schema issue becomes the
 * `<field>: <reason>` error.
 */
export function decode<S extends z.ZodType>(schema: S, raw: string): z.infer<S> {
  let json: unknown = {};
  if (raw.trim() !== '') {
    try {
      json = JSON.parse(raw);
    } catch (error) {
      throw new RequestError('body', `malformed JSON: ${(error as Error).message}`);
    }
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new RequestError('body', 'expected a JSON object');
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.length > 0 ? issue.path.join('.') : 'body';
  const reason = issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message;
  throw new RequestError(field, reason);
}
