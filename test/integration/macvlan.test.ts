// macvlan driver against the real kernel: two netns "hosts" joined by a veth
// wire, tsnet acting in host A. Asserts links, flags, routes and packets, and
// that refused requests leave kernel and state as they were.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, createVethPair, deleteNetns, execInNetns, ipIn, netnsPath, newRunId } from '../harness/index.js';
import { linkIn, promiscFlag, routesIn, tsnetLinks } from './link-reads.js';
import { NetnsPlugin } from './netns-plugin.js';

const id = newRunId();
const HOST_A = `${id}a`;
const HOST_B = `${id}b`;
const CONTAINER = `${id}c`;
const WIRE = 'wire';
const PEER_B = '10.61.0.200';

const netId = (n: number) => n.toString(16).padStart(2, '0').repeat(32);
const epId = (n: number) => `e${n.toString(16).padStart(2, '0')}`.padEnd(64, 'f');

function createNetwork(p: NetnsPlugin, n: number, generic: Record<string, string>, subnet = '10.61.0') {
  return p.post('NetworkDriver.CreateNetwork', {
    NetworkID: netId(n),
    Options: { 'com.docker.network.enable_ipv6': false, 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }],
    IPv6Data: [],
  });
}

const createEndpoint = (p: NetnsPlugin, n: number, ep: number, address: string) =>
  p.post('NetworkDriver.CreateEndpoint', { NetworkID: netId(n), EndpointID: epId(ep), Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: {} });

const ping = async (netns: string, address: string) => (await execInNetns(netns, ['busybox', 'ping', '-c', '1', '-W', '2', address])).exitCode;

const cleanup = new CleanupStack();

/** A tsnet acting in host A, closed with the run. */
async function startTsnet(): Promise<NetnsPlugin> {
  const tsnet = await new NetnsPlugin(HOST_A).start();
  cleanup.defer('close tsnet', () => tsnet.close());
  return tsnet;
}

beforeAll(async () => {
  for (const ns of [HOST_A, HOST_B, CONTAINER]) {
    await createNetns(ns);
    cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
  }
  await createVethPair({ netns: HOST_A, name: WIRE }, { netns: HOST_B, name: WIRE, address: `${PEER_B}/24` });
});

afterAll(() => cleanup.run());

describe('macvlan network on a veth parent', () => {
  let tsnet: NetnsPlugin;
  const shim = `tss${netId(1).slice(0, 12)}`;
  const link = `tsm${epId(1).slice(0, 12)}`;

  beforeAll(async () => {
    tsnet = await startTsnet();
  });

  it('holds the parent promiscuous and creates the host shim', async () => {
    expect(await promiscFlag(HOST_A, WIRE)).toBe(false);
    await createNetwork(tsnet, 1, { parent: WIRE, 'tsnet.promisc': 'on', 'tsnet.host_shim': '10.61.0.250' }).expect(200, {});
    expect(await promiscFlag(HOST_A, WIRE)).toBe(true);
    const shimLink = await linkIn(HOST_A, shim);
    expect(shimLink?.linkinfo?.info_kind).toBe('macvlan');
    expect(shimLink?.linkinfo?.info_data?.mode).toBe('bridge');
    expect(shimLink?.link).toBe(WIRE);
    const addresses = (await ipIn(HOST_A, ['-4', '-o', 'address', 'show', 'dev', shim])).stdout;
    expect(addresses).toContain('10.61.0.250/32');
  });

  it('creates the endpoint link with the MAC it returns, the parent MTU and a shim route', async () => {
    const res = await createEndpoint(tsnet, 1, 1, '10.61.0.10/24').expect(200);
    expect(res.body).toEqual({ Interface: { MacAddress: '02:42:0a:3d:00:0a' } });
    const created = await linkIn(HOST_A, link);
    expect(created?.address).toBe('02:42:0a:3d:00:0a');
    expect(created?.linkinfo?.info_data?.mode).toBe('bridge');
    expect(created?.mtu).toBe((await linkIn(HOST_A, WIRE))?.mtu);
    expect(await routesIn(HOST_A)).toContain(`10.61.0.10 ${shim}`);
    const join = await tsnet.post('NetworkDriver.Join', { NetworkID: netId(1), EndpointID: epId(1), SandboxKey: netnsPath(CONTAINER), Options: {} }).expect(200);
    expect(join.body).toEqual({ InterfaceName: { SrcName: link, DstPrefix: 'eth' }, Gateway: '10.61.0.1' });
  });

  it('carries packets to the other host and, through the shim, to its own host', async () => {
    // What dockerd does with SrcName: move it into the sandbox and configure it.
    await ipIn(HOST_A, ['link', 'set', 'dev', link, 'netns', CONTAINER]);
    await ipIn(CONTAINER, ['address', 'add', '10.61.0.10/24', 'dev', link]);
    await ipIn(CONTAINER, ['link', 'set', 'dev', link, 'up']);
    expect(await ping(HOST_B, '10.61.0.10')).toBe(0);
    expect(await ping(HOST_A, '10.61.0.10')).toBe(0);
    expect(await ping(CONTAINER, '10.61.0.250')).toBe(0);
  });

  it('restores the shim and its routes after a crash and a lost shim, keeping the promisc hold and its MAC', async () => {
    const mac = (await linkIn(HOST_A, shim))?.address;
    expect(mac).toBe('02:42:0a:3d:00:fa');
    await ipIn(HOST_A, ['link', 'del', 'dev', shim]);
    expect(await ping(HOST_A, '10.61.0.10')).not.toBe(0);
    await tsnet.restart();
    expect((await linkIn(HOST_A, shim))?.address).toBe(mac);
    // The container's neighbour entry for the shim (from the ping before) is still right: it reaches the shim at once.
    expect(await ping(CONTAINER, '10.61.0.250')).toBe(0);
    expect(await routesIn(HOST_A)).toContain(`10.61.0.10 ${shim}`);
    expect(await promiscFlag(HOST_A, WIRE)).toBe(true);
    expect(await ping(HOST_A, '10.61.0.10')).toBe(0);
  });

  it('removes the route with the endpoint, and shim and promisc with the network', async () => {
    await ipIn(CONTAINER, ['link', 'set', 'dev', link, 'netns', HOST_A]);
    await tsnet.post('NetworkDriver.DeleteEndpoint', { NetworkID: netId(1), EndpointID: epId(1) }).expect(200, {});
    expect(await linkIn(HOST_A, link)).toBeUndefined();
    expect(await routesIn(HOST_A)).not.toContain(`10.61.0.10 ${shim}`);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(1) }).expect(200, {});
    expect(await promiscFlag(HOST_A, WIRE)).toBe(false);
    expect(await tsnetLinks(HOST_A)).toEqual([]);
    expect(tsnet.plugin.networks.listNetworks()).toEqual([]);
  });
});

describe('promisc holds shared by networks on one parent', () => {
  it('stays on until the last holder goes, then returns to off', async () => {
    const tsnet = await startTsnet();
    await createNetwork(tsnet, 2, { parent: WIRE, 'tsnet.promisc': 'on' }, '10.62.0').expect(200);
    await createNetwork(tsnet, 3, { parent: WIRE, 'tsnet.promisc': 'on' }, '10.63.0').expect(200);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(2) }).expect(200);
    expect(await promiscFlag(HOST_A, WIRE)).toBe(true);
    // A restart in between: the original setting comes from the stored networks.
    await tsnet.restart();
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(3) }).expect(200);
    expect(await promiscFlag(HOST_A, WIRE)).toBe(false);
  });

  it('leaves a parent that was promiscuous before promiscuous', async () => {
    await ipIn(HOST_A, ['link', 'set', 'dev', WIRE, 'promisc', 'on']);
    const tsnet = await startTsnet();
    await createNetwork(tsnet, 4, { parent: WIRE, 'tsnet.promisc': 'on' }).expect(200);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(4) }).expect(200);
    expect(await promiscFlag(HOST_A, WIRE)).toBe(true);
    await ipIn(HOST_A, ['link', 'set', 'dev', WIRE, 'promisc', 'off']);
  });
});

describe('macvlan_mode=private', () => {
  it('isolates two endpoints on one parent, which bridge mode connects', async () => {
    const tsnet = await startTsnet();
    const reachable = async (n: number, mode: string, subnet: string) => {
      await createNetwork(tsnet, n, { parent: WIRE, macvlan_mode: mode }, subnet).expect(200);
      for (const ep of [1, 2]) {
        await createEndpoint(tsnet, n, n * 10 + ep, `${subnet}.${ep + 10}/24`).expect(200);
        const ns = `${id}${n}${ep}`;
        await createNetns(ns);
        cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
        const name = `tsm${epId(n * 10 + ep).slice(0, 12)}`;
        expect((await linkIn(HOST_A, name))?.linkinfo?.info_data?.mode).toBe(mode);
        await ipIn(HOST_A, ['link', 'set', 'dev', name, 'netns', ns]);
        await ipIn(ns, ['address', 'add', `${subnet}.${ep + 10}/24`, 'dev', name]);
        await ipIn(ns, ['link', 'set', 'dev', name, 'up']);
      }
      return (await ping(`${id}${n}1`, `${subnet}.12`)) === 0;
    };
    expect(await reachable(5, 'bridge', '10.65.0')).toBe(true);
    expect(await reachable(6, 'private', '10.66.0')).toBe(false);
  });
});

describe('refused options', () => {
  const GW = '10.70.0.1';
  const existingShim = `tss${netId(7).slice(0, 12)}`;
  /** [what, -o options, the option the error must name] */
  const CASES: Array<[string, Record<string, string>, string]> = [
    ['VLAN id 0 as a suffix', { parent: `${WIRE}.0` }, 'parent'],
    ['VLAN id 4095 as a suffix', { parent: `${WIRE}.4095` }, 'parent'],
    ['VLAN id 0', { parent: WIRE, 'tsnet.vlan': '0' }, 'tsnet.vlan'],
    ['VLAN id 4095', { parent: WIRE, 'tsnet.vlan': '4095' }, 'tsnet.vlan'],
    ['a non-numeric VLAN id', { parent: WIRE, 'tsnet.vlan': 'ten' }, 'tsnet.vlan'],
    ['a VLAN id on a parent that names one', { parent: `${WIRE}.10`, 'tsnet.vlan': '20' }, 'tsnet.vlan'],
    ['a VLAN name over 15 bytes', { parent: 'abcdefghijk', 'tsnet.vlan': '4000' }, 'tsnet.vlan'],
    ['a parent with a space', { parent: 'wi re' }, 'parent'],
    ['a parent with a slash', { parent: 'wi/re' }, 'parent'],
    ['a parent with shell metacharacters', { parent: 'wire;reboot' }, 'parent'],
    ['a parent with a command substitution', { parent: '$(reboot)' }, 'parent'],
    ['a parent over 15 bytes', { parent: 'wire-much-too-long' }, 'parent'],
    ['the loopback parent', { parent: 'lo' }, 'parent'],
    ['a VLAN of the loopback', { parent: 'lo.10' }, 'parent'],
    ['a parent that does not exist', { parent: 'nosuch0' }, 'parent'],
    ['a VLAN whose base does not exist', { parent: 'nosuch0.10' }, 'parent'],
    ['macvlan mode without a parent', { 'tsnet.mode': 'macvlan' }, 'parent'],
    ['an unknown macvlan_mode', { parent: WIRE, macvlan_mode: 'bridged' }, 'macvlan_mode'],
    ['a host shim outside the subnet', { parent: WIRE, 'tsnet.host_shim': '10.99.0.5' }, 'tsnet.host_shim'],
    ['a host shim equal to the gateway', { parent: WIRE, 'tsnet.host_shim': GW }, 'tsnet.host_shim'],
    ['a host shim that is not an address', { parent: WIRE, 'tsnet.host_shim': 'host' }, 'tsnet.host_shim'],
    ['a host shim with private mode', { parent: WIRE, macvlan_mode: 'private', 'tsnet.host_shim': '10.70.0.9' }, 'tsnet.host_shim'],
    ['promisc=yes', { parent: WIRE, 'tsnet.promisc': 'yes' }, 'tsnet.promisc'],
    ['promisc=true', { parent: WIRE, 'tsnet.promisc': 'true' }, 'tsnet.promisc'],
    ['a parent that is another network\'s host shim', { parent: existingShim }, 'parent'],
    ['an MTU above the parent\'s', { parent: WIRE, 'com.docker.network.driver.mtu': '9000' }, 'com.docker.network.driver.mtu'],
    ['an unknown tsnet option', { parent: WIRE, 'tsnet.colour': 'blue' }, 'tsnet.colour'],
  ];
  let tsnet: NetnsPlugin;

  /** What a refused request must leave as it was: stored networks and host A's links and routes. */
  const snapshot = async () => JSON.stringify([tsnet.plugin.networks.listNetworks(), (await ipIn(HOST_A, ['-d', 'link', 'show'])).stdout, await routesIn(HOST_A)]);

  beforeAll(async () => {
    tsnet = await startTsnet();
    await createNetwork(tsnet, 7, { parent: WIRE, 'tsnet.host_shim': '10.71.0.250' }, '10.71.0').expect(200);
  });

  it.each(CASES)('refuses %s, naming the option, changing nothing', async (_what, generic, option) => {
    const before = await snapshot();
    const res = await createNetwork(tsnet, 8, generic, '10.70.0').expect(500);
    expect(res.body.Err).toMatch(new RegExp(`^${option.replace(/\./g, '\\.')}: `));
    expect(await snapshot()).toBe(before);
  });

  it('refuses a subnet that overlaps another network on the same parent', async () => {
    const before = await snapshot();
    const res = await createNetwork(tsnet, 8, { parent: WIRE }, '10.71.0').expect(500);
    expect(res.body.Err).toMatch(/^parent: 10\.71\.0\.0\/24 overlaps/);
    expect(await snapshot()).toBe(before);
  });
});

describe('an endpoint whose host-shim route cannot be made', () => {
  it('leaves no macvlan link behind and names the shim, not the parent', async () => {
    const tsnet = await startTsnet();
    await createNetwork(tsnet, 9, { parent: WIRE, 'tsnet.host_shim': '10.72.0.250' }, '10.72.0').expect(200);
    // Someone deleted the shim under tsnet: the /32 route has nowhere to go.
    await ipIn(HOST_A, ['link', 'del', 'dev', `tss${netId(9).slice(0, 12)}`]);
    const res = await createEndpoint(tsnet, 9, 9, '10.72.0.10/24').expect(500);
    expect(res.body.Err).toMatch(/^tsnet\.host_shim: /);
    expect(res.body.Err).not.toMatch(/parent interface/);
    expect(await linkIn(HOST_A, `tsm${epId(9).slice(0, 12)}`)).toBeUndefined();
    expect(tsnet.plugin.networks.listEndpoints()).toEqual([]);
    await tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: netId(9) }).expect(200);
  });
});
