// DHCP on macvlan with a VLAN subinterface as parent, on a real 802.1Q
// kernel (the guest's; the CI host has no 8021q). Two simulated hosts A and
// B (each a plugin programming its netns) and a LAN server S (dnsmasq on its
// VLAN 50) share one switch; tsnet creates wire.50 on A and B. Both hosts'
// containers get leases from S over VLAN 50, never the same address, and
// reach S and each other; the lease goes back when the container goes.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, createSwitch, deleteNetns, type DhcpServer, execInNetns, ipIn, netnsPath, plugIntoSwitch, startDhcpServer } from '../harness/index.js';
import { LOCAL_ADDRESS_SPACE } from '../../src/ipam/ipam-service.js';
import { NetnsPlugin } from '../integration/netns-plugin.js';
import { requireVlanKernel, uniq } from './guest.js';

const [SWITCH, SERVER_NS] = [uniq('dsw'), uniq('dsv')];
const HOSTS: readonly [string, string] = [uniq('dha'), uniq('dhb')];
const CONTAINERS: readonly [string, string] = [uniq('dca'), uniq('dcb')];
const SERVER = '10.150.0.1';
const SUBNET = '10.150.0.0/24';
const NET = '5'.repeat(64);
const endpointOf = (i: number) => `e${i}`.padEnd(64, 'f');
const linkOf = (i: number) => `tsm${endpointOf(i).slice(0, 12)}`;

const cleanup = new CleanupStack();
const plugins: NetnsPlugin[] = [];
let server: DhcpServer;

const ping = async (netns: string, address: string) => (await execInNetns(netns, ['busybox', 'ping', '-c', '1', '-W', '3', address])).exitCode;

/** What dockerd does for `docker run` on the DHCP network of host i: address, endpoint, join, the link into the container. */
async function attach(i: 0 | 1, poolId: string): Promise<string> {
  const tsnet = plugins[i]!;
  const granted = await tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: null }).expect(200);
  const address = granted.body.Address as string;
  const created = await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: endpointOf(i), Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} }).expect(200);
  const join = await tsnet.post('NetworkDriver.Join', { NetworkID: NET, EndpointID: endpointOf(i), SandboxKey: netnsPath(CONTAINERS[i]), Options: {} }).expect(200);
  const link = linkOf(i);
  await ipIn(HOSTS[i], ['link', 'set', 'dev', link, 'netns', CONTAINERS[i]]);
  await ipIn(CONTAINERS[i], ['link', 'set', 'dev', link, 'address', (created.body as { Interface: { MacAddress: string } }).Interface.MacAddress]);
  await ipIn(CONTAINERS[i], ['address', 'add', address, 'dev', link]);
  await ipIn(CONTAINERS[i], ['link', 'set', 'dev', link, 'up']);
  await ipIn(CONTAINERS[i], ['route', 'add', 'default', 'via', join.body.Gateway as string]);
  return address.split('/')[0]!;
}

describe('DHCP on a VLAN parent, two hosts and one server (guest kernel)', () => {
  beforeAll(async () => {
    requireVlanKernel();
    await createSwitch(SWITCH);
    cleanup.defer('delete switch', () => deleteNetns(SWITCH));
    for (const ns of [SERVER_NS, ...HOSTS, ...CONTAINERS]) {
      await createNetns(ns);
      cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
    }
    await plugIntoSwitch(SWITCH, { netns: SERVER_NS, ifname: 'wire', port: 'ps' });
    await ipIn(SERVER_NS, ['link', 'add', 'link', 'wire', 'name', 'wire.50', 'type', 'vlan', 'id', '50']);
    await ipIn(SERVER_NS, ['address', 'add', `${SERVER}/24`, 'dev', 'wire.50']);
    await ipIn(SERVER_NS, ['link', 'set', 'dev', 'wire.50', 'up']);
    server = await startDhcpServer({ dir: join('.tmp', 'vm-dhcp', uniq('d')), netns: SERVER_NS, iface: 'wire.50', address: SERVER, range: '10.150.0.100,10.150.0.120', extraArgs: ['--no-ping'] }, cleanup);
    for (const [i, ns] of HOSTS.entries()) {
      await plugIntoSwitch(SWITCH, { netns: ns, ifname: 'wire', port: `p${i}` });
      const tsnet = await new NetnsPlugin(ns).start();
      cleanup.defer(`close tsnet ${i}`, () => tsnet.close());
      plugins.push(tsnet);
    }
  });
  afterAll(() => cleanup.run());

  it('leases distinct addresses to both hosts\' containers over VLAN 50, which reach the server and each other', async () => {
    const addresses: string[] = [];
    for (const [i, tsnet] of plugins.entries()) {
      const pool = await tsnet.post('IpamDriver.RequestPool', { AddressSpace: LOCAL_ADDRESS_SPACE, Pool: SUBNET, SubPool: '', Options: { 'tsnet.dhcp': 'on' }, V6: false }).expect(200);
      const poolId = pool.body.PoolID as string;
      const gateway = await tsnet.post('IpamDriver.RequestAddress', { PoolID: poolId, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } }).expect(200);
      await tsnet.post('NetworkDriver.CreateNetwork', {
        NetworkID: NET,
        Options: { 'com.docker.network.generic': { parent: 'wire.50', 'tsnet.dhcp_hold': '0' } },
        IPv4Data: [{ AddressSpace: LOCAL_ADDRESS_SPACE, Pool: SUBNET, Gateway: gateway.body.Address }],
        IPv6Data: [],
      }).expect(200, {});
      expect((await ipIn(HOSTS[i as 0 | 1], ['-d', 'link', 'show', 'wire.50'])).stdout).toMatch(/vlan protocol 802\.1Q id 50/);
      addresses.push(await attach(i as 0 | 1, poolId));
    }
    expect(new Set(addresses).size).toBe(2);
    for (const address of addresses) expect(server.leases().some((l) => l.address === address)).toBe(true);
    expect(await ping(CONTAINERS[0], SERVER)).toBe(0);
    expect(await ping(CONTAINERS[1], SERVER)).toBe(0);
    expect(await ping(CONTAINERS[0], addresses[1]!)).toBe(0);
  });

  it('gives the lease back when the container goes (no hold here)', async () => {
    const address = plugins[0]!.plugin.ipam.dhcpLeases()[0]!.address;
    const poolId = plugins[0]!.plugin.ipam.dhcpLeases()[0]!.poolId;
    await ipIn(CONTAINERS[0], ['link', 'set', 'dev', linkOf(0), 'netns', HOSTS[0]]);
    await plugins[0]!.post('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: endpointOf(0) }).expect(200);
    await plugins[0]!.post('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: address }).expect(200);
    await expect.poll(() => server.leases().some((l) => l.address === address), { timeout: 30_000, interval: 500 }).toBe(false);
  });
});
