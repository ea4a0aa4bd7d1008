/**
 * tsnet's DNS server on loopback, asked by dig and by raw sockets: names,
 * aliases, PTR, NXDOMAIN vs NODATA, TCP, truncation and the TCP retry,
 * EDNS0, forwarding to dnsmasq (and its cache), a listener scoped to one
 * network that does not forward, refusals, malformed input and a fuzz run
 * of 10 000 packets after which nothing is left open.
 */
import { randomInt } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsServer } from '../../src/dns/dns-server.js';
import type { NameEntry } from '../../src/dns/name-entry.js';
import { StaticUpstreams } from '../../src/dns/upstreams.js';
import { assertPreflight, CleanupStack, dig, type Dnsmasq, newRunId, rawUdpQuery, runDir, runDnsFuzz, startDnsmasq, waitUntil } from '../harness/index.js';

const N1 = 'a1'.repeat(32);
const N2 = 'b2'.repeat(32);
const UNNAMED = 'e3'.repeat(32);
const PORT = 20_000 + randomInt(20_000);
const UPSTREAM_PORT = PORT + 1;
const ALL = '127.0.0.1';
const ONLY_N2 = '127.0.0.2';
const UPSTREAM = '127.0.0.3';
/** A listener of n2 that only hosts of 127.0.0.5/32 may ask (as a network's listener only its subnets). */
const N2_HOSTS_ONLY = '127.0.0.4';
const MANY = 40;

const entries: NameEntry[] = [
  { networkId: N1, networkName: 'n1', endpointId: 'c1'.repeat(32), names: ['web', 'www', 'api'], ipv4: '10.1.0.2', ipv6: 'fd00:1::2' },
  { networkId: N1, networkName: 'n1', endpointId: 'c2'.repeat(32), names: ['db'], ipv4: '10.1.0.3' },
  { networkId: N1, networkName: 'n1', endpointId: UNNAMED, names: [], ipv4: '10.1.0.4' },
  { networkId: N2, networkName: 'n2', endpointId: 'd1'.repeat(32), names: ['other'], ipv4: '10.2.0.2' },
  ...Array.from({ length: MANY }, (_, i): NameEntry => ({ networkId: N1, networkName: 'n1', endpointId: `f${i}`.padEnd(64, '0'), names: [`m${i}`, 'many'], ipv4: `10.1.1.${i + 1}` })),
];

const cleanup = new CleanupStack();
let server: DnsServer;
let upstream: Dnsmasq;
const errors: Error[] = [];

const ask = (name: string, ...args: string[]) => dig(ALL, PORT, [name, ...args]);
const askN2 = (name: string, ...args: string[]) => dig(ONLY_N2, PORT, [name, ...args]);

const rawUdp = (message: Buffer) => rawUdpQuery(ALL, PORT, message);

const query = (questions: packet.Question[], extra: Partial<packet.Packet> = {}) =>
  packet.encode({ type: 'query', id: randomInt(65536), flags: packet.RECURSION_DESIRED, questions, ...extra });
const rcodeOf = (reply: Buffer | undefined) => reply && (packet.decode(reply) as packet.DecodedPacket & { rcode: string }).rcode;

describe('DNS server', () => {
  beforeAll(async () => {
    assertPreflight({ docker: false, dns: true });
    const id = newRunId();
    const big = Array.from({ length: MANY }, (_, i) => ['big.example', `198.18.0.${i + 1}`] as const);
    upstream = await startDnsmasq({ dir: runDir(id), address: UPSTREAM, port: UPSTREAM_PORT, hosts: [['fwd.example', '192.0.2.7'], ['gone.example', '192.0.2.8'], ...big], localDomains: ['example'] }, cleanup);
    cleanup.defer('remove run dir', () => import('node:fs').then((fs) => fs.rmSync(runDir(id), { recursive: true, force: true })));
    server = new DnsServer({ domain: 'tsnet', upstreams: new StaticUpstreams([{ address: UPSTREAM, port: UPSTREAM_PORT }]), onError: (e) => errors.push(e) });
    cleanup.defer('close DNS server', () => server.close());
    server.setEntries(entries);
    const statuses = await server.setListeners([
      { address: ALL, port: PORT, forward: true },
      { address: ONLY_N2, port: PORT, networkId: N2, forward: false },
      { address: N2_HOSTS_ONLY, port: PORT, networkId: N2, forward: false, askers: ['127.0.0.5/32'] },
    ]);
    expect(statuses.map((s) => s.state)).toEqual(['serving', 'serving', 'serving']);
  });
  afterAll(async () => {
    await cleanup.run();
    expect(errors).toEqual([]);
  });

  it('answers A and AAAA for container names and aliases, authoritatively, with TTL 5, in any letter case', async () => {
    const a = await ask('web.n1.tsnet', 'A');
    expect(a.status).toBe('NOERROR');
    expect(a.flags).toContain('aa');
    expect(a.answers).toEqual(['A 10.1.0.2']);
    expect(a.text).toMatch(/web\.n1\.tsnet\.\s+5\s+IN\s+A/);
    expect((await ask('web.n1.tsnet', 'AAAA')).answers).toEqual(['AAAA fd00:1::2']);
    expect((await ask('www.n1.tsnet')).answers).toEqual(['A 10.1.0.2']);
    expect((await ask('API.N1.TSNET')).answers).toEqual(['A 10.1.0.2']);
  });

  it('tells NODATA from NXDOMAIN, both with the SOA', async () => {
    const nodata = await ask('db.n1.tsnet', 'AAAA');
    expect([nodata.status, nodata.answers, nodata.authority]).toEqual(['NOERROR', [], ['tsnet. SOA']]);
    const nx = await ask('nothere.n1.tsnet');
    expect([nx.status, nx.flags.includes('aa'), nx.authority]).toEqual(['NXDOMAIN', true, ['tsnet. SOA']]);
    expect((await ask('x.web.n1.tsnet')).status).toBe('NXDOMAIN');
    expect((await ask('n1.tsnet')).status).toBe('NOERROR');
    expect((await ask('n9.tsnet')).status).toBe('NXDOMAIN');
    expect((await ask('tsnet', 'SOA')).answers).toEqual(['SOA ns.tsnet. hostmaster.tsnet. 1 3600 600 86400 5']);
  });

  it('answers PTR for every address, with ep-<12 hex> for an endpoint Docker has not named', async () => {
    expect((await ask('-x', '10.1.0.2')).answers).toEqual(['PTR web.n1.tsnet.']);
    expect((await ask('-x', 'fd00:1::2')).answers).toEqual(['PTR web.n1.tsnet.']);
    expect((await ask('-x', '10.1.0.4')).answers).toEqual(['PTR ep-e3e3e3e3e3e3.n1.tsnet.']);
    expect((await ask('ep-e3e3e3e3e3e3.n1.tsnet')).answers).toEqual(['A 10.1.0.4']);
  });

  it('answers over TCP', async () => {
    const tcp = await ask('db.n1.tsnet', '+tcp');
    expect([tcp.status, tcp.answers]).toEqual(['NOERROR', ['A 10.1.0.3']]);
  });

  it('truncates a large answer over UDP and gives it whole over TCP', async () => {
    const cut = await ask('many.n1.tsnet', '+noedns', '+ignore');
    expect(cut.flags).toContain('tc');
    expect(cut.answers).toEqual([]);
    const retried = await ask('many.n1.tsnet', '+noedns');
    expect(retried.answers).toHaveLength(MANY);
    const big = await ask('many.n1.tsnet', '+bufsize=4096', '+ignore');
    expect(big.flags).not.toContain('tc');
    expect(big.answers).toHaveLength(MANY);
    expect(big.text).toMatch(/EDNS: version: 0, flags:; udp: 1232/);
  });

  it('forwards other names upstream, and keeps the answer for its TTL', async () => {
    const fwd = await ask('fwd.example');
    expect([fwd.status, fwd.answers]).toEqual(['NOERROR', ['A 192.0.2.7']]);
    expect(fwd.flags).toContain('ra');
    expect(fwd.flags).not.toContain('aa');
    expect((await ask('nothere.example')).status).toBe('NXDOMAIN');
    expect((await ask('fwd.example', '+tcp')).answers).toEqual(['A 192.0.2.7']);
    // Too large for the client's 512 bytes: cut over UDP, whole over TCP (forwarded over TCP too).
    expect((await ask('big.example', '+noedns', '+ignore')).flags).toContain('tc');
    expect((await ask('big.example', '+noedns')).answers).toHaveLength(MANY);
    await upstream.stop();
    // dnsmasq is gone: the cached answer still comes, an uncached one cannot.
    expect((await ask('fwd.example')).answers).toEqual(['A 192.0.2.7']);
    expect((await dig(ALL, PORT, ['gone.example', '+time=5'])).status).toBe('SERVFAIL');
  });

  it('serves only its own network on a network listener, and forwards nothing from it', async () => {
    expect((await askN2('other.n2.tsnet')).answers).toEqual(['A 10.2.0.2']);
    expect((await askN2('web.n1.tsnet')).status).toBe('NXDOMAIN');
    expect((await askN2('n1.tsnet')).status).toBe('NXDOMAIN');
    expect((await askN2('-x', '10.1.0.2')).status).toBe('NXDOMAIN');
    const refused = await askN2('fwd.example');
    expect(refused.status).toBe('REFUSED');
    expect(refused.flags).not.toContain('ra');
  });

  it('answers only askers from the listener\'s subnets when it has them, over UDP and TCP', async () => {
    expect((await dig(N2_HOSTS_ONLY, PORT, ['-b', '127.0.0.5', 'other.n2.tsnet'])).answers).toEqual(['A 10.2.0.2']);
    expect((await dig(N2_HOSTS_ONLY, PORT, ['-b', '127.0.0.5', 'other.n2.tsnet', '+tcp'])).answers).toEqual(['A 10.2.0.2']);
    expect((await dig(N2_HOSTS_ONLY, PORT, ['-b', '127.0.0.6', 'other.n2.tsnet'])).status).toBeUndefined();
    expect((await dig(N2_HOSTS_ONLY, PORT, ['-b', '127.0.0.6', 'other.n2.tsnet', '+tcp'])).status).toBeUndefined();
  });

  it('refuses other classes and zone transfers, and answers BADVERS to EDNS versions it does not speak', async () => {
    expect((await ask('version.bind', 'TXT', '-c', 'CH')).status).toBe('REFUSED');
    expect((await ask('tsnet', 'AXFR')).text).toMatch(/Transfer failed|REFUSED/);
    expect((await ask('web.n1.tsnet', '+edns=1', '+noednsneg')).status).toBe('BADVERS');
    expect((await ask('web.n1.tsnet', 'TYPE65')).answers).toEqual([]);
    expect((await ask('web.n1.tsnet', 'TYPE65')).status).toBe('NOERROR');
  });

  it('answers FORMERR to 0 or 10 questions and to a compression loop, NOTIMP to other opcodes, nothing to responses and scraps', async () => {
    expect(rcodeOf(await rawUdp(query([])))).toBe('FORMERR');
    expect(rcodeOf(await rawUdp(query(Array.from({ length: 10 }, (_, i) => ({ type: 'A', name: `q${i}.n1.tsnet` })))))).toBe('FORMERR');
    // The question's name is a pointer to itself.
    const loop = Buffer.concat([query([]).subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    loop.writeUInt16BE(1, 4);
    expect(rcodeOf(await rawUdp(loop))).toBe('FORMERR');
    const status = query([{ type: 'A', name: 'web.n1.tsnet' }]);
    status.writeUInt16BE(2 << 11, 2);
    expect(rcodeOf(await rawUdp(status))).toBe('NOTIMP');
    expect(await rawUdp(packet.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'web.n1.tsnet' }] }))).toBeUndefined();
    expect(await rawUdp(Buffer.from([1, 2, 3]))).toBeUndefined();
    expect(rcodeOf(await rawUdp(query([{ type: 'A', name: 'web.n1.tsnet' }])))).toBe('NOERROR');
  });

  it('closes a TCP connection that announces a message shorter than a header, and outlives one that stalls', async () => {
    const short = connect(PORT, ALL);
    await new Promise((resolve) => short.once('connect', resolve));
    short.write(Buffer.from([0, 5, 1, 2, 3, 4, 5]));
    await new Promise((resolve) => short.once('close', resolve));

    const stalled = connect(PORT, ALL);
    await new Promise((resolve) => stalled.once('connect', resolve));
    stalled.write(Buffer.from([0xff, 0xff, 1, 2]));
    expect((await ask('db.n1.tsnet', '+tcp')).answers).toEqual(['A 10.1.0.3']);
    stalled.destroy();
  });

  it('survives 10 000 random and mangled packets and leaves nothing open', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    const flood = await runDnsFuzz(ALL, PORT, 10_000, 'web.n1.tsnet');
    expect(flood.answeredAfter).toBe(true);
    expect(flood.replies).toBeGreaterThan(0);
    await waitUntil(() => server.pendingForwards === 0 && fds() <= before, { timeoutMs: 15_000, what: `forwards to finish and fds to return to ${before} (now ${fds()}, pending ${server.pendingForwards})` });
    expect((await ask('db.n1.tsnet', '+tcp')).answers).toEqual(['A 10.1.0.3']);
    expect((await askN2('other.n2.tsnet')).answers).toEqual(['A 10.2.0.2']);
  });
});
