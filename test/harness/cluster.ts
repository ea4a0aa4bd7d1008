// Simulated cluster hosts: a "switch" netns running etcd on <net>.1, and one
// Docker host per host ID (own netns, dockerd and tsnet started with
// --cluster-store and --host-id), each cabled to the switch as `wire` with
// <net>.<11+i>/24. With `routed`, the switch is a router instead and the hosts
// share no L2: host i has 10.252.<i>.1/30 on its wire, the router .2, and
// etcd listens on the router's loopback address <net>.1. Resolves once every
// tsnet is registered (alive) in etcd. Everything is registered on the
// caller's CleanupStack.
import { join } from 'node:path';
import type { CleanupStack } from './cleanup.js';
import { type EtcdServer, startEtcd } from './etcd.js';
import { run } from './exec.js';
import { createDockerHost, type DockerHost, type DockerHostOptions } from './host.js';
import { runDir } from './names.js';
import { createNetns, createVethPair, deleteNetns, execInNetns, ipIn } from './netns.js';
import { createSwitch, plugIntoSwitch } from './switch.js';
import { waitUntil } from './wait.js';

export interface ClusterHostsOptions {
  /** The run ID: names the switch netns, etcd and its directory. */
  id: string;
  /** The first three octets of the switch's /24, e.g. `10.175.0`. */
  net: string;
  hostIds: readonly string[];
  /** Each host's link to the switch (a macvlan parent for shared networks). */
  wire: string;
  /** More tsnet flags for every host. */
  tsnetArgs?: readonly string[];
  /** Hosts in their own subnets, routed (no shared L2: an overlay's ground). */
  routed?: boolean;
  /** tsnet's CLI (benches run from dist/, where the harness's default would point into dist/dist). */
  tsnetCli?: string;
  logLevel?: DockerHostOptions['logLevel'];
}

export interface ClusterHosts {
  etcd: EtcdServer;
  hosts: DockerHost[];
}

interface AliveReport {
  hosts: Array<{ alive: boolean }>;
}

export async function createClusterHosts(opts: ClusterHostsOptions, cleanup: CleanupStack): Promise<ClusterHosts> {
  const switchNetns = `${opts.id}sw`;
  const etcdAddress = `${opts.net}.1`;
  if (opts.routed) {
    await createNetns(switchNetns);
    await execInNetns(switchNetns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await ipIn(switchNetns, ['address', 'add', `${etcdAddress}/32`, 'dev', 'lo']);
  } else await createSwitch(switchNetns, `${etcdAddress}/24`);
  cleanup.defer(`delete netns ${switchNetns}`, () => deleteNetns(switchNetns));
  cleanup.defer(`remove ${runDir(opts.id)}`, () => run('rm', ['-rf', runDir(opts.id)]));
  const etcd = await startEtcd({ name: opts.id, netns: switchNetns, address: etcdAddress, dataDir: join(runDir(opts.id), 'etcd'), logFile: join(runDir(opts.id), 'etcd.log') });
  cleanup.defer('destroy etcd', () => etcd.destroy());
  const created = await Promise.allSettled(
    opts.hostIds.map((hostId) =>
      createDockerHost({
        dockerdArgs: ['--bridge=none'],
        tsnetArgs: ['--cluster-store', etcd.url, '--host-id', hostId, ...(opts.tsnetArgs ?? [])],
        ...(opts.tsnetCli ? { tsnetCli: opts.tsnetCli } : {}),
        ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
      }),
    ),
  );
  for (const c of created) if (c.status === 'fulfilled') cleanup.defer(`destroy host ${c.value.id}`, () => c.value.destroy());
  const failure = created.find((c) => c.status === 'rejected');
  if (failure) throw failure.reason;
  const hosts = created.map((c) => (c as PromiseFulfilledResult<DockerHost>).value);
  for (const [i, host] of hosts.entries()) {
    if (!opts.routed) {
      await plugIntoSwitch(switchNetns, { netns: host.netns, ifname: opts.wire, port: `p${i + 1}`, address: `${opts.net}.${11 + i}/24` });
      continue;
    }
    await createVethPair({ netns: host.netns, name: opts.wire, address: `10.252.${i}.1/30` }, { netns: switchNetns, name: `p${i + 1}`, address: `10.252.${i}.2/30` });
    for (const destination of [`${etcdAddress}/32`, '10.252.0.0/16']) await ipIn(host.netns, ['route', 'add', destination, 'via', `10.252.${i}.2`]);
  }
  // tsnet served at once; it registers in etcd as soon as the wire reaches it.
  await waitUntil(async () => {
    // Until the wire reaches etcd, cluster ls itself fails: that is "not yet", not a failure.
    const r = await hosts[0]!.tsnet.runCli(['cluster', 'ls', '--json']);
    return r.exitCode === 0 && (JSON.parse(r.stdout) as AliveReport).hosts.filter((h) => h.alive).length === hosts.length;
  }, {
    timeoutMs: 30_000,
    what: `${hosts.length} hosts alive in the cluster store`,
    diagnostics: () => hosts.map((h) => h.tsnet.logTail(10)).join('\n'),
  });
  return { etcd, hosts };
}
