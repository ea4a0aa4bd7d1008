import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, execInNetnsOk, ipIn } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const hex = () => randomBytes(32).toString('hex');
const netns = `tsit${randomBytes(3).toString('hex')}`;

async function links(): Promise<Array<{ ifname: string; mtu: number; master?: string; flags: string[]; address: string }>> {
  return JSON.parse((await ipIn(netns, ['-json', 'link', 'show'])).stdout);
}

async function addresses(dev: string): Promise<string[]> {
  const [entry] = JSON.parse((await ipIn(netns, ['-json', 'address', 'show', 'dev', dev])).stdout);
  return entry.addr_info.filter((a: { scope: string }) => a.scope === 'global').map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`);
}

const routeLocalnet = async (dev: string) => (await execInNetnsOk(netns, ['sysctl', '-n', `net/ipv4/conf/${dev}/route_localnet`])).stdout;

const createNetwork = (id: string, pool: string, gateway: string, generic: Record<string, string> = {}, ipv6?: { pool: string; gateway: string }) => ({
  NetworkID: id,
  Options: { 'com.docker.network.enable_ipv6': Boolean(ipv6), 'com.docker.network.generic': generic },
  IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: pool, Gateway: gateway }],
  IPv6Data: ipv6 ? [{ AddressSpace: 'LocalDefault', Pool: ipv6.pool, Gateway: ipv6.gateway }] : [],
});

describe('bridge networks on a real kernel', () => {
  const tsnet = new NetnsPlugin(netns);

  beforeAll(async () => {
    await createNetns(netns);
    await tsnet.start();
  });
  afterAll(async () => {
    await tsnet.close();
    await deleteNetns(netns);
  });

  it('creates the bridge with gateway and MTU, a veth per endpoint, and removes them again', async () => {
    const net = hex();
    const ep = hex();
    const bridge = `tsbr-${net.slice(0, 10)}`;
    expect((await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.77.0.0/24', '10.77.0.1/24', { 'com.docker.network.driver.mtu': '1400' }, { pool: 'fd77::/64', gateway: 'fd77::1/64' }))).status).toBe(200);
    const br = (await links()).find((l) => l.ifname === bridge);
    expect(br).toMatchObject({ mtu: 1400 });
    expect(br!.flags).toContain('UP');
    expect(await addresses(bridge)).toEqual(['10.77.0.1/24', 'fd77::1/64']);

    const created = await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: '10.77.0.2/24' }, Options: {} });
    expect(created.body).toEqual({ Interface: { MacAddress: '02:42:0a:4d:00:02' } });
    const host = (await links()).find((l) => l.ifname === `tsv${ep.slice(0, 12)}`);
    expect(host).toMatchObject({ master: bridge, mtu: 1400 });
    // The gateway's MAC is the bridge's own, not the lowest of its ports': it stays when containers come.
    const mac = ['06', ...net.slice(0, 10).match(/../g)!].join(':');
    expect((await links()).find((l) => l.ifname === bridge)!.address).toBe(mac);
    expect((await links()).find((l) => l.ifname === `tsc${ep.slice(0, 12)}`)).toMatchObject({ mtu: 1400 });

    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep });
    // The pair goes in the background (see LinkReaper), before any network is made next.
    await tsnet.plugin.linkReaper.settled();
    expect((await links()).map((l) => l.ifname).filter((n) => n.endsWith(ep.slice(0, 12)))).toEqual([]);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
    await tsnet.plugin.linkReaper.settled();
    expect((await links()).map((l) => l.ifname)).not.toContain(bridge);
  });

  it('deletes the bridges of deleted networks together in the background; a network made meanwhile on the same subnet waits for them', async () => {
    const nets = [hex(), hex(), hex()];
    const bridges = nets.map((net) => `tsbr-${net.slice(0, 10)}`);
    for (const [i, net] of nets.entries()) expect((await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, `10.78.${i}.0/24`, `10.78.${i}.1/24`))).status).toBe(200);
    const ep = hex();
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: nets[0], EndpointID: ep, Interface: { Address: '10.78.0.2/24' }, Options: {} });
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: nets[0], EndpointID: ep });
    for (const net of nets) expect((await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net })).status).toBe(200);
    // A network on the same subnet right away: the old bridges are gone first, the gateway is the new bridge's alone.
    const next = hex();
    expect((await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(next, '10.78.0.0/24', '10.78.0.1/24'))).status).toBe(200);
    const names = (await links()).map((l) => l.ifname);
    for (const bridge of bridges) expect(names).not.toContain(bridge);
    expect(await addresses(`tsbr-${next.slice(0, 10)}`)).toEqual(['10.78.0.1/24']);
    // One route to the subnet, the new bridge's (linkdown: no port yet).
    expect((await ipIn(netns, ['route', 'show', 'match', '10.78.0.1'])).stdout.trim()).toMatch(new RegExp(`^10\\.78\\.0\\.0/24 dev tsbr-${next.slice(0, 10)} proto kernel scope link src 10\\.78\\.0\\.1( linkdown)?$`));
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: next });
  });

  it('adopts a bridge the user made, and leaves it in place on delete', async () => {
    await ipIn(netns, ['link', 'add', 'mybr0', 'type', 'bridge']);
    const net = hex();
    await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.78.0.0/24', '10.78.0.1/24', { 'com.docker.network.bridge.name': 'mybr0' }));
    expect(await addresses('mybr0')).toEqual(['10.78.0.1/24']);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
    expect((await links()).map((l) => l.ifname)).toContain('mybr0');
    expect(await addresses('mybr0')).toEqual([]);
  });

  it('gives an adopted bridge back as it found it: its own addresses and route_localnet stay', async () => {
    // The host's own segment: brx already carries the address that becomes the gateway, and another one.
    await ipIn(netns, ['link', 'add', 'brx', 'type', 'bridge']);
    await ipIn(netns, ['address', 'add', '10.69.9.1/24', 'dev', 'brx']);
    await ipIn(netns, ['address', 'add', '10.69.10.1/24', 'dev', 'brx']);
    const net = hex();
    await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.69.9.0/24', '10.69.9.1/24', { 'com.docker.network.bridge.name': 'brx' }));
    expect(await routeLocalnet('brx')).toBe('1');
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
    expect(await addresses('brx')).toEqual(['10.69.9.1/24', '10.69.10.1/24']);
    // Without the 127/8 guard rule, route_localnet=1 would let the segment reach the host's loopback services.
    expect(await routeLocalnet('brx')).toBe('0');
  });

  it('leaves route_localnet on when the adopted bridge had it on before', async () => {
    await ipIn(netns, ['link', 'add', 'bry', 'type', 'bridge']);
    await execInNetnsOk(netns, ['sysctl', '-q', '-w', 'net/ipv4/conf/bry/route_localnet=1']);
    const net = hex();
    await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.69.11.0/24', '10.69.11.1/24', { 'com.docker.network.bridge.name': 'bry' }));
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
    expect(await routeLocalnet('bry')).toBe('1');
    expect(await addresses('bry')).toEqual([]);
  });

  it('refuses to use a link that is not a bridge as a bridge', async () => {
    await ipIn(netns, ['link', 'add', 'notbr0', 'type', 'veth', 'peer', 'name', 'notbr1']);
    const res = await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(hex(), '10.79.0.0/24', '10.79.0.1/24', { 'com.docker.network.bridge.name': 'notbr0' }));
    expect(res.body).toEqual({ Err: 'com.docker.network.bridge.name: notbr0 exists and is not a bridge' });
  });

  it('recreates a bridge a reboot removed, from state, when it starts', async () => {
    const net = hex();
    const bridge = `tsbr-${net.slice(0, 10)}`;
    await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.80.0.0/24', '10.80.0.1/24'));
    await ipIn(netns, ['link', 'del', bridge]);
    await tsnet.restart();
    expect(await addresses(bridge)).toEqual(['10.80.0.1/24']);
    // The restarted plugin still knows the network: an endpoint attaches with the right gateway.
    const ep = hex();
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: '10.80.0.5/24' }, Options: {} });
    const join = await tsnet.post('NetworkDriver.Join', { NetworkID: net, EndpointID: ep, SandboxKey: '', Options: {} });
    expect(join.body.Gateway).toBe('10.80.0.1');
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: net, EndpointID: ep });
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
  });

  it('replaces a veth pair left over by a crashed attempt of the same endpoint', async () => {
    const net = hex();
    const ep = hex();
    await tsnet.post('NetworkDriver.CreateNetwork', createNetwork(net, '10.81.0.0/24', '10.81.0.1/24'));
    await ipIn(netns, ['link', 'add', `tsv${ep.slice(0, 12)}`, 'type', 'veth', 'peer', 'name', `tsc${ep.slice(0, 12)}`]);
    const res = await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: ep, Interface: { Address: '10.81.0.5/24' }, Options: {} });
    expect(res.status).toBe(200);
    expect((await links()).find((l) => l.ifname === `tsv${ep.slice(0, 12)}`)?.master).toBe(`tsbr-${net.slice(0, 10)}`);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: net });
    await tsnet.plugin.linkReaper.settled();
    expect((await links()).map((l) => l.ifname).filter((n) => n.includes(ep.slice(0, 12)))).toEqual([]);
  });
});
