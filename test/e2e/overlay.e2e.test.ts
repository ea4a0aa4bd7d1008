/**
 * Overlay networks with real dockerds: three hosts in their own subnets, joined
 * only through a router netns (no shared L2: macvlan could not work here),
 * etcd on the router, each host a private dockerd with tsnet started with
 * --cluster-store. The same `docker network create -o tsnet.mode=overlay` on
 * each host; containers reach each other across hosts by address and by
 * tsnet's DNS name, with the underlay's MTU − 50; traffic keeps flowing
 * while a host's tsnet is SIGKILLed and while etcd is down, and new runs on
 * it are refused naming the store; a removed container's entries leave the
 * other host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, type EtcdServer, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';

const id = newRunId();
const SUBNET = '10.93.0.0/24';
const cleanup = new CleanupStack();
let hosts: DockerHost[] = [];
let etcd: EtcdServer;
/** Every host's gateway on the network (the same on each): where tsnet's DNS answers its containers. */
const GATEWAY = '10.93.0.1';

const pings = async (host: DockerHost, from: string, to: string) => (await host.docker(['exec', from, 'ping', '-c', '1', '-W', '2', to])).exitCode === 0;

const addressOf = async (host: DockerHost, name: string) =>
  (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

describe('overlay networks across routed Docker hosts', () => {
  beforeAll(async () => {
    ({ hosts, etcd } = await createClusterHosts({ id, net: '10.250.9', hostIds: ['ova', 'ovb', 'ovc'], wire: 'wire', routed: true }, cleanup));
    for (const host of hosts) {
      await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=ov', '--subnet', SUBNET, 'ov']);
    }
  }, 300_000);
  afterAll(async () => {
    await cleanup.run();
  });

  it('lets containers on different hosts reach each other, at the underlay\'s MTU − 50', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    await a.dockerOk(['run', '-d', '--pull=never', '--name', 'a1', '--network', 'ov', '--dns', GATEWAY, TEST_IMAGE, 'sleep', '600']);
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'b1', '--network', 'ov', '--dns', GATEWAY, TEST_IMAGE, 'sleep', '600']);
    const [onA, onB] = [await addressOf(a, 'a1'), await addressOf(b, 'b1')];
    expect(onA).not.toBe(onB);
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'ping', '-c', '1', '-W', '1', onB])).exitCode === 0, {
      timeoutMs: 15_000,
      what: `a1 (${onA}) on host A to reach b1 (${onB}) on host B`,
      diagnostics: () => a.tsnet.logTail(20) + b.tsnet.logTail(20),
    });
    expect((await b.docker(['exec', 'b1', 'ping', '-c', '1', '-W', '2', onA])).exitCode).toBe(0);
    expect((await a.dockerOk(['exec', 'a1', 'cat', '/sys/class/net/eth0/mtu'])).stdout.trim()).toBe('1450');
    expect((await a.tsnet.runCli(['ls'])).stdout).toMatch(/ov +\w{12} +overlay \(VNI \d+\)/);
  });

  it('gives 30 concurrent runs over three hosts 30 distinct addresses, each reaching a container on every other host', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `m${i}`);
    const hostOf = (i: number) => hosts[i % hosts.length]!;
    const started = await Promise.all(names.map((name, i) => hostOf(i).docker(['run', '-d', '--pull=never', '--name', name, '--network', 'ov', TEST_IMAGE, 'sleep', '600'], { timeoutMs: 240_000 })));
    expect(started.filter((r) => r.exitCode !== 0).map((r) => r.stderr)).toEqual([]);
    const addresses = await Promise.all(names.map((name, i) => addressOf(hostOf(i), name)));
    expect(new Set(addresses).size).toBe(names.length);
    // Each container pings the first container of each other host (m0 on A, m1 on B, m2 on C).
    const failures: string[] = [];
    await Promise.all(names.map(async (name, i) => {
      for (let other = 0; other < hosts.length; other++) {
        if (other === i % hosts.length) continue;
        const target = addresses[other]!;
        let reached = false;
        for (let attempt = 0; attempt < 5 && !reached; attempt++) reached = await pings(hostOf(i), name, target);
        if (!reached) failures.push(`${name} → ${target}`);
      }
    }));
    expect(failures).toEqual([]);
    await Promise.all(names.map((name, i) => hostOf(i).dockerOk(['rm', '-f', name])));
  });

  it('answers a container of the other host by name from each host\'s own DNS', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await waitUntil(async () => (await a.docker(['exec', 'a1', 'nslookup', 'b1.ov.tsnet', GATEWAY])).stdout.includes(onB), { timeoutMs: 15_000, what: 'b1.ov.tsnet to be answered on host A' });
    expect(await pings(a, 'a1', 'b1.ov.tsnet')).toBe(true);
  });

  it('keeps traffic flowing while a host\'s tsnet is SIGKILLed, and follows again after its restart', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await a.tsnet.kill9();
    try {
      expect(await pings(a, 'a1', onB)).toBe(true);
    } finally {
      await a.tsnet.restart();
    }
    // A container started on B while A's tsnet was away, or after: reached from A once it follows again.
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'b2', '--network', 'ov', TEST_IMAGE, 'sleep', '600']);
    const onB2 = await addressOf(b, 'b2');
    await waitUntil(() => pings(a, 'a1', onB2), { timeoutMs: 15_000, what: `a1 to reach b2 (${onB2}) after A's tsnet restarted`, diagnostics: () => a.tsnet.logTail(20) });
  });

  it('keeps traffic flowing while etcd is down, refuses new runs naming the store, and works again once it is back', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    await etcd.kill9();
    try {
      expect(await pings(a, 'a1', onB)).toBe(true);
      const refused = await a.docker(['run', '--rm', '--pull=never', '--network', 'ov', TEST_IMAGE, 'true'], { timeoutMs: 60_000 });
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toMatch(/cluster store: etcd:\/\/10\.250\.9\.1:2379 is unreachable/);
    } finally {
      await etcd.start();
    }
    await waitUntil(async () => (await a.docker(['run', '--rm', '--pull=never', '--network', 'ov', TEST_IMAGE, 'ping', '-c', '1', '-W', '2', onB], { timeoutMs: 60_000 })).exitCode === 0, {
      timeoutMs: 30_000,
      what: 'a new run on A to reach b1 once etcd is back',
    });
  });

  it('takes a removed container off the other host', async () => {
    const [a, b] = hosts as [DockerHost, DockerHost];
    const onB = await addressOf(b, 'b1');
    const mac = (await b.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}', 'b1'])).stdout.trim();
    await b.dockerOk(['rm', '-f', 'b1']);
    await waitUntil(async () => !(await a.execInHost(['bridge', 'fdb', 'show'])).stdout.includes(`${mac} dst`), { timeoutMs: 10_000, what: `${mac} (${onB}) to leave host A's forwarding table` });
  });
});
