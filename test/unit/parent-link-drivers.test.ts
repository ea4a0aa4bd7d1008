// Command plans of the macvlan driver: which ip(8) lines run, in how many
// processes, and what a kernel without 8021q makes of a VLAN parent.
import { describe, expect, it } from 'vitest';
import { MacvlanDriver } from '../../drivers/macvlan/macvlan-driver.js';
import { IpvlanDriver } from '../../drivers/ipvlan/ipvlan-driver.js';
import type { IpvlanConfig } from '../../drivers/ipvlan/options.js';
import { PEER_ROUTE_PROTO, PeerRoutes } from '../../drivers/ipvlan/peer-routes.js';
import type { MacvlanConfig } from '../../drivers/macvlan/options.js';
import { SharedParent } from '../../drivers/parent/shared-parent.js';
import type { NetworkRecord, NetworkSpec } from '../../drivers/model.js';
import { CommandError, Ip, RecordingRunner } from '../../src/sys/index.js';

const NET = 'a'.repeat(64);
const EP = 'e'.repeat(64);
const WIRE_MAC = '52:54:00:12:34:56';
const WIRE = JSON.stringify([{ ifindex: 2, ifname: 'wire', mtu: 1500, flags: ['BROADCAST', 'UP'], address: WIRE_MAC }]);

const spec = (options: Record<string, string>): NetworkSpec => ({
  id: NET,
  internal: false,
  ipv6: false,
  ipv4: [{ pool: '10.61.0.0/24', gateway: '10.61.0.1', aux: {} }],
  ipv6Subnets: [],
  ifacePrefix: 'eth',
  dns: true,
  options,
});

/** A host with `wire` and nothing else (replies match by prefix, so `wire.` first). */
function hostWithWire(runner = new RecordingRunner()): RecordingRunner {
  const missing = new CommandError('ip link show', 1, 'Device "x" does not exist.');
  return runner.reply('ip -json -details link show dev wire.', missing).reply('ip -json -details link show dev wire', WIRE).reply('ip -json -details link show dev', missing);
}

const parts = (runner: RecordingRunner) => ({ ip: new Ip(runner), runner, shared: new SharedParent(new Ip(runner)) });
const macvlanDriver = (runner: RecordingRunner) => new MacvlanDriver(parts(runner));

function fixture() {
  const runner = hostWithWire();
  return { runner, driver: macvlanDriver(runner) };
}

async function network<C>(driver: { kind: 'macvlan' | 'ipvlan'; prepareNetwork(s: NetworkSpec, others: NetworkRecord[]): Promise<C> }, options: Record<string, string>, mtu?: number, others: NetworkRecord[] = [], id = NET): Promise<NetworkRecord<C>> {
  const s = { ...spec(options), id, ...(mtu ? { mtu } : {}) };
  return { ...s, kind: driver.kind, config: await driver.prepareNetwork(s, others) };
}

const writes = (runner: RecordingRunner) => runner.lines().filter((line) => !line.startsWith('ip -json'));

describe('macvlan driver command plans', () => {
  it('creates an endpoint with no read: the link with its MAC and mode, then its shim route', async () => {
    const { runner, driver } = fixture();
    const net = await network<MacvlanConfig>(driver, { parent: 'wire', 'tsnet.host_shim': '10.61.0.250' }, 1400);
    const before = runner.commands.length;
    const state = await driver.createEndpoint(net, { id: EP, networkId: NET, address: '10.61.0.10/24', mac: '02:42:0a:3d:00:0a', portBindings: [] });
    expect(state).toEqual({ link: 'tsmeeeeeeeeeeee' });
    // Two requests to the daemon's long-lived ip session (no program start): a route that fails must take the link back.
    expect(runner.lines().slice(before)).toEqual([
      'ip -batch -\nlink add tsmeeeeeeeeeeee link wire address 02:42:0a:3d:00:0a mtu 1400 type macvlan mode bridge',
      `ip -batch -\nroute replace 10.61.0.10/32 dev tss${NET.slice(0, 12)}`,
    ]);
  });

  it('refuses an endpoint given the host shim\'s address by another IPAM, before any link is made', async () => {
    const { runner, driver } = fixture();
    const net = await network(driver, { parent: 'wire', 'tsnet.host_shim': '10.61.0.2' });
    const before = runner.commands.length;
    await expect(driver.createEndpoint(net, { id: EP, networkId: NET, address: '10.61.0.2/24', mac: '02:42:0a:3d:00:02', portBindings: [] })).rejects.toThrow(/^Address: 10\.61\.0\.2 is the host shim's address \(tsnet\.host_shim\)/);
    expect(runner.lines().slice(before)).toEqual([]);
  });

  it('creates a missing VLAN parent, brings it up, then holds promisc on it and its base', async () => {
    const { runner, driver } = fixture();
    const net = await network<MacvlanConfig>(driver, { parent: 'wire', 'tsnet.vlan': '10', 'tsnet.promisc': 'on' });
    expect(net.config).toMatchObject({ parent: 'wire.10', vlan: { base: 'wire', id: 10, created: true }, promisc: [{ iface: 'wire.10', wasOn: false }, { iface: 'wire', wasOn: false }] });
    await driver.createNetwork(net, () => []);
    expect(writes(runner)).toEqual([
      'ip -batch -\nlink add link wire name wire.10 type vlan id 10\nlink set dev wire.10 up',
      'ip -batch -\nlink set dev wire.10 promisc on\nlink set dev wire promisc on',
    ]);
  });

  it('names the option when the kernel cannot make the VLAN, and leaves nothing behind', async () => {
    const failing = hostWithWire(new RecordingRunner().reply('ip -batch -', new CommandError('ip -batch -', 1, 'Error: Unknown device type.')));
    const noVlanDriver = macvlanDriver(failing);
    const net = await network(noVlanDriver, { parent: 'wire.10' });
    await expect(noVlanDriver.createNetwork(net, () => [])).rejects.toThrow(/^parent: cannot create VLAN interface wire\.10 on wire \(does the kernel have 8021q\?\): Error: Unknown device type\.$/);
    // The rollback deletes only what tsnet would have owned: the subinterface.
    expect(writes(failing)).toEqual(['ip -batch -\nlink add link wire name wire.10 type vlan id 10\nlink set dev wire.10 up', 'ip -batch -\nlink del dev wire.10']);
  });
});

describe('ipvlan driver', () => {
  const ipvlan = () => {
    const runner = hostWithWire();
    return { runner, driver: new IpvlanDriver(parts(runner)) };
  };
  const endpoint = { id: EP, networkId: NET, address: '10.61.0.10/24', mac: WIRE_MAC, portBindings: [] };

  it('creates children with no MAC of their own, in the network\'s mode and flag, and the shim the same way', async () => {
    const { runner, driver } = ipvlan();
    const net = await network<IpvlanConfig>(driver, { parent: 'wire', ipvlan_mode: 'l3', 'tsnet.host_shim': '10.61.0.250' }, 1400);
    expect(net.config).toMatchObject({ parent: 'wire', mode: 'l3', flag: 'bridge', parentMac: WIRE_MAC });
    expect(driver.sharedMac(net)).toBe(WIRE_MAC);
    await driver.createNetwork(net, () => []);
    await driver.createEndpoint(net, endpoint);
    expect(writes(runner)).toEqual([
      `ip -batch -\nlink add tss${NET.slice(0, 12)} link wire mtu 1400 type ipvlan mode l3 bridge\naddress replace 10.61.0.250/32 dev tss${NET.slice(0, 12)}\nlink set dev tss${NET.slice(0, 12)} up`,
      'ip -batch -\nlink add tsmeeeeeeeeeeee link wire mtu 1400 type ipvlan mode l3 bridge',
      `ip -batch -\nroute replace 10.61.0.10/32 dev tss${NET.slice(0, 12)}`,
    ]);
  });

  it('answers Join in l3 with a connected default route and no gateway, in l2 with the gateway, internal with neither', async () => {
    const { driver } = ipvlan();
    const joined = { ...endpoint, state: { link: 'tsmeeeeeeeeeeee' } };
    const l3 = await network<IpvlanConfig>(driver, { parent: 'wire', ipvlan_mode: 'l3s' });
    expect(driver.join(l3, joined)).toEqual({ srcName: 'tsmeeeeeeeeeeee', staticRoutes: [{ destination: '0.0.0.0/0', routeType: 1 }], disableGatewayService: true });
    expect(driver.join({ ...l3, ipv6: true }, joined).staticRoutes).toEqual([{ destination: '0.0.0.0/0', routeType: 1 }, { destination: '::/0', routeType: 1 }]);
    expect(driver.join({ ...l3, internal: true }, joined)).toEqual({ srcName: 'tsmeeeeeeeeeeee', disableGatewayService: true });
    const l2 = await network<IpvlanConfig>(driver, { parent: 'wire' });
    expect(driver.join(l2, joined)).toEqual({ srcName: 'tsmeeeeeeeeeeee', gateway: '10.61.0.1' });
  });

  it('refuses what the kernel or the wire cannot do, naming the option', async () => {
    const { driver } = ipvlan();
    const refused = (options: Record<string, string>, others: NetworkRecord[] = [], s = spec(options)) => driver.prepareNetwork({ ...s, id: 'b'.repeat(64) }, others);
    const l2 = await network<IpvlanConfig>(driver, { parent: 'wire' });
    await expect(refused({ parent: 'wire', ipvlan_mode: 'l3' }, [l2])).rejects.toThrow(/^ipvlan_mode: wire carries ipvlan network aaaaaaaaaaaa in l2 bridge; the kernel has one ipvlan mode and flag per parent/);
    await expect(refused({ parent: 'wire', ipvlan_flag: 'private' }, [l2])).rejects.toThrow(/^ipvlan_flag: wire carries ipvlan network aaaaaaaaaaaa in l2 bridge/);
    await expect(refused({ parent: 'wire', ipvlan_mode: 'l4' })).rejects.toThrow(/^ipvlan_mode: "l4" is not one of l2, l3, l3s$/);
    await expect(refused({ parent: 'wire', ipvlan_flag: 'hairpin' })).rejects.toThrow(/^ipvlan_flag: "hairpin" is not one of bridge, private, vepa$/);
    await expect(refused({ parent: 'wire', ipvlan_flag: 'private', 'tsnet.host_shim': '10.61.0.250' })).rejects.toThrow(/^tsnet.host_shim: needs ipvlan_flag=bridge, not private$/);
    await expect(refused({ parent: 'wire', ipvlan_mode: 'l3', 'tsnet.arp_probe': 'on' })).rejects.toThrow(/^tsnet.arp_probe: needs ipvlan_mode=l2/);
    const chosen = spec({ parent: 'wire', ipvlan_mode: 'l3' });
    await expect(refused({}, [], { ...chosen, ipv4: [{ ...chosen.ipv4[0]!, gatewayChosen: true }] })).rejects.toThrow(/^IPv4Data\.0\.Gateway: ipvlan_mode=l3 has no gateway on the wire/);
    await expect(refused({ parent: 'nosuch' })).rejects.toThrow(/^parent: interface nosuch does not exist/);
    await expect(refused({ parent: `tsbr-${'c'.repeat(10)}` })).rejects.toThrow(/^parent: tsbr-cccccccccc is a link tsnet made for one of its networks, not a parent$/);
    await expect(refused({})).rejects.toThrow(/^parent: ipvlan networks need a parent interface/);
    const mac = await network<MacvlanConfig>(macvlanDriver(hostWithWire()), { parent: 'wire' });
    await expect(refused({ parent: 'wire' }, [mac])).rejects.toThrow(/^parent: wire is the parent of macvlan network aaaaaaaaaaaa; a link carries macvlan or ipvlan children, not both$/);
  });
});

describe('peer routes (tsnet.routes)', () => {
  const ROUTES = JSON.stringify([
    { dst: '10.80.0.7', gateway: '10.176.0.12', dev: 'wire', protocol: PEER_ROUTE_PROTO, flags: [] },
    { dst: '10.90.0.7', gateway: '10.176.0.12', dev: 'wire', protocol: PEER_ROUTE_PROTO, flags: [] },
    { dst: '10.80.0.9', gateway: '10.176.0.1', dev: 'wire', protocol: 'static', flags: [] },
  ]);

  it('adopts only its own routes in its subnet, then writes only the difference', async () => {
    const runner = new RecordingRunner().reply('ip -json -4 route show', ROUTES);
    const routes = new PeerRoutes(new Ip(runner), 'wire', '10.80.0.0/24');
    await routes.adoptKernel();
    const changed = await routes.set([
      { ip: '10.80.0.8', mac: WIRE_MAC, host: '10.176.0.13' },
      { ip: '10.80.0.6', mac: WIRE_MAC, host: '10.176.0.12' },
    ]);
    expect(changed).toEqual({ written: 2, removed: 1 });
    // 10.90.0.7 is another network's, 10.80.0.9 the user's: neither is touched.
    expect(writes(runner)).toEqual([
      `ip -batch -\nroute del 10.80.0.7/32 dev wire proto ${PEER_ROUTE_PROTO}`,
      `ip -batch -\nroute replace 10.80.0.8/32 via 10.176.0.13 dev wire proto ${PEER_ROUTE_PROTO}\nroute replace 10.80.0.6/32 via 10.176.0.12 dev wire proto ${PEER_ROUTE_PROTO}`,
    ]);
    expect(await routes.set([{ ip: '10.80.0.8', mac: WIRE_MAC, host: '10.176.0.13' }, { ip: '10.80.0.6', mac: WIRE_MAC, host: '10.176.0.12' }])).toEqual({ written: 0, removed: 0 });
  });
});
