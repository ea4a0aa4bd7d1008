// The answer cache's byte bound, eviction order and keys, and the query shapes it is
// keyed on (anything but one question and one OPT is not a cacheable query).
import * as packet from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { AnswerCache } from '../../src/dns/answer-cache.js';
import { queryShape } from '../../src/dns/query-shape.js';
import type { Scope } from '../../src/dns/scope.js';

const everyNetwork: Scope = { forward: true };
const ask = (name: string, id = 1, extra: Partial<packet.Packet> = {}) => packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name }], ...extra });
const answer = (bytes: number) => Buffer.alloc(bytes, 1);

/** A cache for one record table, with get and set of a query in one scope and size limit. */
function cacheOf(maxBytes: number, hashSeed?: number) {
  const cache = new AnswerCache(maxBytes, hashSeed).follow('table');
  return {
    cache,
    set: (query: Buffer, stored: Buffer, scope = everyNetwork, sizeLimit = 512) => cache.set(query, queryShape(query)!, scope, sizeLimit, stored),
    get: (query: Buffer, scope = everyNetwork, sizeLimit = 512) => cache.get(query, queryShape(query)!, scope, sizeLimit),
  };
}

describe('the answer cache', () => {
  it('stays within its bytes, dropping first what was not hit since eviction last passed', () => {
    const { cache, set, get } = cacheOf(1_500); // three such entries fit, not four
    for (const name of ['a', 'b', 'c']) set(ask(name), answer(200));
    get(ask('a')); // a gets a second chance
    set(ask('d'), answer(200));
    expect(cache.bytes).toBeLessThanOrEqual(1_500);
    expect(['a', 'b', 'c', 'd'].map((name) => get(ask(name)) !== undefined)).toEqual([true, false, true, true]);
  });

  it('gives the answer under the asker\'s ID, never an answer bigger than its bound, and forgets all for another table', () => {
    const { cache, set, get } = cacheOf(1_000);
    const stored = Buffer.concat([ask('a', 9), Buffer.from([1, 2, 3])]);
    set(ask('a', 9), stored);
    expect(get(ask('a', 0x0402))!.subarray(0, 2)).toEqual(Buffer.from([4, 2]));
    expect(get(ask('a', 0x0402))!.subarray(2)).toEqual(stored.subarray(2));
    set(ask('huge'), answer(2_000));
    expect(get(ask('huge'))).toBeUndefined();
    cache.follow('another table');
    expect([cache.entries, cache.bytes]).toEqual([0, 0]);
  });

  it('never gives one question\'s answer for another whose key has the same hash', () => {
    // These two keys (everyNetwork, RD, no EDNS, 512 bytes) meet under the cache's 32-bit FNV-1a hash seeded with 0, found by
    // search; were the hash changed, the first would no longer be replaced and the test would say so.
    const [older, newer] = [ask('c543028.n1.tsnet'), ask('c1094744.n1.tsnet')];
    const { cache, set, get } = cacheOf(10_000, 0);
    const tagged = (query: Buffer, tag: string) => Buffer.concat([query, Buffer.from(tag)]);
    set(older, tagged(older, 'older'));
    set(newer, tagged(newer, 'newer'));
    expect(cache.entries).toBe(1);
    expect(get(older)).toBeUndefined();
    expect(get(newer)!.subarray(newer.length).toString()).toBe('newer');
  });
});

describe('answer keys', () => {
  /** Whether an answer stored for one query, scope and limit is found for another. */
  const found = (stored: Buffer, asked: Buffer, scopes: [Scope, Scope] = [everyNetwork, everyNetwork], limits: [number, number] = [512, 512]) => {
    const { set, get } = cacheOf(10_000);
    set(stored, answer(100), scopes[0], limits[0]);
    return get(asked, scopes[1], limits[1]) !== undefined;
  };

  it('are one for a name whatever its letter case, and differ by type and by any other byte', () => {
    expect(found(ask('Web.N1.TSNET'), ask('web.n1.tsnet'))).toBe(true);
    const aaaa = (name: string) => packet.encode({ type: 'query', id: 1, flags: packet.RECURSION_DESIRED, questions: [{ type: 'AAAA', name }] });
    expect(found(aaaa('wEB.n1.tsnet'), aaaa('web.n1.tsnet'))).toBe(true);
    expect(found(ask('web.n1.tsnet'), aaaa('web.n1.tsnet'))).toBe(false);
    expect(found(ask('web.n2.tsnet'), ask('web.n1.tsnet'))).toBe(false);
    // The type is a number: HTTPS (65, an upper-case A as a byte) is not type 97.
    const withType = (type: number) => {
      const query = ask('web.n1.tsnet');
      query.writeUInt16BE(type, query.length - 4);
      return query;
    };
    expect(found(withType(65), withType(97))).toBe(false);
    // Only ASCII letters fold (RFC 4343): a Latin-1 capital is another name.
    expect(found(ask('\u00c9t\u00e9.n1.tsnet'), ask('\u00e9t\u00e9.n1.tsnet'))).toBe(false);
  });

  it('give a hit the asker\'s ID and question case', () => {
    const { cache, set, get } = cacheOf(10_000);
    const stored = packet.encode({ type: 'response', id: 7, flags: packet.AUTHORITATIVE_ANSWER, questions: [{ type: 'A', name: 'web.n1.tsnet' }], answers: [{ type: 'A', name: 'web.n1.tsnet', ttl: 5, data: '10.1.0.2' }] });
    set(ask('web.n1.tsnet', 7), stored);
    const hit = packet.decode(get(ask('WeB.N1.tSnEt', 4242))!);
    expect(hit.id).toBe(4242);
    expect(hit.questions).toEqual([{ type: 'A', class: 'IN', name: 'WeB.N1.tSnEt' }]);
    expect(hit.answers?.[0]).toMatchObject({ type: 'A', data: '10.1.0.2' });
    expect(cache.entries).toBe(1);
  });

  it('are one for scopes of equal value, and differ by scope, RD, EDNS and size limit', () => {
    const network = (networkId: string): Scope => ({ networkId, forward: false });
    const plain = ask('web.n1.tsnet');
    expect(found(plain, plain, [network('n1'), network('n1')])).toBe(true);
    expect(found(plain, plain, [network('n1'), network('n2')])).toBe(false);
    expect(found(plain, plain, [network('n1'), everyNetwork])).toBe(false);
    expect(found(plain, plain, [everyNetwork, { forward: true, udpLimit: 1232 }])).toBe(false);
    expect(found(plain, plain, [everyNetwork, everyNetwork], [512, 4096])).toBe(false);
    const edns = (flags: number): packet.OptAnswer => ({ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags, flag_do: flags !== 0, options: [] });
    const variants = [plain, packet.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'web.n1.tsnet' }] }), ask('web.n1.tsnet', 1, { additionals: [edns(0)] }), ask('web.n1.tsnet', 1, { additionals: [edns(0x8000)] })];
    for (const stored of variants) for (const asked of variants) expect(found(stored, asked)).toBe(stored === asked);
  });

  it('never serve one scope\'s answer to another when scopes are numbered again', () => {
    const { cache, set, get } = cacheOf(1_000_000);
    const query = ask('web.n1.tsnet');
    set(query, Buffer.from('first'), { networkId: 'first', forward: false });
    // Networks come and go: once 4096 scopes are numbered, numbering starts over and the next scope gets the first one's number.
    for (let i = 1; i < 4096; i++) get(query, { networkId: `n${i}`, forward: false });
    expect(get(query, { networkId: 'other', forward: false })).toBeUndefined();
    expect(cache.entries).toBe(0);
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
