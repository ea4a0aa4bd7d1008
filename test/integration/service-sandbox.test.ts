/**
 * The daemon under the sandbox of its systemd unit, read from
 * packaging/tsnet.service (capability bounding set, no new privileges,
 * address families: see test/harness/service-sandbox.ts), in a test netns
 * whose "LAN" netns holds an address: tsnet.arp_probe works there, so the
 * unit lets arping open its AF_PACKET socket; a bridge network with a port
 * published on 80 (sysctls, rules, the held host port) comes and goes.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CleanupStack, createNetnsCleanedUp, createVethPair, execInNetns, httpPostUnix, newRunId, procStatus, run, runDir,
  serviceProperties, serviceSandbox, startTsnet, type TsnetDaemon,
} from '../harness/index.js';

const id = newRunId();
const host = `${id}h`;
const lan = `${id}l`;
const dir = runDir(id);
const cleanup = new CleanupStack();
let tsnet: TsnetDaemon;

async function post(method: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
  return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> };
}

describe('the daemon under its systemd unit\'s sandbox', () => {
  beforeAll(async () => {
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await createNetnsCleanedUp(cleanup, host, lan);
    await createVethPair({ netns: host, name: 'lan0' }, { netns: lan, name: 'lan0-peer', address: '10.174.0.2/24' });
    tsnet = await startTsnet({
      netns: host, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tss${id}`,
      wrapper: await serviceSandbox(dir),
    });
    cleanup.defer('stop tsnet', () => tsnet.stop());
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('runs bounded as the unit says: capabilities, no new privileges, a seccomp filter', () => {
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    expect(serviceProperties().get('CapabilityBoundingSet')).toBe('CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE');
    expect(procStatus(tsnet.pid)).toMatchObject({ CapBnd: '0000000000003400', NoNewPrivs: '1', Seccomp: '2' });
  });

  it('the sandbox is real: without AF_PACKET, arping cannot open its socket', async () => {
    const families = (serviceProperties().get('RestrictAddressFamilies') ?? '').split(' ').filter((f) => f !== 'AF_PACKET');
    const r = await execInNetns(host, [...(await serviceSandbox(dir, families)), 'busybox', 'arping', '-D', '-c', '1', '-w', '1', '-I', 'lan0', '10.174.0.2']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('Address family not supported by protocol');
  });

  it('tsnet.arp_probe works: the address a device on the LAN holds is skipped', async () => {
    const pool = await post('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.174.0.0/24', SubPool: '', Options: {}, V6: false });
    expect(pool.status).toBe(200);
    const poolId = pool.body.PoolID;
    expect((await post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } })).status).toBe(200);
    const network = await post('NetworkDriver.CreateNetwork', {
      NetworkID: 'ae'.repeat(32),
      Options: { 'com.docker.network.generic': { parent: 'lan0', 'tsnet.arp_probe': 'on' } },
      IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: '10.174.0.0/24', Gateway: '10.174.0.1/24' }],
      IPv6Data: [],
    });
    expect(network.status, JSON.stringify(network.body)).toBe(200);
    const address = await post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: {} });
    expect(address, tsnet.logTail()).toEqual({ status: 200, body: { Address: '10.174.0.3/24', Data: {} } });
  });

  it('builds a bridge network with a port published on 80, and takes it all down again', async () => {
    const network = 'be'.repeat(32);
    const endpoint = 'bf'.repeat(32);
    const portmap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 80, HostPortEnd: 80 }];
    const steps: Array<[string, unknown]> = [
      ['NetworkDriver.CreateNetwork', { NetworkID: network, Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.179.0.0/24', Gateway: '10.179.0.1/24' }], IPv6Data: [] }],
      ['NetworkDriver.CreateEndpoint', { NetworkID: network, EndpointID: endpoint, Interface: { Address: '10.179.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': portmap } }],
      ['NetworkDriver.ProgramExternalConnectivity', { NetworkID: network, EndpointID: endpoint, Options: {} }],
    ];
    for (const [method, body] of steps) {
      const answer = await post(method, body);
      expect(answer.status, `${method}: ${JSON.stringify(answer.body)}\n${tsnet.logTail()}`).toBe(200);
    }
    // The daemon holds host port 80 (CAP_NET_BIND_SERVICE) so nothing else takes it.
    expect((await execInNetns(host, ['ss', '-Htlnp', 'sport = :80'])).stdout).toContain(`pid=${tsnet.pid},`);
    for (const [method, body] of [
      ['NetworkDriver.RevokeExternalConnectivity', { NetworkID: network, EndpointID: endpoint }],
      ['NetworkDriver.DeleteEndpoint', { NetworkID: network, EndpointID: endpoint }],
      ['NetworkDriver.DeleteNetwork', { NetworkID: network }],
    ] as const) expect((await post(method, body)).status, method).toBe(200);
    expect((await execInNetns(host, ['ss', '-Htln', 'sport = :80'])).stdout).toBe('');
    expect((await execInNetns(host, ['ip', 'link', 'show', `tsbr-${network.slice(0, 10)}`])).exitCode).not.toBe(0);
  });
});
