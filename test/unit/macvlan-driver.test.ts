// Command plans of the macvlan driver: which ip(8) lines run, in how many
// processes, and what a kernel without 8021q makes of a VLAN parent.
import { describe, expect, it } from 'vitest';
import { MacvlanDriver } from '../../drivers/macvlan/macvlan-driver.js';
import type { MacvlanConfig } from '../../drivers/macvlan/options.js';
import type { NetworkRecord, NetworkSpec } from '../../drivers/model.js';
import { CommandError, Ip, RecordingRunner } from '../../src/sys/index.js';

const NET = 'a'.repeat(64);
const EP = 'e'.repeat(64);
const WIRE = JSON.stringify([{ ifindex: 2, ifname: 'wire', mtu: 1500, flags: ['BROADCAST', 'UP'] }]);

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

function fixture() {
  const runner = hostWithWire();
  return { runner, driver: new MacvlanDriver(new Ip(runner), runner) };
}

async function network(driver: MacvlanDriver, options: Record<string, string>, mtu?: number): Promise<NetworkRecord<MacvlanConfig>> {
  const s = { ...spec(options), ...(mtu ? { mtu } : {}) };
  return { ...s, kind: 'macvlan', config: await driver.prepareNetwork(s, []) };
}

const writes = (runner: RecordingRunner) => runner.lines().filter((line) => !line.startsWith('ip -json'));

describe('macvlan driver command plans', () => {
  it('creates an endpoint with no read: the link with its MAC and mode, then its shim route', async () => {
    const { runner, driver } = fixture();
    const net = await network(driver, { parent: 'wire', 'tsnet.host_shim': '10.61.0.250' }, 1400);
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
    const net = await network(driver, { parent: 'wire', 'tsnet.vlan': '10', 'tsnet.promisc': 'on' });
    expect(net.config).toMatchObject({ parent: 'wire.10', vlan: { base: 'wire', id: 10, created: true }, promisc: [{ iface: 'wire.10', wasOn: false }, { iface: 'wire', wasOn: false }] });
    await driver.createNetwork(net, () => []);
    expect(writes(runner)).toEqual([
      'ip -batch -\nlink add link wire name wire.10 type vlan id 10\nlink set dev wire.10 up',
      'ip -batch -\nlink set dev wire.10 promisc on\nlink set dev wire promisc on',
    ]);
  });

  it('names the option when the kernel cannot make the VLAN, and leaves nothing behind', async () => {
    const failing = hostWithWire(new RecordingRunner().reply('ip -batch -', new CommandError('ip -batch -', 1, 'Error: Unknown device type.')));
    const noVlanDriver = new MacvlanDriver(new Ip(failing), failing);
    const net = await network(noVlanDriver, { parent: 'wire.10' });
    await expect(noVlanDriver.createNetwork(net, () => [])).rejects.toThrow(/^parent: cannot create VLAN interface wire\.10 on wire \(does the kernel have 8021q\?\): Error: Unknown device type\.$/);
    // The rollback deletes only what tsnet would have owned: the subinterface.
    expect(writes(failing)).toEqual(['ip -batch -\nlink add link wire name wire.10 type vlan id 10\nlink set dev wire.10 up', 'ip -batch -\nlink del dev wire.10']);
  });
});
