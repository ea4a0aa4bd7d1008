// The answer cache's byte bound and LRU order, and the query shapes it is
// keyed on (anything but one question and one OPT is not a cacheable query).
import * as packet from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { AnswerCache } from '../../src/dns/answer-cache.js';
import { queryShape } from '../../src/dns/query-shape.js';

const answer = (bytes: number) => Buffer.alloc(bytes, 1);

describe('the answer cache', () => {
  it('stays within its bytes, dropping the least recently used first', () => {
    const cache = new AnswerCache(1_000).follow('table');
    cache.set('a', answer(200));
    cache.set('b', answer(200));
    cache.set('c', answer(200));
    cache.get('a', Buffer.from([0, 1])); // a is young again
    cache.set('d', answer(200));
    expect(cache.bytes).toBeLessThanOrEqual(1_000);
    expect([cache.get('a', Buffer.from([0, 1])), cache.get('b', Buffer.from([0, 1])), cache.get('d', Buffer.from([0, 1]))].map(Boolean)).toEqual([true, false, true]);
  });

  it('gives the answer under the asker\'s ID, never an answer bigger than its bound, and forgets all for another table', () => {
    const cache = new AnswerCache(1_000).follow('table');
    cache.set('a', Buffer.from([9, 9, 1, 2, 3]));
    expect([...cache.get('a', Buffer.from([4, 2]))!]).toEqual([4, 2, 1, 2, 3]);
    cache.set('huge', answer(2_000));
    expect(cache.get('huge', Buffer.from([0, 0]))).toBeUndefined();
    cache.follow('another table');
    expect([cache.entries, cache.bytes]).toEqual([0, 0]);
  });
});

describe('query shapes', () => {
  const opt: packet.OptAnswer = { type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0x8000, flag_do: true, options: [{ code: 12, data: Buffer.alloc(40) }] };
  const query = (extra: Partial<packet.Packet> = {}) => packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'Web.n1.tsnet' }], ...extra });

  it('reads the question\'s end, RD and the OPT\'s buffer, version and DO of a plain query', () => {
    expect(queryShape(query())).toEqual({ questionEnd: 12 + 14 + 4, recursionDesired: true, opt: undefined });
    expect(queryShape(query({ additionals: [opt] }))).toEqual({ questionEnd: 30, recursionDesired: true, opt: { size: 4096, version: 0, dnssecOk: true } });
  });

  it('knows no shape for records besides one OPT, bytes after the last, or a response', () => {
    const a: packet.Answer = { type: 'A', name: 'x', ttl: 1, data: '192.0.2.1' };
    expect(queryShape(query({ additionals: [a] }))).toBeUndefined();
    expect(queryShape(query({ additionals: [opt, opt] }))).toBeUndefined();
    expect(queryShape(query({ answers: [a] }))).toBeUndefined();
    expect(queryShape(Buffer.concat([query(), Buffer.from([0])]))).toBeUndefined();
    expect(queryShape(packet.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'x' }] }))).toBeUndefined();
  });
});
