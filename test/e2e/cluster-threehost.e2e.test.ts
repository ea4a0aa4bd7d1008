/**
 * Three simulated Docker hosts on one L2 segment (a "switch" netns with a
 * bridge), each with its own dockerd and its own tsnet started with
 * --cluster-store; etcd runs in the switch netns. The same shared-pool
 * macvlan network on the three hosts: 60 concurrent `docker run` get 60
 * distinct addresses and reach each other across hosts; etcd hung, killed and
 * restarted; tsnet killed mid-run and restarted; never one address twice.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createClusterHosts, type DockerHost, type EtcdServer, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';
import type { ClusterReport } from '../../src/cluster/cluster.js';

const id = newRunId();
const SUBNET = '10.176.0.0/24';
const GATEWAY = '10.176.0.1';
const WIRE = 'wire';
const HOSTS = 3;
const cleanup = new CleanupStack();
let etcd: EtcdServer;
let hosts: DockerHost[] = [];
let started = 0;

async function clusterReport(host: DockerHost): Promise<ClusterReport> {
  const r = await host.tsnet.runCli(['cluster', 'ls', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ClusterReport;
}

/** `docker run -d` of a sleeping container on the shared network; the result as is. */
function runOn(host: DockerHost, name: string) {
  return host.docker(['run', '-d', '--pull=never', '--name', name, '--network', 'lan', TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 240_000 });
}

/** Starts `count` containers spread over the hosts at once; every one must start. */
async function runSpread(count: number): Promise<void> {
  const names = Array.from({ length: count }, () => `c${started++}`);
  const results = await Promise.all(names.map((name, i) => runOn(hosts[i % HOSTS]!, name)));
  const failed = results.map((r, i) => ({ ...r, name: names[i] })).filter((r) => r.exitCode !== 0);
  expect(failed.map((f) => `${f.name}: ${f.stderr}`)).toEqual([]);
}

/** container name → address, of every running container on every host. */
async function runningAddresses(): Promise<Map<string, { host: number; address: string }>> {
  const out = new Map<string, { host: number; address: string }>();
  for (const [index, host] of hosts.entries()) {
    const ids = (await host.dockerOk(['ps', '-q'])).stdout.split('\n').filter(Boolean);
    if (ids.length === 0) continue;
    const lines = (await host.dockerOk(['inspect', '-f', '{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', ...ids])).stdout.split('\n');
    for (const line of lines) {
      const [name, address] = line.trim().split(' ');
      out.set(name!.replace(/^\//, ''), { host: index, address: address! });
    }
  }
  return out;
}

/** address → host ID of every container hold in etcd. */
async function holdsInEtcd(): Promise<Map<string, string>> {
  const r = await etcd.etcdctl(['get', '--prefix', 'tsnet/v1/pools/lan/v4/addresses/']);
  expect(r.exitCode, r.stderr).toBe(0);
  const lines = r.stdout.split('\n').filter(Boolean);
  const holds = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const hold = JSON.parse(lines[i + 1]!) as { kind: string; host: string };
    if (hold.kind === 'container') holds.set(lines[i]!.split('/').pop()!, hold.host);
  }
  return holds;
}

/** No address twice among running containers, never the gateway, each held in etcd by its own host. */
async function expectNoDuplicates(): Promise<Map<string, { host: number; address: string }>> {
  const running = await runningAddresses();
  const addresses = [...running.values()].map((r) => r.address);
  expect(addresses.filter((a, i) => addresses.indexOf(a) !== i)).toEqual([]);
  expect(addresses).not.toContain(GATEWAY);
  const holds = await holdsInEtcd();
  for (const [name, { host, address }] of running) expect(`${name} ${address} ${holds.get(address)}`).toBe(`${name} ${address} host${host + 1}`);
  return running;
}

async function ping(host: DockerHost, container: string, address: string): Promise<number> {
  return (await host.execIn(container, ['ping', '-c', '1', '-W', '3', address])).exitCode;
}

/** tsnet's log lines about RequestAddress (one per request, with its milliseconds). */
const requestAddressLines = (host: DockerHost) =>
  readFileSync(host.tsnet.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"IpamDriver.RequestAddress"'));

/** How long tsnet took to refuse each RequestAddress that failed on the cluster store. */
const refusalTimes = (host: DockerHost) =>
  requestAddressLines(host)
    .filter((l) => l.includes('cluster store'))
    .map((l) => (JSON.parse(l) as { ms: number }).ms);

describe('shared pool across three hosts on etcd', () => {
  beforeAll(async () => {
    ({ etcd, hosts } = await createClusterHosts({ id, net: '10.175.0', hostIds: Array.from({ length: HOSTS }, (_, i) => `host${i + 1}`), wire: WIRE }, cleanup));
  }, 300_000);
  afterAll(async () => {
    await cleanup.run();
  }, 300_000);

  it('creates the same shared-pool macvlan network on every host', async () => {
    for (const host of hosts) {
      await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=lan',
        '-o', `parent=${WIRE}`, '--subnet', SUBNET, '--gateway', GATEWAY, 'lan']);
    }
    const report = await clusterReport(hosts[1]!);
    expect(report.pools).toEqual([expect.objectContaining({ name: 'lan', subnet: SUBNET, gateway: GATEWAY, users: ['host1', 'host2', 'host3'] })]);
  });

  it('gives 60 concurrent runs over three hosts 60 distinct addresses that reach each other across hosts', async () => {
    await runSpread(60);
    const running = await expectNoDuplicates();
    expect(running.size).toBe(60);
    const address = (name: string) => running.get(name)!.address;
    expect(await ping(hosts[0]!, 'c0', address('c1'))).toBe(0);
    expect(await ping(hosts[1]!, 'c1', address('c2'))).toBe(0);
    expect(await ping(hosts[2]!, 'c2', address('c0'))).toBe(0);
    const report = await clusterReport(hosts[2]!);
    expect(report.hosts.map((h) => [h.id, h.alive, h.addresses])).toEqual([
      ['host1', true, 20],
      ['host2', true, 20],
      ['host3', true, 20],
    ]);
    expect(report.orphans).toEqual([]);
    expect(report.unattached).toEqual([]);
  }, 400_000);

  it('with etcd hung, refuses a new run within 5 s naming the store, while running containers still ping', async () => {
    const running = await runningAddresses();
    await etcd.pause();
    try {
      const r = await runOn(hosts[0]!, 'hung');
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`cluster store: ${etcd.url} is unreachable (no answer within 4 s); nothing was allocated or released`);
      // The plugin's answer to dockerd (the contract: a failing request answers within 5 s), from tsnet's own log.
      const times = refusalTimes(hosts[0]!);
      expect(times.length).toBeGreaterThan(0);
      expect(Math.max(...times)).toBeLessThan(5000);
      expect(await ping(hosts[0]!, 'c0', running.get('c1')!.address)).toBe(0);
      expect(await ping(hosts[1]!, 'c1', running.get('c2')!.address)).toBe(0);
    } finally {
      etcd.resume();
      await hosts[0]!.docker(['rm', '-f', 'hung']);
    }
    await runSpread(3);
    await expectNoDuplicates();
  }, 200_000);

  it('with etcd killed, refuses runs; restarted on its data, runs work again without a tsnet restart', async () => {
    await etcd.kill9();
    try {
      const r = await runOn(hosts[1]!, 'nostore');
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`cluster store: ${etcd.url} is unreachable`);
    } finally {
      await hosts[1]!.docker(['rm', '-f', 'nostore']);
      await etcd.start();
    }
    await runSpread(6);
    await expectNoDuplicates();
  }, 200_000);

  it('never hands out an address twice when tsnet is SIGKILLed mid-run and restarted', async () => {
    const host = hosts[0]!;
    const before = requestAddressLines(host).length;
    const names = Array.from({ length: 8 }, () => `k${started++}`);
    const runs = Promise.all(names.map((name) => runOn(host, name)));
    // Kill it once the burst is being served.
    await waitUntil(() => requestAddressLines(host).length > before + 2, {
      timeoutMs: 60_000,
      what: 'the burst to reach tsnet',
    });
    await host.tsnet.kill9();
    await host.tsnet.start();
    const results = await runs;
    // Runs caught by the kill may fail (dockerd saw the plugin die); none may share an address.
    for (const [i, r] of results.entries()) if (r.exitCode !== 0) await host.docker(['rm', '-f', names[i]!]);
    await runSpread(6);
    await expectNoDuplicates();
    expect((await clusterReport(host)).hosts.find((h) => h.id === 'host1')?.alive).toBe(true);
  }, 300_000);
});
