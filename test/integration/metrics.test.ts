/**
 * `tsnet daemon --metrics`: a real daemon in its own netns programs a bridge
 * with a published port, and a Prometheus scrape shows what it did (requests
 * per method and outcome, kernel commands, ip lines, program starts) and what
 * it holds (networks, endpoints, ports, pool usage), with Node's process
 * metrics. Bad --metrics values and a taken port stop the start with one line
 * (those daemons run in a netns of their own: one tsnet per netns).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, createNetnsCleanedUp, deleteNetns, dig, execInNetns, httpPostUnix, netnsPath, newRunId, nodeInNetns, run, runDir, startTsnet, TSNET_CLI, type TsnetDaemon, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}m`;
/** Where the other daemons of this file start: one tsnet per netns. */
const otherNetns = `${id}p`;
const dir = runDir(id);
const NETWORK = 'd4'.repeat(32);
const ENDPOINT = 'e5'.repeat(32);
const BAD_NETWORK = 'f6'.repeat(32);
let tsnet: TsnetDaemon;
const cleanup = new CleanupStack();

const options = () => ({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsm${id}` });

/** `name{labels} value` lines of a scrape, keyed by `name{labels}`. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function scrape(address: string, ns = netns): Promise<Map<string, number>> {
  const r = await execInNetns(ns, ['timeout', '5', 'busybox', 'wget', '-qO-', `http://${address}/metrics`]);
  expect(r.exitCode, r.stderr + tsnet.logTail()).toBe(0);
  return samples(r.stdout);
}

/** A second daemon's start, expected to fail: exit status and the one line it printed. */
async function startFails(...flags: string[]) {
  const name = `tsf${id}`;
  const r = await run('ip', ['netns', 'exec', otherNetns, process.execPath, TSNET_CLI, 'daemon', '--name', name, '--socket-dir', join(dir, 'plugins'), '--state-dir', join(dir, 'state-f'), ...flags]);
  return { exitCode: r.exitCode, stderr: r.stderr, claimedSocket: existsSync(join(dir, 'plugins', `${name}.sock`)) };
}

const post = (method: string, body: unknown) => httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));

describe('tsnet daemon --metrics', () => {
  beforeAll(async () => {
    await createNetns(netns);
    await createNetnsCleanedUp(cleanup, otherNetns);
    // Another program on the port tsnet's metrics use in the first netns.
    await nodeInNetns(netnsPath(otherNetns), `require('net').createServer().listen(9464, '127.0.0.1', () => console.log('ready'));`, cleanup);
    tsnet = await startTsnet({ ...options(), extraArgs: ['--metrics', '127.0.0.1:9464', '--firewall', 'nftables', '--dns-listen', '127.0.0.1:5399', '--dns-upstream', '127.0.0.1:9'] });
    const pool = JSON.parse((await post('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.164.0.0/24', SubPool: '', Options: {}, V6: false })).body);
    await post('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    const address = JSON.parse((await post('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: {} })).body).Address;
    const network = { Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: '10.164.0.0/24', Gateway: '10.164.0.1/24' }], IPv6Data: [] };
    expect((await post('NetworkDriver.CreateNetwork', { NetworkID: NETWORK, ...network })).status).toBe(200);
    // Refused: the same subnet again.
    expect((await post('NetworkDriver.CreateNetwork', { NetworkID: BAD_NETWORK, ...network })).status).toBe(500);
    const portmap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18464, HostPortEnd: 18464 }];
    const endpoint = { NetworkID: NETWORK, EndpointID: ENDPOINT, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': portmap } };
    expect((await post('NetworkDriver.CreateEndpoint', endpoint)).status).toBe(200);
    expect((await post('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NETWORK, EndpointID: ENDPOINT, Options: {} })).status).toBe(200);
  });
  afterAll(async () => {
    await tsnet?.stop();
    await cleanup.run();
    await deleteNetns(netns);
    await run('rm', ['-rf', dir]);
  });

  it('counts and times plugin requests per method and outcome', async () => {
    const m = await scrape('127.0.0.1:9464');
    expect(m.get('tsnet_plugin_requests_total{method="NetworkDriver.CreateNetwork",outcome="ok"}')).toBe(1);
    expect(m.get('tsnet_plugin_requests_total{method="NetworkDriver.CreateNetwork",outcome="refused"}')).toBe(1);
    expect(m.get('tsnet_plugin_requests_total{method="IpamDriver.RequestAddress",outcome="ok"}')).toBe(2);
    expect(m.get('tsnet_plugin_request_duration_seconds_count{method="NetworkDriver.CreateNetwork"}')).toBe(2);
    expect(m.get('tsnet_plugin_request_duration_seconds_bucket{le="+Inf",method="NetworkDriver.CreateEndpoint"}')).toBe(1);
  });

  it('counts and times kernel commands, ip lines and program starts', async () => {
    const m = await scrape('127.0.0.1:9464');
    expect(m.get('tsnet_kernel_commands_total{command="ip-batch",outcome="ok"}')).toBeGreaterThanOrEqual(2);
    // The network and the published port, each one nft transaction.
    expect(m.get('tsnet_kernel_commands_total{command="nft",outcome="ok"}')).toBeGreaterThanOrEqual(2);
    // Every nft command is timed, whatever its outcome (the drift watcher's reads among them).
    const nftCommands = [...m].filter(([key]) => key.startsWith('tsnet_kernel_commands_total{command="nft"')).reduce((sum, [, n]) => sum + n, 0);
    expect(m.get('tsnet_kernel_command_duration_seconds_count{command="nft"}')).toBe(nftCommands);
    // The bridge, its gateway address, the veth pair: several netlink changes.
    expect(m.get('tsnet_ip_batch_lines_total')).toBeGreaterThanOrEqual(4);
    expect(m.get('tsnet_program_starts_total{program="ip"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('tsnet_program_starts_total{program="nft"}')).toBeGreaterThanOrEqual(2);
  });

  it('shows networks and endpoints by kind, published ports and pool usage', async () => {
    const m = await scrape('127.0.0.1:9464');
    expect(m.get('tsnet_networks{kind="bridge"}')).toBe(1);
    expect(m.get('tsnet_endpoints{kind="bridge"}')).toBe(1);
    expect(m.get('tsnet_published_ports{proto="tcp"}')).toBe(1);
    expect(m.get('tsnet_pool_addresses_held{pool="10.164.0.0/24",range="10.164.0.0/24"}')).toBe(2);
    expect(m.get('tsnet_pool_addresses_size{pool="10.164.0.0/24",range="10.164.0.0/24"}')).toBe(256);
    expect((await post('NetworkDriver.DeleteEndpoint', { NetworkID: NETWORK, EndpointID: ENDPOINT })).status).toBe(200);
    const after = await scrape('127.0.0.1:9464');
    expect(after.get('tsnet_endpoints{kind="bridge"}')).toBeUndefined();
    expect(after.get('tsnet_published_ports{proto="tcp"}')).toBeUndefined();
  });

  it('counts DNS answers by transport and RCODE', async () => {
    expect((await dig('127.0.0.1', 5399, ['nosuch.x.tsnet'], netns)).status).toBe('NXDOMAIN');
    expect((await dig('127.0.0.1', 5399, ['+tcp', 'nosuch.x.tsnet'], netns)).status).toBe('NXDOMAIN');
    expect((await dig('127.0.0.1', 5399, ['-c', 'CH', 'version.bind', 'TXT'], netns)).status).toBe('REFUSED');
    // The DNS thread reports its counts once a second.
    const m = await waitUntil(async () => {
      const scraped = await scrape('127.0.0.1:9464');
      return (scraped.get('tsnet_dns_answers_total{transport="udp",rcode="REFUSED"}') ?? 0) >= 1 && scraped;
    }, { timeoutMs: 5_000, what: 'the DNS counts in the metrics' });
    // dig may ask again (REFUSED makes it try once more), so at least one each.
    expect(m.get('tsnet_dns_answers_total{transport="udp",rcode="NXDOMAIN"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('tsnet_dns_answers_total{transport="tcp",rcode="NXDOMAIN"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('tsnet_dns_answers_total{transport="tcp",rcode="REFUSED"}')).toBeUndefined();
  });

  it("includes Node's process metrics", async () => {
    const m = await scrape('127.0.0.1:9464');
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(m.get('nodejs_eventloop_lag_seconds')).toBeDefined();
  });

  it('refuses a taken port, a public address without --metrics-public and a malformed one, before claiming its socket', async () => {
    expect(await startFails('--metrics', '127.0.0.1:9464')).toEqual({ exitCode: 1, stderr: 'tsnet: --metrics 127.0.0.1:9464: the port is taken by another program; choose another port', claimedSocket: false });
    const publicAddress = await startFails('--metrics', '0.0.0.0:9465');
    expect(publicAddress.exitCode).toBe(1);
    expect(publicAddress.stderr).toBe(
      'tsnet: --metrics 0.0.0.0:9465 is not a loopback address: metrics show this host\'s networks and containers; add --metrics-public to serve them there anyway',
    );
    expect((await startFails('--metrics', 'localhost')).stderr).toBe('tsnet: --metrics "localhost" is not IP:PORT (e.g. 127.0.0.1:9464, [::1]:9464)');
    expect((await startFails('--metrics', '192.0.2.7:9465', '--metrics-public')).stderr).toBe('tsnet: --metrics 192.0.2.7:9465: this host has no such address');
  });

  it('serves on every address with --metrics-public, and logs for a terminal with --log-format pretty', async () => {
    const daemon = await startTsnet({ ...options(), netns: otherNetns, driver: `tsp${id}`, stateDir: join(dir, 'state-p'), logFile: join(dir, 'pretty.log'), extraArgs: ['--metrics', '0.0.0.0:9466', '--metrics-public', '--log-format', 'pretty'] });
    try {
      const m = await scrape('127.0.0.1:9466', otherNetns);
      expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
      const log = readFileSync(join(dir, 'pretty.log'), 'utf8');
      expect(log).toMatch(/INFO.*: tsnet is serving\n/);
      expect(log).not.toContain('{"level"');
    } finally {
      await daemon.stop();
    }
  });
});
