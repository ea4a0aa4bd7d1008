/**
 * The daemon's DNS as an operator runs it, against a stand-in Docker API:
 * a --dns-listen that cannot bind stops start-up naming it; endpoints are
 * served as ep-<12 hex> while Docker answers garbage or errors, and plugin
 * requests are unaffected; names come once Docker answers, follow events
 * and a resync after the stream broke; a gateway listener whose port a host
 * service holds is logged and shown while the network works; resolv.conf
 * is read again when it changes; a flood of 10 000 bad packets leaves the
 * daemon alive, answering plugin requests meanwhile, with no fd leaked.
 */
import { readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPreflight,
  CleanupStack,
  createNetns,
  createNetnsCleanedUp,
  createOutside,
  deleteNetns,
  dig,
  execInNetns,
  FakeDockerApi,
  httpPostUnix,
  ipIn,
  netnsPath,
  newRunId,
  nodeInNetns,
  REMOTE_SERVER,
  run,
  runDir,
  runDnsFuzz,
  startDnsmasq,
  startTsnet,
  TSNET_CLI,
  type TsnetDaemon,
  waitUntil,
} from '../harness/index.js';

const id = newRunId();
const netns = id;
const dir = runDir(id);
const driver = `tsn${id}`;
const LISTEN = '127.0.0.1';
const LISTEN_PORT = 5353;
const SECOND_UPSTREAM = '203.0.113.11';
const NET = 'a7'.repeat(32);
const EP = 'e7'.repeat(32);
const CONTAINER = 'cc'.repeat(32);
const resolvConf = join(dir, 'resolv.conf');
const cleanup = new CleanupStack();
let tsnet: TsnetDaemon;
let docker: FakeDockerApi;
/** Stops the host service holding port 53 (started in beforeAll). */
let stopPort53Holder: () => Promise<void>;

/** Holds UDP port 53 on every address, as a host's own resolver (dnsmasq, systemd-resolved) may. */
const PORT_53_HOLDER = `require('dgram').createSocket('udp4').bind(53, '0.0.0.0', () => console.log('ready'));`;

/** Holds the --dns-listen address and port (UDP and TCP), as the first daemon does in its netns. */
const DNS_PORT_HOLDER = `require('dgram').createSocket('udp4').bind(${LISTEN_PORT}, '${LISTEN}', () => require('net').createServer().listen(${LISTEN_PORT}, '${LISTEN}', () => console.log('ready')));`;

const ask = (...args: string[]) => dig(LISTEN, LISTEN_PORT, args, netns);

async function plugin(method: string, body: unknown): Promise<unknown> {
  const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
  expect(res.status, `${method}: ${res.body}`).toBe(200);
  return JSON.parse(res.body) as unknown;
}

const createEndpoint = (endpointId: string, address: string) =>
  plugin('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: endpointId, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });

const tsnetCli = (...args: string[]) => execInNetns(netns, [process.execPath, TSNET_CLI, ...args, '--name', driver, '--socket-dir', join(dir, 'plugins')]);

const resolves = (name: string, expected: string, timeoutMs: number) =>
  waitUntil(async () => (await ask(name)).answers[0] === expected, { timeoutMs, what: `${name} → ${expected}`, diagnostics: () => tsnet.logTail() });

describe('the daemon\'s DNS with a stand-in Docker API', () => {
  beforeAll(async () => {
    assertPreflight({ docker: false, dns: true, tsnet: true });
    await createNetns(netns);
    cleanup.defer(`delete netns ${netns}`, () => deleteNetns(netns));
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    // Two upstream resolvers outside; resolv.conf names the first.
    await createOutside(netns, `${id}o`, cleanup);
    await ipIn(`${id}o`, ['address', 'add', `${SECOND_UPSTREAM}/32`, 'dev', 'lo']);
    await startDnsmasq({ dir: join(dir, 'up1'), netns: `${id}o`, address: REMOTE_SERVER, port: 53, hosts: [['a.example', '192.0.2.1']], localDomains: ['example'] }, cleanup);
    await startDnsmasq({ dir: join(dir, 'up2'), netns: `${id}o`, address: SECOND_UPSTREAM, port: 53, hosts: [['c.example', '192.0.2.3']], localDomains: ['example'] }, cleanup);
    writeFileSync(resolvConf, `# first\nnameserver ${REMOTE_SERVER}\n`);
    stopPort53Holder = await nodeInNetns(netnsPath(netns), PORT_53_HOLDER, cleanup);

    docker = await FakeDockerApi.start(join(dir, 'docker.sock'));
    cleanup.defer('close the fake Docker API', () => docker.close());
    docker.mode = 'garbage';
    tsnet = await startTsnet({
      netns,
      pluginDir: join(dir, 'plugins'),
      stateDir: join(dir, 'state'),
      logFile: join(dir, 'tsnet.log'),
      driver,
      extraArgs: ['--docker-host', docker.host, '--dns-listen', `${LISTEN}:${LISTEN_PORT}`, '--dns-resolv-conf', resolvConf],
    });
    cleanup.defer('stop tsnet', () => tsnet.stop());
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('refuses to start when a --dns-listen address cannot be bound, naming it', async () => {
    // In a netns of its own (one tsnet per netns), where another program holds the address.
    const other = `${id}b`;
    await createNetnsCleanedUp(cleanup, other);
    await nodeInNetns(netnsPath(other), DNS_PORT_HOLDER, cleanup);
    const second = await execInNetns(other, [process.execPath, TSNET_CLI, 'daemon', '--name', `${driver}b`, '--socket-dir', join(dir, 'plugins'),
      '--state-dir', join(dir, 'state2'), '--docker-host', docker.host, '--dns-listen', `${LISTEN}:${LISTEN_PORT}`]);
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toContain(`--dns-listen ${LISTEN}:${LISTEN_PORT}: cannot serve DNS there (EADDRINUSE)`);
  });

  it('serves endpoints as ep-<12 hex> while Docker answers garbage, and plugin requests work', async () => {
    await plugin('NetworkDriver.CreateNetwork', {
      NetworkID: NET,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.153.20.0/24', Gateway: '10.153.20.1/24' }],
      IPv6Data: [],
    });
    await createEndpoint(EP, '10.153.20.2/24');
    await resolves('ep-e7e7e7e7e7e7.a7a7a7a7a7a7.tsnet', 'A 10.153.20.2', 2_000);
    expect((await ask('-x', '10.153.20.2')).answers).toEqual(['PTR ep-e7e7e7e7e7e7.a7a7a7a7a7a7.tsnet.']);
    docker.mode = 'error';
    expect(await plugin('NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: '/var/run/docker/netns/x', Options: {} })).toHaveProperty('InterfaceName');
    expect(tsnet.running).toBe(true);
  });

  it('logs and shows a gateway listener whose port a host service holds; the network works without it', async () => {
    const listed = await tsnetCli('dns');
    expect(listed.stdout).toContain(`10.153.20.1:53\t${NET.slice(0, 12)}\tforwards\tfailed: EADDRINUSE`);
    expect(listed.stdout).toContain(`${LISTEN}:${LISTEN_PORT}\t-\tforwards\tserving`);
    expect(tsnet.logTail(200)).toMatch(/cannot serve DNS for the network on this address/);
    expect((await execInNetns(netns, ['ip', '-4', 'address', 'show', 'dev', `tsbr-${NET.slice(0, 10)}`])).stdout).toContain('10.153.20.1/24');
  });

  it('serves the gateway listener once the host service lets go of port 53, without a restart', async () => {
    await stopPort53Holder();
    // Tried again every 10 s while it fails.
    await waitUntil(async () => (await tsnetCli('dns')).stdout.includes(`10.153.20.1:53\t${NET.slice(0, 12)}\tforwards\tserving`), { timeoutMs: 25_000, what: 'the gateway listener serving' });
    expect((await dig('10.153.20.1', 53, ['ep-e7e7e7e7e7e7.a7a7a7a7a7a7.tsnet'], netns)).answers).toEqual(['A 10.153.20.2']);
    expect(tsnet.logTail(200)).toMatch(/"address":"10\.153\.20\.1:53".*"msg":"serving DNS"/);
  }, 40_000);

  it('takes the names once Docker answers, follows its events, and resyncs after the stream broke', async () => {
    docker.networks.set(NET, 'blue');
    docker.containers.set(CONTAINER, { id: CONTAINER, name: 'alpha', networks: { blue: { networkId: NET, endpointId: EP, aliases: ['al1', CONTAINER.slice(0, 12)] } } });
    docker.mode = 'ok';
    // The watcher waits up to 5 s between attempts after failures.
    await resolves('alpha.blue.tsnet', 'A 10.153.20.2', 15_000);
    expect((await ask('al1.blue.tsnet')).answers).toEqual(['A 10.153.20.2']);
    expect((await ask('-x', '10.153.20.2')).answers).toEqual(['PTR alpha.blue.tsnet.']);

    docker.containers.get(CONTAINER)!.name = 'beta';
    docker.emit({ Type: 'container', Action: 'rename', Actor: { ID: CONTAINER, Attributes: { name: 'beta' } } });
    await resolves('beta.blue.tsnet', 'A 10.153.20.2', 2_000);
    expect((await ask('alpha.blue.tsnet')).status).toBe('NXDOMAIN');

    // No event for this change: only the resync after the reconnect can see it.
    docker.containers.get(CONTAINER)!.name = 'gamma';
    docker.breakStreams();
    await resolves('gamma.blue.tsnet', 'A 10.153.20.2', 10_000);
  });

  it('reads resolv.conf again when it changes', async () => {
    expect((await ask('a.example')).answers).toEqual(['A 192.0.2.1']);
    writeFileSync(`${resolvConf}.new`, `# second\nnameserver ${SECOND_UPSTREAM}\n`);
    renameSync(`${resolvConf}.new`, resolvConf);
    await resolves('c.example', 'A 192.0.2.3', 5_000);
  });

  it('survives 10 000 bad packets with nothing leaked, answering plugin requests meanwhile', async () => {
    const fds = () => readdirSync(`/proc/${tsnet.pid}/fd`).length;
    const before = fds();
    const flood = runDnsFuzz(LISTEN, LISTEN_PORT, 10_000, 'gamma.blue.tsnet', netns);
    for (let i = 0; i < 5; i++) {
      const endpoint = `f${i}`.repeat(32);
      await createEndpoint(endpoint, `10.153.20.${10 + i}/24`);
      await plugin('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: endpoint });
    }
    expect((await flood).answeredAfter).toBe(true);
    expect(tsnet.running).toBe(true);
    // Plugin requests that overlap a background link deletion may start up to 3 more ip processes (the
    // session's lanes, 3 pipes each), kept for later requests; a flood that leaked would hold thousands.
    const lanes = 3 * 3;
    await waitUntil(() => fds() <= before + lanes, { timeoutMs: 15_000, what: `the daemon's fds back to ${before} + ${lanes} for the ip lanes (now ${fds()})` });
    expect((await ask('gamma.blue.tsnet', '+tcp')).answers).toEqual(['A 10.153.20.2']);
  });
});
