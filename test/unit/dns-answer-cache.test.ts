// The answer cache's byte bound and LRU order, and the query shapes it is
// keyed on (anything but one question and one OPT is not a cacheable query).
import * as packet from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { AnswerCache, questionKey } from '../../src/dns/answer-cache.js';
import { queryShape } from '../../src/dns/query-shape.js';

const answer = (bytes: number) => Buffer.alloc(bytes, 1);

describe('the answer cache', () => {
  it('stays within its bytes, dropping the least recently used first', () => {
    const cache = new AnswerCache(1_000).follow('table');
    cache.set('a', answer(200));
    cache.set('b', answer(200));
    cache.set('c', answer(200));
    cache.get('a', Buffer.from([0, 1]), 0); // a is young again
    cache.set('d', answer(200));
    expect(cache.bytes).toBeLessThanOrEqual(1_000);
    expect([cache.get('a', Buffer.from([0, 1]), 0), cache.get('b', Buffer.from([0, 1]), 0), cache.get('d', Buffer.from([0, 1]), 0)].map(Boolean)).toEqual([true, false, true]);
  });

  it('gives the answer under the asker\'s ID, never an answer bigger than its bound, and forgets all for another table', () => {
    const cache = new AnswerCache(1_000).follow('table');
    cache.set('a', Buffer.from([9, 9, 1, 2, 3]));
    expect([...cache.get('a', Buffer.from([4, 2]), 0)!]).toEqual([4, 2, 1, 2, 3]);
    cache.set('huge', answer(2_000));
    expect(cache.get('huge', Buffer.from([0, 0]), 0)).toBeUndefined();
    cache.follow('another table');
    expect([cache.entries, cache.bytes]).toEqual([0, 0]);
  });
});

describe('question keys', () => {
  const question = (name: string, type: string) => {
    const query = packet.encode({ type: 'query', id: 1, questions: [{ type, name } as packet.Question] });
    return questionKey(query, queryShape(query)!.questionEnd);
  };

  it('are one for a name whatever its letter case, and differ by type and by any other byte', () => {
    expect(question('Web.N1.TSNET', 'A')).toBe(question('web.n1.tsnet', 'A'));
    expect(question('wEB.n1.tsnet', 'AAAA')).toBe(question('web.n1.tsnet', 'AAAA'));
    expect(question('web.n1.tsnet', 'A')).not.toBe(question('web.n1.tsnet', 'AAAA'));
    expect(question('web.n2.tsnet', 'A')).not.toBe(question('web.n1.tsnet', 'A'));
    // The type is a number: HTTPS (65, an upper-case A as a byte) is not type 97.
    const withType = (type: number) => {
      const query = packet.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'web.n1.tsnet' }] });
      query.writeUInt16BE(type, query.length - 4);
      return query;
    };
    const [https, type97] = [withType(65), withType(97)];
    expect(questionKey(https, https.length)).not.toBe(questionKey(type97, type97.length));
    // Only ASCII letters fold (RFC 4343): a Latin-1 capital is another name.
    expect(question('\u00c9t\u00e9.n1.tsnet', 'A')).not.toBe(question('\u00e9t\u00e9.n1.tsnet', 'A'));
  });

  it('give a hit the asker\'s ID and question case', () => {
    const ask = (id: number, name: string) => packet.encode({ type: 'query', id, questions: [{ type: 'A', name }] });
    const first = ask(7, 'web.n1.tsnet');
    const stored = packet.encode({ type: 'response', id: 7, flags: packet.AUTHORITATIVE_ANSWER, questions: [{ type: 'A', name: 'web.n1.tsnet' }], answers: [{ type: 'A', name: 'web.n1.tsnet', ttl: 5, data: '10.1.0.2' }] });
    const cache = new AnswerCache(10_000).follow('table');
    const end = queryShape(first)!.questionEnd;
    cache.set(questionKey(first, end), stored);
    const again = ask(4242, 'WeB.N1.tSnEt');
    const hit = packet.decode(cache.get(questionKey(again, end), again, end)!);
    expect(hit.id).toBe(4242);
    expect(hit.questions).toEqual([{ type: 'A', class: 'IN', name: 'WeB.N1.tSnEt' }]);
    expect(hit.answers?.[0]).toMatchObject({ type: 'A', data: '10.1.0.2' });
    expect(cache.entries).toBe(1);
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
