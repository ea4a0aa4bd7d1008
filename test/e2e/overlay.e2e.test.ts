/**
 * Overlay networks with real dockerds: hosts in their own subnets, joined
 * only through a router netns (no shared L2: macvlan could not work here),
 * etcd on the router, each host a private dockerd with tsnet started with
 * --cluster-store. The same `docker network create -o tsnet.mode=overlay` on
 * each host; containers reach each other across hosts by address, with the
 * underlay's MTU − 50; a removed container's entries leave the other host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';

const id = newRunId();
const SUBNET = '10.93.0.0/24';
const cleanup = new CleanupStack();
let hosts: DockerHost[] = [];

const addressOf = async (host: DockerHost, name: string) =>
  (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

describe('overlay networks across routed Docker hosts', () => {
  beforeAll(async () => {
    ({ hosts } = await createClusterHosts({ id, net: '10.250.9', hostIds: ['ova', 'ovb'], wire: 'wire', routed: true }, cleanup));
    for (const host of hosts) {
      await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=ov', '--subnet', SUBNET, 'ov']);
    }
  }, 300_000);
  afterAll(async () => {
    await cleanup.run();
  });

  it('lets containers on different hosts reach each other, at the underlay\'s MTU − 50', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    await a.dockerOk(['run', '-d', '--pull=never', '--name', 'a1', '--network', 'ov', TEST_IMAGE, 'sleep', '600']);
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'b1', '--network', 'ov', TEST_IMAGE, 'sleep', '600']);
    const [onA, onB] = [await addressOf(a, 'a1'), await addressOf(b, 'b1')];
    expect(onA).not.toBe(onB);
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '1', onB])).exitCode === 0, {
      timeoutMs: 15_000,
      what: `a1 (${onA}) on host A to reach b1 (${onB}) on host B`,
      diagnostics: () => a.tsnet.logTail(20) + b.tsnet.logTail(20),
    });
    expect((await b.docker(['exec', 'b1', 'ping', '-c', '1', '-W', '2', onA])).exitCode).toBe(0);
    expect((await a.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe('1450');
  });

  it('takes a removed container off the other host', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    const mac = (await b.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}', 'b1'])).stdout.trim();
    await b.dockerOk(['rm', '-f', 'b1']);
    await waitUntil(async () => !(await a.execInHost(['bridge', 'fdb', 'show'])).stdout.includes(`${mac} dst`), { timeoutMs: 10_000, what: `${mac} (${onB}) to leave host A's forwarding table` });
  });
});
