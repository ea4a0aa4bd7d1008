// Who asks, and how much: the asker classes of tsnet's DNS, the per-asker
// rate limit (with a clock the test moves), the truncated reply that slips
// out over the limit, and the --dns-recursion-from flag.
import * as packet from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { AskerClassifier } from '../../src/dns/askers.js';
import { dnsRecursionFromFlag } from '../../src/dns/dns-address.js';
import { ResponseRateLimit } from '../../src/dns/rate-limit.js';
import { slipReply } from '../../src/dns/responder.js';

describe('asker classes', () => {
  it('calls loopback, the local networks and containers local, --dns-recursion-from trusted, anyone else a stranger', () => {
    const askers = new AskerClassifier(['192.168.1.9/32']);
    askers.setLocal(['10.20.0.0/24', '192.168.1.50/32', 'fd00:1::/64']);
    expect(['127.0.0.1', '::1', '::ffff:127.0.0.1', '10.20.0.7', '192.168.1.50', 'fd00:1::9'].map((a) => askers.classify(a))).toEqual(Array(6).fill('local'));
    expect(askers.classify('192.168.1.9')).toBe('trusted');
    expect(['192.168.1.10', '10.20.1.7', 'fd00:2::1', 'not an address'].map((a) => askers.classify(a))).toEqual(Array(4).fill('stranger'));
  });

  it('forgets what it knew when the local networks change', () => {
    const askers = new AskerClassifier([]);
    askers.setLocal(['10.20.0.0/24']);
    expect(askers.classify('10.20.0.7')).toBe('local');
    askers.setLocal([]);
    expect(askers.classify('10.20.0.7')).toBe('stranger');
  });
});

describe('the per-asker rate limit', () => {
  it('gives a burst, then its rate, and over it every second answer slips out truncated', () => {
    let now = 0;
    const limit = new ResponseRateLimit({ perSecond: 10, burst: 3, maxAskers: 100, now: () => now });
    expect(Array.from({ length: 7 }, () => limit.verdict('a'))).toEqual(['send', 'send', 'send', 'drop', 'slip', 'drop', 'slip']);
    expect(limit.verdict('b')).toBe('send');
    now += 200; // two tokens back
    expect(Array.from({ length: 3 }, () => limit.verdict('a'))).toEqual(['send', 'send', 'drop']);
    now += 60_000; // never more than the burst
    expect(Array.from({ length: 4 }, () => limit.verdict('a'))).toEqual(['send', 'send', 'send', 'slip']);
  });

  it('tracks a bounded number of askers, however many sources a flood spoofs', () => {
    const limit = new ResponseRateLimit({ perSecond: 1, burst: 1, maxAskers: 50, now: () => 0 });
    for (let i = 0; i < 10_000; i++) limit.verdict(`10.0.${i >> 8}.${i & 255}`);
    expect(limit.size).toBe(50);
  });
});

describe('the truncated reply that slips out', () => {
  it('echoes the question with TC set and nothing else', () => {
    const query = packet.encode({ type: 'query', id: 4242, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.n1.tsnet' }] });
    const reply = packet.decode(slipReply(query)!);
    expect(reply).toMatchObject({ type: 'response', id: 4242, flag_tc: true, flag_rd: true, rcode: 'NOERROR', questions: [{ type: 'A', name: 'web.n1.tsnet' }], answers: [] });
  });

  it('sends nothing for what is not a plain query', () => {
    const response = packet.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'x' }] });
    expect(slipReply(response)).toBeUndefined();
    expect(slipReply(Buffer.from([1, 2, 3]))).toBeUndefined();
    const cut = packet.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'web.n1.tsnet' }] }).subarray(0, 16);
    expect(slipReply(cut)).toBeUndefined();
  });
});

describe('--dns-recursion-from', () => {
  it('takes a CIDR or an address, canonical, and names itself when it is neither', () => {
    expect(dnsRecursionFromFlag('192.168.1.7/24')).toBe('192.168.1.0/24');
    expect(dnsRecursionFromFlag('192.168.1.7')).toBe('192.168.1.7/32');
    expect(dnsRecursionFromFlag('fd00::1')).toBe('fd00::1/128');
    expect(() => dnsRecursionFromFlag('lan')).toThrow('--dns-recursion-from lan: expected a CIDR such as 192.168.1.0/24, or an address');
  });
});
