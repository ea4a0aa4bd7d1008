/**
 * Who may ask tsnet's DNS what, with the daemon as an operator runs it:
 * --dns-listen on a LAN address is no open resolver (a LAN host gets tsnet's
 * names and REFUSED for the rest, unless --dns-recursion-from lets it),
 * UDP answers to the LAN stay within 1232 bytes (TC, whole over TCP), and a
 * LAN asker flooding over UDP is rate limited while others are answered.
 * The host (netns H) runs the daemon; the LAN is a netns joined by a veth.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPreflight,
  CleanupStack,
  createNetns,
  createOutside,
  createVethPair,
  deleteNetns,
  dig,
  execInNetns,
  FakeDockerApi,
  httpPostUnix,
  ipIn,
  newRunId,
  REMOTE_SERVER,
  run,
  runDir,
  startDnsmasq,
  startTsnet,
  type TsnetDaemon,
  waitUntil,
} from '../harness/index.js';

const id = newRunId();
const host = id;
const lan = `${id}l`;
const dir = runDir(id);
const driver = `tsn${id}`;
/** The host's LAN address, where --dns-listen serves; the LAN hosts around it. */
const LISTEN = '10.154.7.1';
const STRANGER = '10.154.7.2';
const NEIGHBOUR = '10.154.7.3';
const TRUSTED = '10.154.7.9';
const NET = 'a8'.repeat(32);
const EP = 'e8'.repeat(32);
const TSNET_NAME = 'ep-e8e8e8e8e8e8.lan1.tsnet';
/** Containers answering to the alias `many`: 100 A records, over 1232 bytes on the wire. */
const MANY = 100;
const MANY_NAME = 'many.lan1.tsnet';
const manyEndpoint = (i: number) => `f${String(i).padStart(3, '0')}`.padEnd(64, '8');
const cleanup = new CleanupStack();
let tsnet: TsnetDaemon;

const fromLan = (source: string, ...args: string[]) => dig(LISTEN, 53, ['-b', source, ...args], lan);
const fromHost = (...args: string[]) => dig(LISTEN, 53, args, host);
const messageSize = (text: string) => Number(/MSG SIZE {2}rcvd: (\d+)/.exec(text)?.[1]);

async function plugin(method: string, body: unknown): Promise<void> {
  const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
  expect(res.status, `${method}: ${res.body}`).toBe(200);
}

/**
 * Sends `count` queries for `name` from `source` as fast as it can over UDP
 * and counts what came back within a second of the last: full answers and
 * empty truncated ones ("slips"). Prints JSON with the seconds it took.
 */
const FLOOD = (source: string, count: number, name: string) => `
const s = require('dgram').createSocket('udp4');
const labels = ${JSON.stringify(name)}.split('.');
const question = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
let full = 0, slips = 0;
s.on('message', (m) => (m[2] & 2 ? slips++ : full++));
s.bind(0, '${source}', async () => {
  const started = Date.now();
  for (let i = 0; i < ${count}; i++) {
    const header = Buffer.from([i >> 8, i & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    s.send(Buffer.concat([header, question]), 53, '${LISTEN}');
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  const seconds = (Date.now() - started) / 1000;
  setTimeout(() => { console.log(JSON.stringify({ full, slips, seconds })); s.close(); }, 1000);
});`;

describe('who may ask tsnet\'s DNS what', () => {
  beforeAll(async () => {
    assertPreflight({ docker: false, dns: true, tsnet: true });
    await createNetns(host);
    cleanup.defer(`delete netns ${host}`, () => deleteNetns(host));
    await createNetns(lan);
    cleanup.defer(`delete netns ${lan}`, () => deleteNetns(lan));
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await createVethPair({ netns: host, name: 'lanwire', address: `${LISTEN}/24` }, { netns: lan, name: 'eth0', address: `${STRANGER}/24` });
    for (const other of [NEIGHBOUR, TRUSTED]) await ipIn(lan, ['address', 'add', `${other}/24`, 'dev', 'eth0']);
    await createOutside(host, `${id}o`, cleanup);
    await startDnsmasq({ dir: join(dir, 'up'), netns: `${id}o`, address: REMOTE_SERVER, port: 53, hosts: [['a.example', '192.0.2.1']], localDomains: ['example'] }, cleanup);
    const docker = await FakeDockerApi.start(join(dir, 'docker.sock'));
    cleanup.defer('close the fake Docker API', () => docker.close());
    docker.networks.set(NET, 'lan1');
    for (let i = 0; i < MANY; i++) {
      docker.containers.set(`c${i}`, { id: `c${i}`, name: `web${i}`, networks: { lan1: { networkId: NET, endpointId: manyEndpoint(i), aliases: ['many'] } } });
    }
    tsnet = await startTsnet({
      netns: host,
      pluginDir: join(dir, 'plugins'),
      stateDir: join(dir, 'state'),
      logFile: join(dir, 'tsnet.log'),
      driver,
      extraArgs: ['--docker-host', docker.host, '--dns-listen', LISTEN, '--dns-upstream', REMOTE_SERVER, '--dns-recursion-from', `${TRUSTED}/32`],
    });
    cleanup.defer('stop tsnet', () => tsnet.stop());
    await plugin('NetworkDriver.CreateNetwork', {
      NetworkID: NET,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.154.20.0/24', Gateway: '10.154.20.1/24' }],
      IPv6Data: [],
    });
    const endpoint = (endpointId: string, address: string) =>
      plugin('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: endpointId, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });
    await endpoint(EP, '10.154.20.2/24');
    for (let i = 0; i < MANY; i++) await endpoint(manyEndpoint(i), `10.154.20.${i + 10}/24`);
    await waitUntil(async () => (await fromHost(TSNET_NAME)).answers[0] === 'A 10.154.20.2', { timeoutMs: 5_000, what: `${TSNET_NAME} from the host`, diagnostics: () => tsnet.logTail() });
    await waitUntil(async () => (await fromHost(MANY_NAME, '+tcp')).answers.length === MANY, { timeoutMs: 5_000, what: `${MANY_NAME} with ${MANY} addresses` });
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('answers a LAN host tsnet\'s names and REFUSED for any other name; the host itself and its containers\' subnet get both', async () => {
    expect((await fromLan(STRANGER, TSNET_NAME)).answers).toEqual(['A 10.154.20.2']);
    const refused = await fromLan(STRANGER, 'a.example');
    expect([refused.status, refused.answers, refused.flags.includes('ra')], refused.text).toEqual(['REFUSED', [], false]);
    // The host asks its own LAN address: its source is that address, the host's own.
    const resolved = await fromHost('a.example');
    expect([resolved.status, resolved.answers, resolved.flags.includes('ra')], resolved.text).toEqual(['NOERROR', ['A 192.0.2.1'], true]);
    // A container of tsnet's bridge network (its subnet is tsnet's whole) asking the same address.
    expect((await dig(LISTEN, 53, ['-b', '10.154.20.1', 'a.example'], host)).answers).toEqual(['A 192.0.2.1']);
  });

  it('resolves any name for a LAN host that --dns-recursion-from allows', async () => {
    const allowed = await fromLan(TRUSTED, 'a.example');
    expect([allowed.status, allowed.answers], allowed.text).toEqual(['NOERROR', ['A 192.0.2.1']]);
  });

  it('keeps UDP answers to the LAN within 1232 bytes whatever buffer it offers (TC), and gives them whole over TCP', async () => {
    for (const asker of [STRANGER, TRUSTED]) {
      const cut = await fromLan(asker, MANY_NAME, '+bufsize=4096', '+ignore');
      expect(cut.flags, cut.text).toContain('tc');
      expect(messageSize(cut.text)).toBeLessThanOrEqual(1232);
      expect((await fromLan(asker, MANY_NAME, '+tcp')).answers).toHaveLength(MANY);
    }
    // The host's own queries are not capped: its buffer is honoured.
    const whole = await fromHost(MANY_NAME, '+bufsize=4096', '+ignore');
    expect(whole.flags).not.toContain('tc');
    expect(messageSize(whole.text)).toBeGreaterThan(1232);
  });

  it('rate-limits a LAN host flooding over UDP, some answers slipping out truncated, while its neighbour and the host are answered', async () => {
    const flood = await execInNetns(lan, [process.execPath, '-e', FLOOD(STRANGER, 2000, TSNET_NAME)]);
    expect(flood.exitCode, flood.stderr).toBe(0);
    const { full, slips, seconds } = JSON.parse(flood.stdout) as { full: number; slips: number; seconds: number };
    // The bucket: a burst of 200, then 100 a second, for as long as the flood lasted (however slow this machine is).
    expect(full).toBeLessThanOrEqual(200 + Math.ceil(100 * (seconds + 1)));
    expect(slips).toBeGreaterThan(0);
    expect((await fromLan(NEIGHBOUR, TSNET_NAME)).answers).toEqual(['A 10.154.20.2']);
    expect((await fromHost(TSNET_NAME)).answers).toEqual(['A 10.154.20.2']);
    // Over TCP the flooder is still answered: it cannot be spoofed, and a real client retries there after a slip.
    expect((await fromLan(STRANGER, TSNET_NAME, '+tcp')).answers).toEqual(['A 10.154.20.2']);
  });
});
