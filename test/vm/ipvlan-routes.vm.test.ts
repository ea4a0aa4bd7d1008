// ipvlan l3 with -o tsnet.routes=on: containers of one shared pool on two
// Docker hosts reach each other with no router configured, through the
// routes tsnet writes on each host from the cluster store. Real dockerds and
// tsnet daemons (createClusterHosts: two hosts on one switch, etcd on it),
// INSIDE the guest (npm run test:vlan): the CI host has no ipvlan.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';
import { PEER_ROUTE_PROTO } from '../../drivers/ipvlan/peer-routes.js';
import { requireIpvlanKernel } from './guest.js';

const NET = '10.176.0';
/** createClusterHosts puts host i on the switch as <net>.<11+i>. */
const wireAddress = (i: number) => `${NET}.${11 + i}`;
const ROUTED = '10.80.0.0/24';
const PLAIN = '10.81.0.0/24';
/** Upper bound per step in the emulated guest (two dockerds and two tsnets on two vCPUs), not a performance check. */
const SLOW_STEP_MS = 600_000;

const id = newRunId();
const cleanup = new CleanupStack();
let hosts: DockerHost[];

const addressOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();
const ping = async (host: DockerHost, container: string, address: string) => (await host.docker(['exec', container, 'ping', '-c', '1', '-W', '2', address], { timeoutMs: 60_000 })).exitCode;
const peerRoutes = async (host: DockerHost) => (await host.execInHost(['ip', '-4', 'route', 'show', 'proto', PEER_ROUTE_PROTO])).stdout;
const run = (host: DockerHost, name: string, network: string, ...args: string[]) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', network, ...args, TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 120_000 });

describe('ipvlan l3 with tsnet.routes across two Docker hosts (guest kernel)', { timeout: SLOW_STEP_MS }, () => {
  beforeAll(async () => {
    requireIpvlanKernel();
    ({ hosts } = await createClusterHosts({ id, net: NET, hostIds: ['h1', 'h2'], wire: 'wire' }, cleanup));
    for (const [i, host] of hosts.entries()) {
      const create = (name: string, ...args: string[]) => host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=wire', '-o', 'ipvlan_mode=l3', ...args, name], { timeoutMs: 120_000 });
      await create('routed', '--ipam-driver', host.driver, '--ipam-opt', `tsnet.pool=${id}`, '--subnet', ROUTED, '-o', 'tsnet.routes=on');
      // The negative control: same parent, same mode, no routes (each host its own half of the subnet).
      await create('plain', '--subnet', PLAIN, '--ip-range', `10.81.0.${128 * i}/25`);
    }
  }, SLOW_STEP_MS);
  afterAll(() => cleanup.run(), SLOW_STEP_MS);

  it('routes each host\'s containers to the other\'s through its address on the wire, and only on the network that asks', async () => {
    const [h1, h2] = hosts as [DockerHost, DockerHost];
    await run(h1, 'r1', 'routed');
    await run(h2, 'r2', 'routed');
    await run(h1, 'p1', 'plain', '--ip', '10.81.0.10');
    await run(h2, 'p2', 'plain', '--ip', '10.81.0.200');
    const [r1, r2] = [await addressOf(h1, 'r1'), await addressOf(h2, 'r2')];
    expect(r1).not.toBe(r2);
    await waitUntil(async () => (await ping(h1, 'r1', r2)) === 0, {
      timeoutMs: 60_000,
      what: `r1 (${r1}) on h1 to reach r2 (${r2}) on h2`,
      diagnostics: async () => `${await peerRoutes(h1)}\n${h1.tsnet.logTail(20)}\n${h2.tsnet.logTail(20)}`,
    });
    expect(await ping(h2, 'r2', r1)).toBe(0);
    expect(await peerRoutes(h1)).toContain(`${r2} via ${wireAddress(1)} dev wire`);
    expect(await peerRoutes(h2)).toContain(`${r1} via ${wireAddress(0)} dev wire`);
    // Same wire, same mode: without the routes nothing on the LAN knows where 10.81.0.200 lives.
    expect(await ping(h1, 'p1', '10.81.0.200')).not.toBe(0);
    // tsnet ls names the mode; inspect lists the pool's hosts with their containers.
    expect((await h1.tsnet.runCli(['ls'])).stdout).toMatch(/routed +\w{12} +ipvlan l3 bridge/);
    const inspected = JSON.parse((await h1.tsnet.runCli(['inspect', 'routed', '--json'])).stdout) as { network: { members?: Array<{ host: string; containers: number }> } };
    expect(inspected.network.members?.map((m) => [m.host, m.containers])).toEqual([['h1', 1], ['h2', 1]]);
  });

  it('puts back a peer route deleted by hand, and takes it away when the container goes', async () => {
    const [h1, h2] = hosts as [DockerHost, DockerHost];
    const r2 = await addressOf(h2, 'r2');
    await h1.execInHost(['ip', 'route', 'del', `${r2}/32`, 'dev', 'wire']);
    await waitUntil(async () => (await peerRoutes(h1)).includes(`${r2} via`), { timeoutMs: 60_000, what: `h1's route to ${r2} repaired`, diagnostics: () => h1.tsnet.logTail(20) });
    expect(await ping(h1, 'r1', r2)).toBe(0);
    await h2.dockerOk(['rm', '-f', 'r2'], { timeoutMs: 120_000 });
    await waitUntil(async () => !(await peerRoutes(h1)).includes(`${r2} via`), { timeoutMs: 60_000, what: `h1's route to ${r2} gone`, diagnostics: () => h1.tsnet.logTail(20) });
  });

  it('refuses tsnet.routes on l2 and without a shared pool, naming the option, and creates nothing', async () => {
    const h1 = hosts[0]!;
    // A parent of its own: wire's ipvlan port is l3 now, and would refuse l2 for that first.
    await h1.execInHost(['ip', 'link', 'add', 'spare', 'type', 'veth', 'peer', 'name', 'spare-peer']);
    const create = (parent: string, ...args: string[]) => h1.docker(['network', 'create', '-d', h1.driver, '-o', `parent=${parent}`, '-o', 'tsnet.routes=on', '--subnet', '10.82.0.0/24', ...args, 'refused'], { timeoutMs: 120_000 });
    expect((await create('spare', '-o', 'ipvlan_mode=l2')).stderr).toMatch(/tsnet\.routes: needs ipvlan_mode=l3 or l3s/);
    expect((await create('wire', '-o', 'ipvlan_mode=l3')).stderr).toMatch(/tsnet\.routes: needs a shared pool/);
    expect((await h1.docker(['network', 'inspect', 'refused'])).exitCode).not.toBe(0);
  });
});
