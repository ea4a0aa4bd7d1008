/**
 * Cross-host names: two simulated Docker hosts on one L2 segment (a "switch"
 * netns with etcd), each with its own dockerd and a tsnet started with
 * --cluster-store and --dns-listen. The same shared-pool macvlan network is
 * called `lan` on host A and `blan` on host B; a container on B resolves
 * from A's host listener and from a container on A (through A's host shim,
 * directly and through Docker's resolver), is forgotten on A when removed on
 * B, and so are all of B's names once B's tsnet is killed and its lease
 * expired (and they come back when it starts again).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterReport } from '../../src/cluster/cluster.js';
import { assertPreflight, CleanupStack, createClusterHosts, dig, type DockerHost, type EtcdServer, newRunId, TEST_IMAGE, waitUntil } from '../harness/index.js';

const id = newRunId();
const SUBNET = '10.187.0.0/24';
const GATEWAY = '10.187.0.1';
/** Containers get addresses from here; the host shims sit below it. */
const RANGE = '10.187.0.128/25';
const WIRE = 'wire';
/** The network's name on each host, and each host's shim on it. */
const NETWORKS = [
  { name: 'lan', shim: '10.187.0.2' },
  { name: 'blan', shim: '10.187.0.3' },
] as const;
const HOST_DNS = '127.0.0.1';
const cleanup = new CleanupStack();
let etcd: EtcdServer;
let a: DockerHost;
let b: DockerHost;

/** dig from a host's netns to its own --dns-listen. */
const askHost = (host: DockerHost, ...args: string[]) => dig(HOST_DNS, 53, args, host.netns);

async function netnsOf(host: DockerHost, container: string): Promise<string> {
  return `/proc/${(await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', container])).stdout}/ns/net`;
}

async function addressOf(host: DockerHost, container: string, network: string): Promise<string> {
  return (await host.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container])).stdout;
}

const runOn = (host: DockerHost, name: string, network: string, ...extra: string[]) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', network, ...extra, TEST_IMAGE, 'sleep', '3600']);

async function clusterReport(host: DockerHost): Promise<ClusterReport> {
  const r = await host.tsnet.runCli(['cluster', 'ls', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ClusterReport;
}

/** Waits until host A's listener answers `name` with exactly `answers` (the names travel through etcd asynchronously). */
const onA = (name: string, answers: string[], timeoutMs: number, ...args: string[]) =>
  waitUntil(async () => {
    const answer = await askHost(a, name, ...args);
    return JSON.stringify(answer.answers) === JSON.stringify(answers) && answer;
  }, { timeoutMs, intervalMs: 100, what: `${name} on host A to answer ${answers.join(' ') || 'nothing'}`, diagnostics: () => [a, b].map((h) => h.tsnet.logTail(15)).join('\n') });

describe('names of containers on other hosts of a shared network', () => {
  beforeAll(async () => {
    assertPreflight({ dns: true });
    let hosts: DockerHost[];
    ({ etcd, hosts } = await createClusterHosts({ id, net: '10.186.0', hostIds: ['ha', 'hb'], wire: WIRE, tsnetArgs: ['--dns-listen', `${HOST_DNS}:53`] }, cleanup));
    [a, b] = hosts as [DockerHost, DockerHost];
    for (const [i, host] of [a, b].entries()) {
      const { name, shim } = NETWORKS[i]!;
      await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=xlan',
        '-o', `parent=${WIRE}`, '-o', `tsnet.host_shim=${shim}`, '--subnet', SUBNET, '--gateway', GATEWAY, '--ip-range', RANGE, name]);
    }
  }, 300_000);
  afterAll(async () => {
    await cleanup.run();
  }, 300_000);

  it('answers host A and a container on A with the names of a container on host B, under A\'s name of the network', async () => {
    await runOn(b, 'web', 'blan', '--network-alias', 'www');
    const web = await addressOf(b, 'web', 'blan');
    expect((await onA('web.lan.tsnet', [`A ${web}`], 10_000)).flags).toContain('aa');
    expect((await askHost(a, 'www.lan.tsnet')).answers).toEqual([`A ${web}`]);
    expect((await askHost(a, '-x', web)).answers).toEqual(['PTR web.lan.tsnet.']);
    // B's own listener has its container once, under B's name of the network.
    expect((await askHost(b, 'web.blan.tsnet')).answers).toEqual([`A ${web}`]);

    // A container on A asks A's host shim, the network's own listener.
    await runOn(a, 'client', 'lan');
    expect((await dig(NETWORKS[0].shim, 53, ['web.lan.tsnet'], await netnsOf(a, 'client'))).answers).toEqual([`A ${web}`]);
    // And through Docker's resolver, given the shim with --dns: by name across hosts.
    await runOn(a, 'byname', 'lan', '--dns', NETWORKS[0].shim);
    const ping = await a.execIn('byname', ['ping', '-c', '1', '-W', '3', 'web.lan.tsnet']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
    expect(ping.stdout).toContain(web);

    // The other way round: B answers A's container under its own name of the network.
    const client = await addressOf(a, 'client', 'lan');
    await waitUntil(async () => (await askHost(b, 'client.blan.tsnet')).answers[0] === `A ${client}`, { timeoutMs: 10_000, what: 'client.blan.tsnet on host B' });
    expect((await clusterReport(a)).hosts.find((h) => h.id === 'hb')).toMatchObject({ alive: true, names: 1 });
  });

  it('forgets a container removed on B within seconds', async () => {
    await b.dockerOk(['rm', '-f', 'web']);
    const gone = await onA('web.lan.tsnet', [], 5_000);
    expect(gone.status).toBe('NXDOMAIN');
  });

  it('serves B\'s names as last known while etcd hangs, forgets them once B\'s tsnet is dead and its lease expired, and has them back when it runs again', async () => {
    await runOn(b, 'db', 'blan');
    const db = await addressOf(b, 'db', 'blan');
    await onA('db.lan.tsnet', [`A ${db}`], 10_000);

    await etcd.pause();
    try {
      expect((await askHost(a, 'db.lan.tsnet')).answers).toEqual([`A ${db}`]);
    } finally {
      etcd.resume();
    }

    await b.tsnet.kill9();
    // The lease (10 s) runs out, etcd drops B's keys, A's watch hears of it.
    expect((await onA('db.lan.tsnet', [], 40_000)).status).toBe('NXDOMAIN');
    expect((await clusterReport(a)).hosts.find((h) => h.id === 'hb')).toMatchObject({ alive: false, names: 0 });

    await b.tsnet.start();
    await onA('db.lan.tsnet', [`A ${db}`], 20_000);
  }, 120_000);
});
