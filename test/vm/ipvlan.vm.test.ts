// tsnet's ipvlan networks against the guest's real kernel (the CI host has
// no ipvlan): L2 with its host shim, L3 behind a router, a VLAN parent, the
// one-mode-per-parent rule, and a restart that lost the shim. Runs INSIDE
// the guest (npm run test:vlan); elsewhere it fails, it never skips.
//
// Host A runs tsnet (NetnsPlugin: the real plugin, programming A's netns).
// A LAN host B sits on A's `wire`; a router R on A's `uplink`. Containers are
// netns of their own that get the links Join names, as dockerd would move them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, createVethPair, deleteNetns, execInNetns, ipIn, netnsPath } from '../harness/index.js';
import { linkIn, tsnetLinks } from '../integration/link-reads.js';
import { NetnsPlugin } from '../integration/netns-plugin.js';
import { requireIpvlanKernel, uniq } from './guest.js';

const [HOST_A, LAN_B, ROUTER] = [uniq('ia'), uniq('ib'), uniq('ir')];
const CONTAINERS = [uniq('c1'), uniq('c2'), uniq('c3'), uniq('c4'), uniq('c5')] as const;
const LAN_HOST = '10.71.0.200';
const ROUTER_ADDRESS = '192.168.71.1';
const A_UPLINK = '192.168.71.2';
const VLAN_HOST = '10.74.0.200';
const LAN_HOST_V6 = 'fd00:71::200';

const netId = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const epId = (n: number) => `e${n.toString(16).padStart(2, '0')}`.padEnd(64, 'f');
const childOf = (ep: number) => `tsm${epId(ep).slice(0, 12)}`;
const shimOf = (n: number) => `tss${netId(n).slice(0, 12)}`;

const cleanup = new CleanupStack();
let tsnet: NetnsPlugin;

function createNetwork(n: number, generic: Record<string, string>, subnet: string) {
  return tsnet.post('NetworkDriver.CreateNetwork', {
    NetworkID: netId(n),
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }],
    IPv6Data: [],
  });
}

function createDualStackNetwork(n: number, generic: Record<string, string>, subnet: string, subnet6: string) {
  return tsnet.post('NetworkDriver.CreateNetwork', {
    NetworkID: netId(n),
    Options: { 'com.docker.network.enable_ipv6': true, 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }],
    IPv6Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet6}/64`, Gateway: `${subnet6}1/64` }],
  });
}

const createEndpoint = (n: number, ep: number, address: string, mac = '') =>
  tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: netId(n), EndpointID: epId(ep), Interface: { Address: address, AddressIPv6: '', MacAddress: mac }, Options: {} });

/** Join, then what dockerd does with the answer: move the link into the container, address it, and add the default route (gateway or connected). */
async function attach(n: number, ep: number, container: string, address: string): Promise<Record<string, unknown>> {
  const join = await tsnet.post('NetworkDriver.Join', { NetworkID: netId(n), EndpointID: epId(ep), SandboxKey: netnsPath(container), Options: {} }).expect(200);
  const body = join.body as { Gateway?: string; StaticRoutes?: Array<{ Destination: string; RouteType: number }> };
  const link = childOf(ep);
  await ipIn(HOST_A, ['link', 'set', 'dev', link, 'netns', container]);
  await ipIn(container, ['address', 'add', address, 'dev', link]);
  await ipIn(container, ['link', 'set', 'dev', link, 'up']);
  if (body.Gateway) await ipIn(container, ['route', 'add', 'default', 'via', body.Gateway]);
  for (const route of body.StaticRoutes ?? []) if (route.RouteType === 1) await ipIn(container, ['route', 'add', route.Destination, 'dev', link]);
  return join.body as Record<string, unknown>;
}

const ping = async (netns: string, address: string) => (await execInNetns(netns, ['busybox', 'ping', '-c', '1', '-W', '3', address])).exitCode;
const macOf = async (netns: string, link: string) => (await linkIn(netns, link))?.address;

describe('ipvlan networks (guest kernel)', () => {
  beforeAll(async () => {
    requireIpvlanKernel();
    for (const ns of [HOST_A, LAN_B, ROUTER, ...CONTAINERS]) {
      await createNetns(ns);
      cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
    }
    await createVethPair({ netns: HOST_A, name: 'wire' }, { netns: LAN_B, name: 'wire', address: `${LAN_HOST}/24` });
    await createVethPair({ netns: HOST_A, name: 'uplink', address: `${A_UPLINK}/24` }, { netns: ROUTER, name: 'uplink', address: `${ROUTER_ADDRESS}/24` });
    // B's VLAN 40, for the subinterface tsnet creates on A.
    await ipIn(LAN_B, ['link', 'add', 'link', 'wire', 'name', 'wire.40', 'type', 'vlan', 'id', '40']);
    await ipIn(LAN_B, ['address', 'add', `${VLAN_HOST}/24`, 'dev', 'wire.40']);
    await ipIn(LAN_B, ['link', 'set', 'dev', 'wire.40', 'up']);
    tsnet = await new NetnsPlugin(HOST_A).start();
    cleanup.defer('close tsnet', () => tsnet.close());
  });
  afterAll(() => cleanup.run());

  it('l2: containers and the host shim share the parent\'s MAC; the LAN host sees that one MAC for all', async () => {
    await createNetwork(1, { parent: 'wire', ipvlan_mode: 'l2', 'tsnet.host_shim': '10.71.0.250' }, '10.71.0').expect(200, {});
    const shim = await linkIn(HOST_A, shimOf(1));
    expect(shim?.linkinfo?.info_kind).toBe('ipvlan');
    const wireMac = await macOf(HOST_A, 'wire');
    expect(shim?.address).toBe(wireMac);
    // dockerd is sent no MAC (it would fail to set one on an ipvlan link), and cannot choose one.
    const created = await createEndpoint(1, 1, '10.71.0.10/24').expect(200);
    expect(created.body).toEqual({});
    const refused = await createEndpoint(1, 9, '10.71.0.19/24', '02:42:0a:47:00:13').expect(500);
    expect(refused.body.Err).toMatch(/^Interface\.MacAddress: ipvlan endpoints have their parent's MAC/);
    expect(await linkIn(HOST_A, childOf(9))).toBeUndefined();
    await createEndpoint(1, 2, '10.71.0.11/24').expect(200, {});
    expect(await attach(1, 1, CONTAINERS[0], '10.71.0.10/24')).toMatchObject({ Gateway: '10.71.0.1' });
    await attach(1, 2, CONTAINERS[1], '10.71.0.11/24');
    expect(await macOf(CONTAINERS[0], childOf(1))).toBe(wireMac);

    expect(await ping(CONTAINERS[0], LAN_HOST)).toBe(0);
    expect(await ping(CONTAINERS[1], LAN_HOST)).toBe(0);
    expect(await ping(CONTAINERS[0], '10.71.0.11')).toBe(0);
    expect(await ping(HOST_A, '10.71.0.10')).toBe(0);
    const neighbours = JSON.parse((await ipIn(LAN_B, ['-json', 'neigh', 'show', 'dev', 'wire'])).stdout) as Array<{ dst: string; lladdr?: string }>;
    const seen = neighbours.filter((n) => n.dst === '10.71.0.10' || n.dst === '10.71.0.11').map((n) => n.lladdr);
    expect(seen).toEqual([wireMac, wireMac]);
  });

  it('l3: a container reaches a host behind the router once the router routes the subnet to this host, with no gateway', async () => {
    await createNetwork(2, { parent: 'uplink', ipvlan_mode: 'l3', 'tsnet.host_shim': '10.72.0.250' }, '10.72.0').expect(200, {});
    await createEndpoint(2, 3, '10.72.0.10/24').expect(200, {});
    expect(await attach(2, 3, CONTAINERS[2], '10.72.0.10/24')).toEqual({
      InterfaceName: { SrcName: childOf(3), DstPrefix: 'eth' },
      StaticRoutes: [{ Destination: '0.0.0.0/0', RouteType: 1 }],
      DisableGatewayService: true,
    });
    // Negative first, on the same path: the router has no way back yet.
    expect(await ping(CONTAINERS[2], ROUTER_ADDRESS)).not.toBe(0);
    await ipIn(ROUTER, ['route', 'add', '10.72.0.0/24', 'via', A_UPLINK]);
    expect(await ping(CONTAINERS[2], ROUTER_ADDRESS)).toBe(0);
    // The router never learnt an address of the subnet on the wire: it routes, it does not ARP.
    expect((await ipIn(ROUTER, ['neigh', 'show', '10.72.0.10'])).stdout.trim()).toBe('');
    expect(await ping(HOST_A, '10.72.0.10')).toBe(0);
  });

  it('keeps one mode and one kind per parent: another mode, or a macvlan, is refused and nothing is made', async () => {
    const before = await tsnetLinks(HOST_A);
    const otherMode = await createNetwork(3, { parent: 'wire', ipvlan_mode: 'l3' }, '10.73.0').expect(500);
    expect(otherMode.body.Err).toMatch(new RegExp(`^ipvlan_mode: wire carries ipvlan network ${netId(1).slice(0, 12)} in l2 bridge`));
    const otherFlag = await createNetwork(3, { parent: 'wire', ipvlan_flag: 'private' }, '10.73.0').expect(500);
    expect(otherFlag.body.Err).toMatch(/^ipvlan_flag: /);
    const macvlan = await createNetwork(3, { parent: 'wire' }, '10.73.0').expect(500);
    expect(macvlan.body.Err).toMatch(new RegExp(`^parent: wire is the parent of ipvlan network ${netId(1).slice(0, 12)}`));
    expect(await tsnetLinks(HOST_A)).toEqual(before);
    // The same mode on the same parent is fine.
    await createNetwork(3, { parent: 'wire', ipvlan_mode: 'l2' }, '10.73.0').expect(200, {});
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(3) }).expect(200, {});
  });

  it('makes the VLAN subinterface it is given as parent, carries tagged traffic on it, and removes it with the network', async () => {
    await createNetwork(4, { parent: 'wire.40', ipvlan_mode: 'l2' }, '10.74.0').expect(200, {});
    expect((await linkIn(HOST_A, 'wire.40'))?.linkinfo?.info_data?.id).toBe(40);
    await createEndpoint(4, 4, '10.74.0.10/24').expect(200, {});
    await attach(4, 4, CONTAINERS[3], '10.74.0.10/24');
    expect(await ping(CONTAINERS[3], VLAN_HOST)).toBe(0);
    await ipIn(CONTAINERS[3], ['link', 'set', 'dev', childOf(4), 'netns', HOST_A]);
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: netId(4), EndpointID: epId(4) }).expect(200, {});
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(4) }).expect(200, {});
    expect(await linkIn(HOST_A, 'wire.40')).toBeUndefined();
  });

  it('carries IPv6 in l2: the container\'s own address and the IPv6 gateway, next to IPv4 on the same parent', async () => {
    await ipIn(LAN_B, ['address', 'add', `${LAN_HOST_V6}/64`, 'dev', 'wire', 'nodad']);
    await createDualStackNetwork(5, { parent: 'wire', ipvlan_mode: 'l2' }, '10.75.0', 'fd00:71::').expect(200, {});
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: netId(5), EndpointID: epId(5), Interface: { Address: '10.75.0.10/24', AddressIPv6: 'fd00:71::10/64', MacAddress: '' }, Options: {} }).expect(200, {});
    expect(await attach(5, 5, CONTAINERS[4], '10.75.0.10/24')).toMatchObject({ Gateway: '10.75.0.1', GatewayIPv6: 'fd00:71::1' });
    await ipIn(CONTAINERS[4], ['-6', 'address', 'add', 'fd00:71::10/64', 'dev', childOf(5), 'nodad']);
    expect((await execInNetns(CONTAINERS[4], ['busybox', 'ping', '-6', '-c', '1', '-W', '3', LAN_HOST_V6])).exitCode).toBe(0);
    // Its link-local address differs from the parent's although the MAC is the same: the kernel derives it per child.
    const linkLocal = async (netns: string, dev: string) => (await ipIn(netns, ['-6', '-o', 'address', 'show', 'dev', dev, 'scope', 'link'])).stdout.match(/fe80::[0-9a-f:]+/)?.[0];
    expect(await linkLocal(CONTAINERS[4], childOf(5))).not.toBe(await linkLocal(HOST_A, 'wire'));
    await ipIn(CONTAINERS[4], ['link', 'set', 'dev', childOf(5), 'netns', HOST_A]);
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: netId(5), EndpointID: epId(5) }).expect(200, {});
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(5) }).expect(200, {});
  });

  it('restores a lost shim as an ipvlan after a restart, and the host reaches its container again', async () => {
    await ipIn(HOST_A, ['link', 'del', 'dev', shimOf(1)]);
    expect(await ping(HOST_A, '10.71.0.10')).not.toBe(0);
    await tsnet.restart();
    expect((await linkIn(HOST_A, shimOf(1)))?.linkinfo?.info_kind).toBe('ipvlan');
    expect(await ping(HOST_A, '10.71.0.10')).toBe(0);
  });

  it('leaves nothing behind when containers and networks go', async () => {
    const containerOf = new Map([[1, CONTAINERS[0]], [2, CONTAINERS[1]], [3, CONTAINERS[2]]]);
    for (const [ep, n] of [[1, 1], [2, 1], [3, 2]] as const) {
      await ipIn(containerOf.get(ep)!, ['link', 'set', 'dev', childOf(ep), 'netns', HOST_A]);
      await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: netId(n), EndpointID: epId(ep) }).expect(200, {});
    }
    for (const n of [1, 2]) await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(n) }).expect(200, {});
    expect(await tsnetLinks(HOST_A)).toEqual([]);
  });

  it('l3s: with the l3 network gone, the parent takes another mode, and its container reaches the router the same way', async () => {
    await createNetwork(6, { parent: 'uplink', ipvlan_mode: 'l3s' }, '10.72.0').expect(200, {});
    await createEndpoint(6, 6, '10.72.0.20/24').expect(200, {});
    expect(await attach(6, 6, CONTAINERS[2], '10.72.0.20/24')).toMatchObject({ StaticRoutes: [{ Destination: '0.0.0.0/0', RouteType: 1 }], DisableGatewayService: true });
    expect((await linkIn(CONTAINERS[2], childOf(6)))?.linkinfo?.info_data?.mode).toBe('l3s');
    expect(await ping(CONTAINERS[2], ROUTER_ADDRESS)).toBe(0);
    await ipIn(CONTAINERS[2], ['link', 'set', 'dev', childOf(6), 'netns', HOST_A]);
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: netId(6), EndpointID: epId(6) }).expect(200, {});
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(6) }).expect(200, {});
    expect(await tsnetLinks(HOST_A)).toEqual([]);
  });
});
