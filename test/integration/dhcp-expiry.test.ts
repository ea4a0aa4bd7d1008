// DHCP leases through the plugin API, with a small DHCP server of the
// test's own that grants 8 s leases (dnsmasq's least is 2 min): one whose
// server goes away is renewed while it answers, then marked expired (shown,
// counted) and kept; one whose container went away while tsnet was down is
// given back at start-up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_ADDRESS_SPACE } from '../../src/ipam/ipam-service.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { CleanupStack, createNetns, createVethPair, deleteNetns, ipIn, netnsPath, newRunId, nodeInNetns } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const id = newRunId();
const [HOST, LAN] = [`${id}h`, `${id}l`];
const NET = 'd'.repeat(64);
const POOL = '10.95.0.0/24';
const cleanup = new CleanupStack();
let tsnet: NetnsPlugin;

/** Grants 10.95.0.50 to whoever asks: 8 s leases, T1 2 s, T2 4 s; prints `ack` for every ACK and `release` for every RELEASE. */
const SHORT_LEASE_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (req) => {
  const type = req[242];
  if (type === 7) console.log('release ' + req.subarray(12, 16).join('.'));
  if (type !== 1 && type !== 3) return;
  const b = Buffer.alloc(300);
  b[0] = 2; b[1] = 1; b[2] = 6;
  req.copy(b, 4, 4, 8);
  Buffer.from([10, 95, 0, 50]).copy(b, 16);
  req.copy(b, 28, 28, 34);
  b.writeUInt32BE(0x63825363, 236);
  Buffer.from([53, 1, type === 1 ? 2 : 5, 54, 4, 10, 95, 0, 1, 51, 4, 0, 0, 0, 8, 58, 4, 0, 0, 0, 2, 59, 4, 0, 0, 0, 4, 1, 4, 255, 255, 255, 0, 3, 4, 10, 95, 0, 1, 255]).copy(b, 240);
  s.send(b, 68, req.readUInt32BE(12) ? req.subarray(12, 16).join('.') : '255.255.255.255');
  if (type === 3) console.log('ack');
});
s.bind(67, () => { s.setBroadcast(true); console.log('ready'); });
`;

beforeAll(async () => {
  for (const ns of [HOST, LAN]) {
    await createNetns(ns);
    cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
  }
  await createVethPair({ netns: HOST, name: 'wire' }, { netns: LAN, name: 'wire', address: '10.95.0.1/24' });
  await ipIn(LAN, ['route', 'add', 'default', 'dev', 'wire']);
  tsnet = await new NetnsPlugin(HOST).start();
  cleanup.defer('close tsnet', () => tsnet.close());
});
afterAll(() => cleanup.run());

/** What `docker network create --ipam-opt tsnet.dhcp=on -o …` sends: the pool, its gateway, the network; returns the pool's ID. */
async function dhcpNetwork(generic: Record<string, string>): Promise<string> {
  const pool = await tsnet.post('IpamDriver.RequestPool', { AddressSpace: LOCAL_ADDRESS_SPACE, Pool: POOL, SubPool: '', Options: { 'tsnet.dhcp': 'on' }, V6: false }).expect(200);
  const poolId = pool.body.PoolID as string;
  await tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } }).expect(200);
  await tsnet.post('NetworkDriver.CreateNetwork', {
    NetworkID: NET,
    Options: { 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: LOCAL_ADDRESS_SPACE, Pool: POOL, Gateway: '10.95.0.1/24' }],
    IPv6Data: [],
  }).expect(200);
  return poolId;
}

describe('a DHCP lease whose server goes away', () => {
  it('is renewed while the server answers, then shown and counted as expired, and its address stays the container\'s', async () => {
    const stopServer = await nodeInNetns(netnsPath(LAN), SHORT_LEASE_SERVER, cleanup);
    const poolId = await dhcpNetwork({ parent: 'wire' });
    const granted = await tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null }).expect(200);
    expect(granted.body.Address).toBe('10.95.0.50/24');
    const lease = () => tsnet.plugin.ipam.dhcpLease('10.95.0.50');
    const first = lease()!.grantedAt;
    // T1 is 2 s: renewed (from a probe link holding the address: no container runs it here).
    await expect.poll(() => lease()!.grantedAt, { timeout: 15_000, interval: 250 }).toBeGreaterThan(first);
    await stopServer();
    await expect.poll(() => lease()?.expired, { timeout: 30_000, interval: 250 }).toBe(true);
    const metrics = new Metrics();
    metrics.watch(tsnet.plugin.networks, tsnet.plugin.ipam);
    expect(await metrics.registry.metrics()).toMatch(/tsnet_dhcp_leases\{state="expired"\} 1/);
    // Kept: dockerd still has it for the container, and tsnet goes on asking for it.
    expect(tsnet.plugin.ipam.dhcpLeases().map((l) => l.address)).toEqual(['10.95.0.50']);
  });
});

describe('a DHCP lease whose container went away while tsnet was down', () => {
  it('is given back to the server at start-up', async () => {
    // The first case's network and lease go first (its server is gone; the release is best effort).
    await tsnet.post('IpamDriver.ReleaseAddress', { PoolID: tsnet.plugin.ipam.dhcpLeases()[0]!.poolId, Address: '10.95.0.50' }).expect(200);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: NET }).expect(200);
    await tsnet.post('IpamDriver.ReleasePool', { PoolID: tsnet.plugin.ipam.dhcpLeases()[0]?.poolId ?? `tsnet-dhcp/${POOL}` }).expect(200);
    expect(tsnet.plugin.ipam.dhcpLeases()).toEqual([]);
    let output = '';
    await nodeInNetns(netnsPath(LAN), SHORT_LEASE_SERVER, cleanup, (chunk) => (output += chunk));
    const poolId = await dhcpNetwork({ parent: 'wire', 'tsnet.dhcp_hold': '0' });
    const granted = await tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null }).expect(200);
    const endpoint = 'e9'.padEnd(64, 'f');
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: endpoint, Interface: { Address: granted.body.Address, AddressIPv6: '', MacAddress: '' }, Options: {} }).expect(200);
    await tsnet.post('NetworkDriver.Join', { NetworkID: NET, EndpointID: endpoint, SandboxKey: '/run/tsnet-test-no-such-sandbox', Options: {} }).expect(200);
    // tsnet is down while the container goes: its netns, and the link in it, are gone.
    tsnet.plugin.networks.stop();
    await ipIn(HOST, ['link', 'del', 'dev', `tsm${endpoint.slice(0, 12)}`]);
    await tsnet.restart();
    await expect.poll(() => tsnet.plugin.ipam.dhcpLeases().length, { timeout: 15_000, interval: 250 }).toBe(0);
    await expect.poll(() => output, { timeout: 15_000, interval: 250 }).toContain('release 10.95.0.50');
  });
});
