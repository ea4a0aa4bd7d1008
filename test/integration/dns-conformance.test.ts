/**
 * tsnet's DNS server against what resolvers expect of it: ISC's EDNS
 * compliance tests (the checks of ednscomp's genreport, by their names) and
 * what RFC 1035, 2308, 6891 and 7766 require of an authoritative server and
 * of a forwarder. On loopback, asked by dig and by raw sockets.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import * as packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsServer } from '../../src/dns/dns-server.js';
import type { NameEntry } from '../../src/dns/name-entry.js';
import { StaticUpstreams } from '../../src/dns/upstreams.js';
import { assertPreflight, CleanupStack, dig, rawUdpQuery } from '../harness/index.js';

const N1 = 'a1'.repeat(32);
const PORT = 20_000 + randomInt(20_000);
const UPSTREAM_PORT = PORT + 1;
const SERVER = '127.0.0.1';
const UPSTREAM = '127.0.0.3';

const entries: NameEntry[] = [
  { networkId: N1, networkName: 'n1', endpointId: 'c1'.repeat(32), names: ['web'], ipv4: '10.1.0.2', ipv6: 'fd00:1::2' },
  { networkId: N1, networkName: 'n1', endpointId: 'c2'.repeat(32), names: ['db'], ipv4: '10.1.0.3' },
];

const cleanup = new CleanupStack();
let server: DnsServer;
let upstreamQueries = 0;
const errors: Error[] = [];

/** An upstream that knows fwd.example alone and counts what it is asked. */
async function startUpstream(): Promise<void> {
  const socket = createSocket('udp4');
  socket.on('message', (message, from) => {
    upstreamQueries++;
    const query = packet.decode(message);
    const question = query.questions?.[0];
    const known = question?.name.toLowerCase() === 'fwd.example' && question.type === 'A';
    const reply = packet.encode({
      type: 'response', id: query.id, flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | (known ? 0 : 3), questions: query.questions ?? [],
      answers: known ? [{ type: 'A', name: question.name, ttl: 30, data: '192.0.2.7' }] : [],
    });
    socket.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(UPSTREAM_PORT, UPSTREAM, resolve));
  cleanup.defer('close the upstream', () => new Promise<void>((resolve) => socket.close(() => resolve())));
}

const ask = (...args: string[]) => dig(SERVER, PORT, args);

/** What dig printed of the OPT record: undefined without one; its version, flags and the options it listed. */
function optOf(text: string): { version: number; flags: string; mbz: string | undefined; options: string[] } | undefined {
  const edns = /; EDNS: version: (\d+), flags:([^;]*);(?: MBZ: (0x[0-9a-f]+) ,)? udp: \d+/.exec(text);
  if (!edns) return undefined;
  const pseudo = text.slice(text.indexOf('OPT PSEUDOSECTION'), text.indexOf(';; QUESTION SECTION'));
  const options = [...pseudo.matchAll(/^; ([A-Z0-9]+):/gm)].map((m) => m[1]!).filter((name) => name !== 'EDNS');
  return { version: Number(edns[1]), flags: edns[2]!.trim(), mbz: edns[3], options };
}

const rawUdp = (message: Buffer) => rawUdpQuery(SERVER, PORT, message);

beforeAll(async () => {
  assertPreflight({ docker: false, dns: true });
  await startUpstream();
  server = new DnsServer({ domain: 'tsnet', upstreams: new StaticUpstreams([{ address: UPSTREAM, port: UPSTREAM_PORT }]), onError: (e) => errors.push(e) });
  cleanup.defer('close DNS server', () => server.close());
  server.setEntries(entries, ['10.1.0.0/24', 'fd00:1::/64']);
  const statuses = await server.setListeners([{ address: SERVER, port: PORT, forward: true }]);
  expect(statuses.map((s) => s.state)).toEqual(['serving']);
});
afterAll(async () => {
  await cleanup.run();
  expect(errors).toEqual([]);
});

describe('DNS conformance: ISC EDNS compliance tests (genreport) on tsnet\'s zone', () => {
  it('dns, aa, tcp: plain DNS over UDP and TCP, SOA of the apex, authoritative, no OPT', async () => {
    for (const transport of ['+notcp', '+tcp']) {
      const soa = await ask('+norec', '+noedns', transport, 'SOA', 'tsnet');
      expect([soa.status, soa.answers.length, soa.flags.includes('aa')], soa.text).toEqual(['NOERROR', 1, true]);
      expect(optOf(soa.text)).toBeUndefined();
    }
  });

  it('zflag: the header\'s Z bit of the query is not echoed', async () => {
    const query = packet.encode({ type: 'query', id: 7, flags: 0, questions: [{ type: 'SOA', name: 'tsnet' }] });
    query.writeUInt16BE(query.readUInt16BE(2) | 0x0040, 2);
    const reply = await rawUdp(query);
    expect(reply).toBeDefined();
    expect(reply!.readUInt16BE(2) & 0x0040).toBe(0);
    expect(reply!.readUInt16BE(2) & 0x000f).toBe(0); // NOERROR
  });

  it('opcode: an unknown opcode gets NOTIMP', async () => {
    expect((await ask('+norec', '+noedns', '+opcode=15', '+header-only')).status).toBe('NOTIMP');
  });

  it('type666: an unknown type of an existing name is NODATA, not an error', async () => {
    const answer = await ask('+norec', '+noedns', 'TYPE666', 'tsnet');
    expect([answer.status, answer.answers, answer.authority]).toEqual(['NOERROR', [], ['tsnet. SOA']]);
  });

  it('edns, ednstcp: EDNS version 0 over UDP and TCP is answered with an OPT of version 0', async () => {
    for (const transport of ['+notcp', '+tcp']) {
      const answer = await ask('+norec', '+edns=0', '+nocookie', transport, 'SOA', 'tsnet');
      expect(answer.status).toBe('NOERROR');
      expect(optOf(answer.text)).toMatchObject({ version: 0 });
    }
  });

  it('edns1, edns1opt: EDNS version 1 gets BADVERS with an OPT of version 0 and no answer', async () => {
    for (const extra of [[], ['+ednsopt=100']]) {
      const answer = await ask('+norec', '+edns=1', '+noednsneg', '+nocookie', ...extra, 'SOA', 'tsnet');
      expect([answer.status, answer.answers], answer.text).toEqual(['BADVERS', []]);
      expect(optOf(answer.text)).toMatchObject({ version: 0, options: [] });
    }
  });

  it('edns@512: a DO query with a 512-byte buffer is answered within it', async () => {
    const answer = await ask('+norec', '+edns=0', '+dnssec', '+bufsize=512', '+ignore', 'DNSKEY', 'tsnet');
    expect(answer.status).toBe('NOERROR');
    expect(Number(/MSG SIZE {2}rcvd: (\d+)/.exec(answer.text)?.[1])).toBeLessThanOrEqual(512);
  });

  it('ednsopt, optlist: unknown and unsupported options are ignored, never echoed', async () => {
    const unknown = await ask('+norec', '+edns=0', '+nocookie', '+ednsopt=100', 'SOA', 'tsnet');
    expect(unknown.status).toBe('NOERROR');
    expect(optOf(unknown.text)?.options).toEqual([]);
    const list = await ask('+norec', '+edns=0', '+nsid', '+subnet=0.0.0.0/0', '+expire', '+cookie', 'SOA', 'tsnet');
    expect(list.status).toBe('NOERROR');
    expect(optOf(list.text)?.options).toEqual([]);
  });

  it('do: the DO bit is copied into the answer', async () => {
    const answer = await ask('+norec', '+edns=0', '+nocookie', '+dnssec', 'SOA', 'tsnet');
    expect(answer.status).toBe('NOERROR');
    expect(optOf(answer.text)?.flags).toBe('do');
  });

  it('ednsflags: undefined EDNS flags are not echoed', async () => {
    const answer = await ask('+norec', '+edns=0', '+nocookie', '+ednsflags=0x80', 'SOA', 'tsnet');
    expect(answer.status).toBe('NOERROR');
    expect(optOf(answer.text)).toMatchObject({ flags: '', mbz: undefined });
  });
});

describe('DNS conformance: RFC 1035, 2308, 6891, 7766', () => {
  it('echoes the question as asked, letter case included, and answers under that name', async () => {
    const answer = await ask('+norec', 'WeB.n1.TsNeT', 'A');
    expect(answer.text).toMatch(/^;WeB\.n1\.TsNeT\.\s+IN\s+A$/m);
    expect(answer.text).toMatch(/^WeB\.n1\.TsNeT\.\s+5\s+IN\s+A\s+10\.1\.0\.2$/m);
  });

  it('negative answers: NXDOMAIN and NODATA carry the SOA with the negative TTL (RFC 2308)', async () => {
    for (const [name, type, status] of [['nothere.n1.tsnet', 'A', 'NXDOMAIN'], ['db.n1.tsnet', 'AAAA', 'NOERROR']] as const) {
      const answer = await ask('+norec', name, type);
      expect([answer.status, answer.answers, answer.authority]).toEqual([status, [], ['tsnet. SOA']]);
      // The SOA's TTL is the lower of its own TTL and its MINIMUM field (5): the time a resolver may keep the "no".
      expect(answer.text).toMatch(/^tsnet\.\s+5\s+IN\s+SOA\s.* 5$/m);
    }
  });

  it('answers NXDOMAIN for a reverse name of its own subnets that has no record, without asking upstream', async () => {
    const before = upstreamQueries;
    for (const address of ['10.1.0.99', 'fd00:1::99']) {
      const answer = await ask('+norec', '-x', address);
      expect([answer.status, answer.flags.includes('aa')], answer.text).toEqual(['NXDOMAIN', true]);
    }
    expect((await ask('-x', '10.1.0.2')).answers).toEqual(['PTR web.n1.tsnet.']);
    expect(upstreamQueries).toBe(before);
  });

  it('as a forwarder: keeps the ID and the question, copies RD, sets RA, and is not authoritative', async () => {
    const answer = await ask('+qid=4242', 'fwd.example', 'A');
    expect(answer.text).toContain('id: 4242');
    expect(answer.text).toMatch(/^;fwd\.example\.\s+IN\s+A$/m);
    expect(answer.flags).toEqual(expect.arrayContaining(['qr', 'rd', 'ra']));
    expect(answer.flags).not.toContain('aa');
  });

  it('answers every query pipelined on one TCP connection, each under its own ID (RFC 7766)', async () => {
    const ids = [101, 102, 103, 104];
    const names = ['web.n1.tsnet', 'db.n1.tsnet', 'nothere.n1.tsnet', 'fwd.example'];
    const socket = connect(PORT, SERVER);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.concat(ids.map((id, i) => packet.streamEncode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: names[i]! }] }))));
    const replies = await new Promise<packet.DecodedPacket[]>((resolve, reject) => {
      let buffer = Buffer.alloc(0);
      const got: packet.DecodedPacket[] = [];
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${ids.length} answers`)), 5_000);
      socket.on('data', (chunk) => {
        buffer = Buffer.concat([buffer, chunk]);
        while (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) {
          got.push(packet.decode(buffer.subarray(2, 2 + buffer.readUInt16BE(0))));
          buffer = buffer.subarray(2 + buffer.readUInt16BE(0));
        }
        if (got.length === ids.length) {
          clearTimeout(timer);
          resolve(got);
        }
      });
    });
    socket.destroy();
    expect(replies.map((r) => [r.id, r.questions?.[0]?.name]).sort()).toEqual(ids.map((id, i) => [id, names[i]]).sort());
  });
});
