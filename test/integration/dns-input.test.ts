/**
 * tsnet's DNS server against hostile clients on loopback: queries carrying
 * more than a question and an OPT get FORMERR; the answer cache stays within
 * its byte bound however big or many the queries, and listeners alike share
 * it; a TCP client that never reads holds a bounded amount of answers, one
 * that dribbles a message is cut, one the listener does not serve is closed
 * at once, and one address cannot take every connection.
 */
import { randomInt } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsServer } from '../../src/dns/dns-server.js';
import type { NameEntry } from '../../src/dns/name-entry.js';
import { assertPreflight, CleanupStack, dig, rawUdpQuery, waitUntil } from '../harness/index.js';

const N1 = 'a1'.repeat(32);
const PORT = 20_000 + randomInt(20_000);
const FIRST = '127.0.0.1';
const SECOND = '127.0.0.2';
/** A listener only 127.0.0.5 may ask, as a network's listener only its subnets. */
const GUARDED = '127.0.0.4';
const MANY = 40;
const LIMITS = { connections: 128, perAsker: 4, idleMs: 10_000, messageMs: 1_000, pendingBytes: 16 * 1024 };
const CACHE_BYTES = 64 * 1024;

const entries: NameEntry[] = Array.from({ length: MANY }, (_, i): NameEntry => ({ networkId: N1, networkName: 'n1', endpointId: `f${i}`.padEnd(64, '0'), names: [`m${i}`, 'many'], ipv4: `10.1.1.${i + 1}` }));

const cleanup = new CleanupStack();
let server: DnsServer;
const errors: Error[] = [];

const query = (name: string, extra: Partial<packet.Packet> = {}) => packet.encode({ type: 'query', id: randomInt(65536), flags: 0, questions: [{ type: 'A', name }], ...extra });
const rcodeOf = (reply: Buffer | undefined) => reply && (packet.decode(reply) as packet.DecodedPacket & { rcode: string }).rcode;

/** A TCP client from `local`; resolves once connected, or once closed if the server closed it first. */
function client(to: string, local = '127.0.0.1'): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = connect({ host: to, port: PORT, localAddress: local });
  let closed = false;
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  cleanup.defer('close a test client', () => socket.destroy());
  return new Promise((resolve) => socket.once('connect', () => resolve({ socket, closed: () => closed })));
}

beforeAll(async () => {
  assertPreflight({ docker: false, dns: true });
  server = new DnsServer({ domain: 'tsnet', onError: (e) => errors.push(e), tcp: LIMITS, cacheBytes: CACHE_BYTES });
  cleanup.defer('close DNS server', () => server.close());
  server.setEntries(entries);
  const statuses = await server.setListeners([
    { address: FIRST, port: PORT, forward: false },
    { address: SECOND, port: PORT, forward: false },
    { address: GUARDED, port: PORT, networkId: N1, forward: false, askers: ['127.0.0.5/32'] },
  ]);
  expect(statuses.map((s) => s.state)).toEqual(['serving', 'serving', 'serving']);
});
afterAll(async () => {
  await cleanup.run();
  expect(errors).toEqual([]);
});

describe('DNS input bounds', () => {
  it('answers FORMERR to a query carrying records besides one OPT, or bytes after its last record', async () => {
    const withA = query('m1.n1.tsnet', { additionals: [{ type: 'A', name: 'x', ttl: 1, data: '192.0.2.1' }] });
    const withAnswer = query('m1.n1.tsnet', { answers: [{ type: 'A', name: 'x', ttl: 1, data: '192.0.2.1' }] });
    const padded = Buffer.concat([query('m1.n1.tsnet'), Buffer.alloc(4_000)]);
    for (const hostile of [withA, withAnswer, padded]) expect(rcodeOf(await rawUdpQuery(FIRST, PORT, hostile))).toBe('FORMERR');
    // Control: the same question alone, and with an OPT, is answered.
    expect(rcodeOf(await rawUdpQuery(FIRST, PORT, query('m1.n1.tsnet')))).toBe('NOERROR');
    const opt: packet.OptAnswer = { type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
    expect(rcodeOf(await rawUdpQuery(FIRST, PORT, query('m1.n1.tsnet', { additionals: [opt] })))).toBe('NOERROR');
  });

  it('keeps the answer cache within its bytes: 200 queries padded to 60 KB cost one entry, thousands of names evict the oldest', async () => {
    const padding = (bytes: number): packet.OptAnswer => ({ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [{ code: 12, data: Buffer.alloc(bytes) }] });
    for (let i = 0; i < 200; i++) expect(rcodeOf(await rawUdpQuery(FIRST, PORT, query('many.n1.tsnet', { additionals: [padding(60_000 + i)] })))).toBe('NOERROR');
    expect(server.cacheSize.bytes).toBeLessThanOrEqual(CACHE_BYTES);
    for (let i = 0; i < 2_000; i++) await rawUdpQuery(FIRST, PORT, query(`nothere${i}.n1.tsnet`));
    expect(server.cacheSize.bytes).toBeLessThanOrEqual(CACHE_BYTES);
    expect(server.cacheSize.entries).toBeGreaterThan(100);
  });

  it('shares one cache between listeners alike: an answer given on one is a hit on the other', async () => {
    const name = `shared${randomInt(1_000_000)}.n1.tsnet`;
    await rawUdpQuery(FIRST, PORT, query(name));
    const after = server.cacheSize.entries;
    expect(rcodeOf(await rawUdpQuery(SECOND, PORT, query(name)))).toBe('NXDOMAIN');
    expect(server.cacheSize.entries).toBe(after);
  });

  it('holds a bounded amount of answers for a TCP client that asks and never reads, and stops reading it', async () => {
    const { socket } = await client(FIRST);
    // 20 000 questions (660 KB) whose answers come to 14 MB: far beyond any socket buffer.
    const one = Buffer.from(packet.streamEncode({ type: 'query', id: 1, flags: 0, questions: [{ type: 'A', name: 'many.n1.tsnet' }] }));
    socket.write(Buffer.concat(Array.from({ length: 20_000 }, () => one)));
    let most = 0;
    await waitUntil(async () => {
      most = Math.max(most, server.tcpPendingBytes);
      return most > 0 && server.tcpPendingBytes === most;
    }, { timeoutMs: 10_000, what: 'answers piling up for the client that does not read' });
    for (let i = 0; i < 20; i++) {
      most = Math.max(most, server.tcpPendingBytes);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // The bound plus the one answer that crossed it.
    expect(most).toBeLessThanOrEqual(LIMITS.pendingBytes + 2 * 1024);
    // Others are served meanwhile.
    expect((await dig(FIRST, PORT, ['m2.n1.tsnet', '+tcp'])).answers).toEqual(['A 10.1.1.3']);
    socket.destroy();
  });

  it('cuts a TCP client that dribbles a message, though it keeps sending', async () => {
    const { socket, closed } = await client(FIRST);
    const message = Buffer.from(packet.streamEncode({ type: 'query', id: 2, flags: 0, questions: [{ type: 'A', name: 'm1.n1.tsnet' }] }));
    let sent = 0;
    // A byte every 200 ms: the message would take ~6 s; the deadline is 1 s after its first byte.
    while (sent < message.length && !closed()) {
      socket.write(message.subarray(sent, sent + 1));
      sent++;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(closed()).toBe(true);
    expect(sent).toBeLessThan(message.length);
  });

  it('closes a TCP client the listener does not serve at once, before it sends anything', async () => {
    const outsider = await client(GUARDED, '127.0.0.6');
    await waitUntil(() => outsider.closed(), { timeoutMs: 5_000, what: 'the listener to close a connection from an asker it does not serve' });
    const member = await client(GUARDED, '127.0.0.5');
    expect(member.closed()).toBe(false);
    expect((await dig(GUARDED, PORT, ['-b', '127.0.0.5', 'm1.n1.tsnet', '+tcp'])).answers).toEqual(['A 10.1.1.2']);
  });

  it('lets one address hold only its share of TCP connections; another address still gets in', async () => {
    const greedy = await Promise.all(Array.from({ length: 10 }, () => client(FIRST, '127.0.0.7')));
    await waitUntil(() => greedy.filter((c) => c.closed()).length === 10 - LIMITS.perAsker, { timeoutMs: 5_000, what: `all but ${LIMITS.perAsker} of 10 connections from one address closed` });
    expect((await dig(FIRST, PORT, ['-b', '127.0.0.8', 'm3.n1.tsnet', '+tcp'])).answers).toEqual(['A 10.1.1.4']);
  });
});
