/**
 * Two simulated Docker hosts, A and B, each with its own dockerd and its own
 * tsnet, joined by a veth "wire". The same macvlan network is created on
 * both with the --ip-range split per host; containers reach each other across
 * the wire, private mode isolates, promisc is held and given back (also
 * across kill -9), the host shim lets host A reach its own containers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerHost, createVethPair, type DockerHost, TEST_IMAGE } from '../harness/index.js';
import type { LinkInfo } from '../../src/sys/index.js';

const WIRE = 'wire';
const SUBNET = '10.40.0.0/24';
const SHIM_A = '10.40.0.250';
let hostA: DockerHost;
let hostB: DockerHost;

async function links(host: DockerHost): Promise<LinkInfo[]> {
  return JSON.parse((await host.execInHost(['ip', '-json', '-details', 'link', 'show'])).stdout) as LinkInfo[];
}

async function wirePromisc(host: DockerHost): Promise<boolean> {
  return (await links(host)).find((l) => l.ifname === WIRE)!.flags.includes('PROMISC');
}

/** Links whose names tsnet generates. */
async function tsnetLinks(host: DockerHost): Promise<string[]> {
  return (await links(host)).map((l) => l.ifname).filter((name) => /^ts[msvc]|^tsbr-/.test(name));
}

const runDetached = (host: DockerHost, name: string, network: string, ...args: string[]) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', network, ...args, TEST_IMAGE, 'sleep', '3600']);

async function addressOf(host: DockerHost, container: string): Promise<string> {
  const r = await host.execIn(container, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout)![1]!;
}

/** Exit status of one ping from a container (0 = an answer came back). */
async function ping(host: DockerHost, container: string, address: string): Promise<number> {
  return (await host.execIn(container, ['ping', '-c', '1', '-W', '3', address])).exitCode;
}

const createLan = (host: DockerHost, ipRange: string, ...extra: string[]) =>
  host.dockerOk(['network', 'create', '-d', host.driver, '-o', `parent=${WIRE}`, '-o', 'tsnet.promisc=on', ...extra, '--subnet', SUBNET, '--ip-range', ipRange, 'lan']);

describe('macvlan across two simulated hosts', () => {
  beforeAll(async () => {
    [hostA, hostB] = await Promise.all([createDockerHost({ dockerdArgs: ['--bridge=none'] }), createDockerHost({ dockerdArgs: ['--bridge=none'] })]);
    await createVethPair({ netns: hostA.netns, name: WIRE }, { netns: hostB.netns, name: WIRE });
  });
  afterAll(async () => {
    await Promise.all([hostA?.destroy(), hostB?.destroy()]);
  });

  it('creates the same network on both hosts and holds each wire promiscuous', async () => {
    expect(await wirePromisc(hostA)).toBe(false);
    await createLan(hostA, '10.40.0.0/26', '-o', `tsnet.host_shim=${SHIM_A}`);
    await createLan(hostB, '10.40.0.64/26');
    expect(await wirePromisc(hostA)).toBe(true);
    expect(await wirePromisc(hostB)).toBe(true);
  });

  it('connects containers across the hosts both ways, with addresses from each host\'s range and by --ip', async () => {
    await runDetached(hostA, 'a1', 'lan');
    await runDetached(hostA, 'a2', 'lan', '--ip', '10.40.0.20');
    await runDetached(hostB, 'b1', 'lan');
    await runDetached(hostB, 'b2', 'lan', '--ip', '10.40.0.80');
    const a1 = await addressOf(hostA, 'a1');
    const b1 = await addressOf(hostB, 'b1');
    expect(a1).toMatch(/^10\.40\.0\.([2-9]|[1-5]\d|6[0-3])$/);
    expect(b1).toMatch(/^10\.40\.0\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])$/);
    expect(await ping(hostA, 'a1', b1)).toBe(0);
    expect(await ping(hostB, 'b1', a1)).toBe(0);
    expect(await ping(hostA, 'a2', '10.40.0.80')).toBe(0);
    expect(await ping(hostB, 'b2', '10.40.0.20')).toBe(0);
    expect(await ping(hostA, 'a1', '10.40.0.20')).toBe(0);
  });

  it('puts on the link the MAC that docker reports', async () => {
    const inspect = JSON.parse((await hostA.dockerOk(['inspect', 'a2'])).stdout)[0];
    const mac = inspect.NetworkSettings.Networks.lan.MacAddress as string;
    expect(mac).toBe('02:42:0a:28:00:14');
    expect((await hostA.execIn('a2', ['cat', '/sys/class/net/eth0/address'])).stdout.trim()).toBe(mac);
  });

  it('lets host A reach its own container through the shim, and the container reach host A', async () => {
    expect((await hostA.execInHost(['busybox', 'ping', '-c', '1', '-W', '3', '10.40.0.20'])).exitCode).toBe(0);
    expect(await ping(hostA, 'a2', SHIM_A)).toBe(0);
  });

  it('isolates two containers of one host in macvlan_mode=private', async () => {
    await hostA.dockerOk(['network', 'create', '-d', hostA.driver, '-o', `parent=${WIRE}`, '-o', 'macvlan_mode=private', '--subnet', '10.41.0.0/24', 'priv']);
    await runDetached(hostA, 'p1', 'priv', '--ip', '10.41.0.11');
    await runDetached(hostA, 'p2', 'priv', '--ip', '10.41.0.12');
    expect(await ping(hostA, 'p1', '10.41.0.12')).not.toBe(0);
    // The same two containers in bridge mode (a1, a2 above) do reach each other.
  });

  it('gives an --internal network no gateway', async () => {
    await hostA.dockerOk(['network', 'create', '--internal', '-d', hostA.driver, '-o', `parent=${WIRE}`, '--subnet', '10.42.0.0/24', 'inside']);
    await runDetached(hostA, 'i1', 'inside');
    expect((await hostA.execIn('i1', ['ip', 'route'])).stdout).not.toMatch(/default/);
  });

  it('refuses a bad option through docker, naming it, and creates nothing', async () => {
    const before = await tsnetLinks(hostA);
    const r = await hostA.docker(['network', 'create', '-d', hostA.driver, '-o', `parent=${WIRE}`, '-o', 'tsnet.vlan=4095', '--subnet', '10.43.0.0/24', 'bad']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('tsnet.vlan: "4095" is not a whole number from 1 to 4094');
    expect((await hostA.docker(['network', 'inspect', 'bad'])).exitCode).not.toBe(0);
    expect(await tsnetLinks(hostA)).toEqual(before);
  });

  it('keeps promisc held through kill -9 and a restart of tsnet, and gives it back when the network goes', async () => {
    await hostA.tsnet.kill9();
    await hostA.tsnet.start();
    expect(await wirePromisc(hostA)).toBe(true);
    await runDetached(hostA, 'a3', 'lan');
    expect(await ping(hostA, 'a3', await addressOf(hostB, 'b2'))).toBe(0);
    await hostA.removeAllContainers();
    await hostA.dockerOk(['network', 'rm', 'priv', 'inside']);
    expect(await wirePromisc(hostA)).toBe(true);
    await hostA.dockerOk(['network', 'rm', 'lan']);
    expect(await wirePromisc(hostA)).toBe(false);
  });

  it('leaves no tsnet link on either host once every network is removed', async () => {
    await hostB.removeAllContainers();
    await hostB.dockerOk(['network', 'rm', 'lan']);
    expect(await wirePromisc(hostB)).toBe(false);
    expect(await tsnetLinks(hostA)).toEqual([]);
    expect(await tsnetLinks(hostB)).toEqual([]);
  });
});
