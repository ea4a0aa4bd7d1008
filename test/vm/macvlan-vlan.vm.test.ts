// tsnet's macvlan on real 802.1Q VLANs. Runs INSIDE the guest
// (npm run test:vlan); on a kernel without 8021q it fails, it never skips.
//
// Two simulated hosts A and B, each a netns with its own dockerd and its own
// tsnet (the e2e harness, unchanged, inside the guest), joined by a veth
// "wire". tsnet creates wire.10 and wire.20 on both; containers on VLAN 10
// reach each other across the hosts. Isolation checks use a probe netns whose
// only interface is a macvlan on one of B's links: the target address has no
// other owner, so "no reply" can only mean "the tag did not match", and the
// same probe on B's wire.10 is the positive control.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createDockerHost, createNetns, createVethPair, deleteNetns, type DockerHost, ipIn, TEST_IMAGE } from '../harness/index.js';
import type { LinkInfo } from '../../src/sys/index.js';
import { requireVlanKernel, uniq } from './guest.js';

const WIRE = 'wire';
/**
 * Upper bound per step, not a performance assertion: in the emulated guest every fork is
 * slow, and two dockerds plus two tsnets share one guest CPU (a docker run can
 * take 30 s, the whole file about 8 minutes).
 */
const SLOW_STEP_MS = 600_000;
const PROBE_IP = '10.50.0.99';
const cleanup = new CleanupStack();
let hostA: DockerHost;
let hostB: DockerHost;

async function link(host: DockerHost, name: string): Promise<LinkInfo | undefined> {
  const r = await host.execInHost(['ip', '-json', '-details', 'link', 'show', 'dev', name]);
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as LinkInfo[])[0] : undefined;
}

const vlanId = async (host: DockerHost, name: string) => (await link(host, name))?.linkinfo?.info_data?.id;
const promisc = async (host: DockerHost, name: string) => (await link(host, name))?.flags.includes('PROMISC');

const createNetwork = (host: DockerHost, name: string, subnet: string, ipRange: string, ...options: string[]) =>
  host.dockerOk(['network', 'create', '-d', host.driver, ...options.flatMap((o) => ['-o', o]), '--subnet', subnet, '--ip-range', ipRange, name], { timeoutMs: 120_000 });

const runDetached = (host: DockerHost, name: string, network: string, ip: string) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', network, '--ip', ip, TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 120_000 });

async function ping(host: DockerHost, container: string, address: string): Promise<number> {
  return (await host.execIn(container, ['ping', '-c', '1', '-W', '3', address], { timeoutMs: 60_000 })).exitCode;
}

/** Puts PROBE_IP on a macvlan of `parent` in host B, alone in its own netns; returns the remover. */
async function probeOn(parent: string): Promise<() => Promise<void>> {
  const ns = uniq('p');
  await createNetns(ns);
  await ipIn(hostB.netns, ['link', 'add', 'probe', 'link', parent, 'type', 'macvlan', 'mode', 'bridge']);
  await ipIn(hostB.netns, ['link', 'set', 'dev', 'probe', 'netns', ns]);
  await ipIn(ns, ['address', 'add', `${PROBE_IP}/24`, 'dev', 'probe']);
  await ipIn(ns, ['link', 'set', 'dev', 'probe', 'up']);
  return () => deleteNetns(ns);
}

describe('macvlan on 802.1Q VLANs across two simulated hosts (guest kernel)', { timeout: SLOW_STEP_MS }, () => {
  beforeAll(async () => {
    requireVlanKernel();
    hostA = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy host A', () => hostA.destroy());
    hostB = await createDockerHost({ dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy host B', () => hostB.destroy());
    await createVethPair({ netns: hostA.netns, name: WIRE }, { netns: hostB.netns, name: WIRE });
  }, SLOW_STEP_MS);
  afterAll(() => cleanup.run(), SLOW_STEP_MS);

  it('creates wire.10 (parent=wire.10) and wire.20 (tsnet.vlan=20) on both hosts, holding promisc on A', async () => {
    // A subinterface the user made before: tsnet uses it and must leave it.
    await ipIn(hostA.netns, ['link', 'add', 'link', WIRE, 'name', `${WIRE}.30`, 'type', 'vlan', 'id', '30']);
    await createNetwork(hostA, 'v10', '10.50.0.0/24', '10.50.0.0/26', `parent=${WIRE}.10`, 'tsnet.promisc=on');
    await createNetwork(hostA, 'v20', '10.60.0.0/24', '10.60.0.0/26', `parent=${WIRE}`, 'tsnet.vlan=20');
    await createNetwork(hostA, 'v30', '10.70.0.0/24', '10.70.0.0/26', `parent=${WIRE}.30`);
    await createNetwork(hostB, 'v10', '10.50.0.0/24', '10.50.0.64/26', `parent=${WIRE}.10`);
    await createNetwork(hostB, 'v20', '10.60.0.0/24', '10.60.0.64/26', `parent=${WIRE}.20`);
    for (const host of [hostA, hostB]) {
      expect(await vlanId(host, `${WIRE}.10`)).toBe(10);
      expect(await vlanId(host, `${WIRE}.20`)).toBe(20);
      expect((await link(host, `${WIRE}.10`))?.flags).toContain('UP');
    }
    expect(await promisc(hostA, `${WIRE}.10`)).toBe(true);
    expect(await promisc(hostA, WIRE)).toBe(true);
    expect(await promisc(hostB, WIRE)).toBe(false);
  });

  it('connects containers on VLAN 10 across the hosts both ways, and on VLAN 20', async () => {
    await runDetached(hostA, 'a10', 'v10', '10.50.0.10');
    await runDetached(hostB, 'b10', 'v10', '10.50.0.70');
    await runDetached(hostA, 'a20', 'v20', '10.60.0.10');
    await runDetached(hostB, 'b20', 'v20', '10.60.0.70');
    expect(await ping(hostA, 'a10', '10.50.0.70')).toBe(0);
    expect(await ping(hostB, 'b10', '10.50.0.10')).toBe(0);
    expect(await ping(hostA, 'a20', '10.60.0.70')).toBe(0);
  });

  it('tags for real: VLAN 10 does not reach an address that B holds only untagged or only on VLAN 20', async () => {
    for (const parent of [WIRE, `${WIRE}.20`]) {
      const remove = await probeOn(parent);
      try {
        expect(await ping(hostA, 'a10', PROBE_IP), `probe on B's ${parent}`).not.toBe(0);
      } finally {
        await remove();
      }
    }
    // Positive control: the same probe on B's VLAN 10 answers.
    const remove = await probeOn(`${WIRE}.10`);
    try {
      expect(await ping(hostA, 'a10', PROBE_IP)).toBe(0);
    } finally {
      await remove();
    }
  });

  it('recreates a subinterface it owns after kill -9 and a lost link, as after a reboot', async () => {
    await hostB.tsnet.kill9();
    // Takes b20's macvlan with it, as a reboot would.
    await ipIn(hostB.netns, ['link', 'del', 'dev', `${WIRE}.20`]);
    await hostB.tsnet.start();
    expect(await vlanId(hostB, `${WIRE}.20`)).toBe(20);
    expect((await link(hostB, `${WIRE}.20`))?.flags).toContain('UP');
  });

  it('removes the subinterfaces it created with the last network, keeps the user\'s, gives promisc back', async () => {
    await hostA.removeAllContainers();
    await hostA.dockerOk(['network', 'rm', 'v10', 'v20', 'v30']);
    expect(await link(hostA, `${WIRE}.10`)).toBeUndefined();
    expect(await link(hostA, `${WIRE}.20`)).toBeUndefined();
    expect(await vlanId(hostA, `${WIRE}.30`)).toBe(30);
    expect(await promisc(hostA, WIRE)).toBe(false);
    await hostB.removeAllContainers();
    await hostB.dockerOk(['network', 'rm', 'v10', 'v20']);
    expect(await link(hostB, `${WIRE}.10`)).toBeUndefined();
    expect(await link(hostB, `${WIRE}.20`)).toBeUndefined();
  });
});
