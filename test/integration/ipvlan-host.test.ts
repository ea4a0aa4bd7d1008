// ipvlan on the host kernel: where it has ipvlan, one l2 container reaches a
// LAN host through tsnet's network; where it has none (this CI host), the
// suite says so loudly and points to the guest suite, which runs every
// ipvlan case on a kernel that has it (test/vm/ipvlan*.vm.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, createVethPair, deleteNetns, execInNetns, ipIn, netnsPath, newRunId, run } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const id = newRunId();
const [HOST, LAN, CONTAINER] = [`${id}h`, `${id}l`, `${id}c`];
const NET = '7'.repeat(64);
const EP = 'e7'.padEnd(64, 'f');
const LINK = `tsm${EP.slice(0, 12)}`;

/** Whether this kernel makes an ipvlan link, tried in a netns of the test's own. */
async function kernelHasIpvlan(): Promise<boolean> {
  const probe = `${id}p`;
  await createNetns(probe);
  try {
    await ipIn(probe, ['link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    return (await run('ip', ['-n', probe, 'link', 'add', 'link', 'p0', 'name', 'p2', 'type', 'ipvlan', 'mode', 'l2'])).exitCode === 0;
  } finally {
    await deleteNetns(probe);
  }
}

const hasIpvlan = await kernelHasIpvlan();
if (!hasIpvlan) {
  console.warn(`
######################################################################
SKIPPED: this kernel has no ipvlan, so the host cannot run tsnet's
ipvlan networks. Every ipvlan case runs in the real-kernel guest:
    npm run test:vlan    (test/vm/ipvlan.vm.test.ts, ipvlan-routes.vm.test.ts)
######################################################################`);
}

describe.skipIf(!hasIpvlan)('ipvlan l2 on the host kernel (skipped loudly where it has no ipvlan)', () => {
  const cleanup = new CleanupStack();
  let tsnet: NetnsPlugin;

  beforeAll(async () => {
    for (const ns of [HOST, LAN, CONTAINER]) {
      await createNetns(ns);
      cleanup.defer(`delete netns ${ns}`, () => deleteNetns(ns));
    }
    await createVethPair({ netns: HOST, name: 'wire' }, { netns: LAN, name: 'wire', address: '10.77.0.200/24' });
    tsnet = await new NetnsPlugin(HOST).start();
    cleanup.defer('close tsnet', () => tsnet.close());
  });
  afterAll(() => cleanup.run());

  it('gives a container the parent\'s MAC and reaches a LAN host', async () => {
    await tsnet.post('NetworkDriver.CreateNetwork', {
      NetworkID: NET,
      Options: { 'com.docker.network.generic': { parent: 'wire', ipvlan_mode: 'l2' } },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.77.0.0/24', Gateway: '10.77.0.1/24' }],
      IPv6Data: [],
    }).expect(200, {});
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP, Interface: { Address: '10.77.0.10/24', AddressIPv6: '', MacAddress: '' }, Options: {} }).expect(200, {});
    await tsnet.post('NetworkDriver.Join', { NetworkID: NET, EndpointID: EP, SandboxKey: netnsPath(CONTAINER), Options: {} }).expect(200);
    await ipIn(HOST, ['link', 'set', 'dev', LINK, 'netns', CONTAINER]);
    await ipIn(CONTAINER, ['address', 'add', '10.77.0.10/24', 'dev', LINK]);
    await ipIn(CONTAINER, ['link', 'set', 'dev', LINK, 'up']);
    expect((await execInNetns(CONTAINER, ['busybox', 'ping', '-c', '1', '-W', '3', '10.77.0.200'])).exitCode).toBe(0);
  });
});
