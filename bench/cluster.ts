/**
 * Shared pools on etcd against the local pool on SQLite, side by side in one run:
 *
 *  1. Allocation latency (p50, p99) of RequestAddress in process: the IPAM
 *     over SQLite alone, and the IPAM with a shared pool (SQLite + one etcd
 *     transaction), interleaved call by call. etcd runs on 127.0.0.1.
 *     Then the shared pool on an empty etcd against one holding 50k endpoint
 *     records of other hosts (20 pools, the allocating one among them),
 *     interleaved (goal ≤ 1.2×). BENCH_ONLY=allocation stops after this.
 *  2. Attach overhead on one of three simulated hosts (etcd in the switch
 *     netns they are cabled to): Docker API connect + disconnect of a running
 *     container to a macvlan network with a local pool and to one with the
 *     shared pool, alternating (goal ≤ 1.2×).
 *  3. Throughput: 60 concurrent `docker run` spread over the three hosts, on
 *     the shared pool and on per-host local pools with a hand-split
 *     --ip-range (what users do without tsnet's cluster store), alternating.
 *
 *   npm run build && npm run bench:cluster        (root; not part of CI)
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { deadlineFromNow, EtcdClient } from '../src/cluster/etcd-client.js';
import { HostMembership } from '../src/cluster/membership.js';
import { SharedPoolService } from '../src/cluster/shared-pool-service.js';
import { IpamService, LOCAL_ADDRESS_SPACE } from '../src/ipam/ipam-service.js';
import { SqliteStore } from '../src/store/sqlite.js';
import {
  CleanupStack,
  createDockerHost,
  createSwitch,
  deleteNetns,
  type DockerHost,
  newRunId,
  plugIntoSwitch,
  runDir,
  startEtcd,
  TEST_IMAGE,
} from '../test/harness/index.js';
import { scalePoolName, scaleSubnet, seedCluster } from '../test/harness/cluster-records.js';
import { dockerApi, median, quantile } from './docker-api.js';

/** This file runs as dist/bench/cluster.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ALLOCATIONS = Number(process.env.BENCH_ALLOCATIONS ?? 2000);
const ATTACH_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const BURSTS = Number(process.env.BENCH_BURSTS ?? 3);
const SCALE_ENDPOINTS = 50_000;
const log = pino({ level: 'silent' });

async function timed<T>(work: () => Promise<T>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** 1: RequestAddress + ReleaseAddress in process, local pool vs shared pool, interleaved. */
async function allocationLatency(dir: string): Promise<void> {
  const etcd = await startEtcd({ name: 'bench', address: '127.0.0.1', dataDir: join(dir, 'etcd-local'), logFile: join(dir, 'etcd-local.log') });
  const localStore = new SqliteStore(join(dir, 'local'));
  const sharedStore = new SqliteStore(join(dir, 'shared'));
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  try {
    const local = new IpamService(localStore);
    await local.load();
    const membership = new HostMembership(client, 'bench', sharedStore, log);
    await membership.load();
    const pools = new SharedPoolService(sharedStore, client, membership, () => true, log);
    await pools.load();
    const shared = new IpamService(sharedStore, { shared: pools });
    await shared.load();
    const request = (pool: string, options: Record<string, string>) => ({ addressSpace: LOCAL_ADDRESS_SPACE, pool, subPool: '', options, v6: false });
    const localPool = (await local.requestPool(request('10.177.0.0/16', {}))).poolId;
    const sharedPool = (await shared.requestPool(request('10.178.0.0/16', { 'tsnet.pool': 'bench' }))).poolId;
    const samples = { local: [] as number[], shared: [] as number[] };
    const one = async (ipam: IpamService, poolId: string) => {
      let address = '';
      const ms = await timed(async () => (address = (await ipam.requestAddress({ poolId, address: '', options: {} })).address));
      await ipam.releaseAddress(poolId, address);
      return ms;
    };
    for (let i = 0; i < ALLOCATIONS; i++) {
      samples.local.push(await one(local, localPool));
      samples.shared.push(await one(shared, sharedPool));
      // Releases reach etcd in the background; let them finish outside the measured calls.
      await pools.settle();
    }
    const row = (name: string, values: number[]) => `  ${name.padEnd(26)} p50 ${median(values).toFixed(2)} ms, p99 ${quantile(values, 0.99).toFixed(2)} ms`;
    console.log(`1. RequestAddress latency, ${ALLOCATIONS} calls each, interleaved (in process, etcd on loopback):`);
    console.log(row('local pool (SQLite)', samples.local));
    console.log(row('shared pool (SQLite+etcd)', samples.shared));
    console.log(`  ratio shared/local: p50 ${(median(samples.shared) / median(samples.local)).toFixed(1)}x, p99 ${(quantile(samples.shared, 0.99) / quantile(samples.local, 0.99)).toFixed(1)}x`);
    pools.stop();
    await membership.stop();
  } finally {
    client.close();
    await localStore.close();
    await sharedStore.close();
    await etcd.destroy();
  }
}

/** An IPAM with a shared pool on its own store and etcd, as one host's daemon has it. */
async function sharedIpam(dir: string, name: string, cleanup: CleanupStack) {
  const etcd = await startEtcd({ name, address: '127.0.0.1', dataDir: join(dir, `etcd-${name}`), logFile: join(dir, `etcd-${name}.log`) });
  cleanup.defer(`destroy etcd ${name}`, () => etcd.destroy());
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  cleanup.defer(`close the client of ${name}`, () => client.close());
  const store = new SqliteStore(join(dir, `store-${name}`));
  cleanup.defer(`close the store of ${name}`, () => store.close());
  const membership = new HostMembership(client, 'bench', store, log);
  await membership.load();
  cleanup.defer(`leave ${name}`, () => membership.stop());
  const pools = new SharedPoolService(store, client, membership, () => true, log);
  await pools.load();
  cleanup.defer(`stop the pools of ${name}`, () => pools.stop());
  const ipam = new IpamService(store, { shared: pools });
  await ipam.load();
  return { client, pools, ipam };
}

/** 1b: RequestAddress on a shared pool, empty etcd vs 50k endpoint records present, interleaved. */
async function allocationAtScale(dir: string): Promise<void> {
  const cleanup = new CleanupStack();
  try {
    const [empty, full] = [await sharedIpam(dir, 'empty', cleanup), await sharedIpam(dir, 'full', cleanup)];
    const others = ['other1', 'other2', 'other3'];
    const seeding = performance.now();
    await seedCluster(full.client, { endpoints: SCALE_ENDPOINTS, pools: 20, hosts: others, hostOf: (n) => others[n % others.length]! });
    const seeded = (performance.now() - seeding) / 1000;
    const request = { addressSpace: LOCAL_ADDRESS_SPACE, pool: scaleSubnet(0), subPool: '', options: { 'tsnet.pool': scalePoolName(0) }, v6: false };
    const pool = { empty: (await empty.ipam.requestPool(request)).poolId, full: (await full.ipam.requestPool(request)).poolId };
    /** `ALLOCATIONS` rounds, each timing `work` on both sides, the side first alternating. */
    const interleaved = async (work: (side: 'empty' | 'full', round: number) => Promise<unknown>) => {
      const samples = { empty: [] as number[], full: [] as number[] };
      for (let round = 0; round < ALLOCATIONS; round++) {
        for (const side of round % 2 ? (['full', 'empty'] as const) : (['empty', 'full'] as const)) samples[side].push(await timed(() => work(side, round)));
      }
      return samples;
    };
    const allocations = await interleaved((side) => (side === 'empty' ? empty : full).ipam.requestAddress({ poolId: pool[side], address: '', options: {} }));
    // The bound: the same put-if-absent transaction etcd alone takes, on a key range of its own.
    const transactions = await interleaved((side, round) => {
      const key = `bench/scratch/${round}`;
      return (side === 'empty' ? empty : full).client.txn([{ key, absent: true }], [{ put: key, value: 'x' }], [], deadlineFromNow());
    });
    const row = (name: string, values: number[]) => `  ${name.padEnd(44)} p50 ${median(values).toFixed(2)} ms, p99 ${quantile(values, 0.99).toFixed(2)} ms`;
    const ratio = (samples: { empty: number[]; full: number[] }) =>
      `p50 ${(median(samples.full) / median(samples.empty)).toFixed(2)}x, p99 ${(quantile(samples.full, 0.99) / quantile(samples.empty, 0.99)).toFixed(2)}x`;
    console.log(`1b. A shared pool with ${SCALE_ENDPOINTS} endpoint records of other hosts in etcd (seeded in ${seeded.toFixed(1)} s) against an empty etcd, ${ALLOCATIONS} calls each, interleaved:`);
    console.log(row('RequestAddress, empty etcd', allocations.empty));
    console.log(row(`RequestAddress, ${SCALE_ENDPOINTS} records`, allocations.full));
    console.log(`  ratio with/without: ${ratio(allocations)} (goal ≤ 1.2x)`);
    console.log(`  etcd alone, one put-if-absent transaction, ratio with/without: ${ratio(transactions)}`);
  } finally {
    await cleanup.run();
  }
}

/** Three hosts cabled to a switch netns running etcd, each with tsnet --cluster-store. */
async function threeHosts(id: string, cleanup: CleanupStack): Promise<DockerHost[]> {
  const switchNs = `${id}sw`;
  await createSwitch(switchNs, '10.179.0.1/24');
  cleanup.defer('delete switch', () => deleteNetns(switchNs));
  const etcd = await startEtcd({ name: id, netns: switchNs, address: '10.179.0.1', dataDir: join(runDir(id), 'etcd'), logFile: join(runDir(id), 'etcd.log') });
  cleanup.defer('destroy etcd', () => etcd.destroy());
  const hosts: DockerHost[] = [];
  for (let i = 0; i < 3; i++) {
    const host = await createDockerHost({
      dockerdArgs: ['--bridge=none'],
      logLevel: 'warn',
      tsnetCli: CLI,
      tsnetArgs: ['--cluster-store', etcd.url, '--host-id', `bench${i + 1}`],
    });
    cleanup.defer(`destroy ${host.id}`, () => host.destroy());
    await plugIntoSwitch(switchNs, { netns: host.netns, ifname: 'wire', port: `p${i + 1}`, address: `10.179.0.${11 + i}/24` });
    hosts.push(host);
  }
  return hosts;
}

/** 2: connect + disconnect of one running container, local-pool vs shared-pool macvlan network, alternating. */
async function attachOverhead(host: DockerHost): Promise<void> {
  const macvlan = (name: string, subnet: string, ...ipam: string[]) =>
    host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, ...ipam, '-o', 'parent=wire', '--subnet', subnet, name]);
  await macvlan('attach-local', '10.181.0.0/24');
  await macvlan('attach-shared', '10.182.0.0/24', '--ipam-opt', 'tsnet.pool=attach');
  await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.183.0.0/24', 'attach-anchor']);
  await host.dockerOk(['run', '-d', '--pull=never', '--network', 'attach-anchor', '--name', 'attacher', TEST_IMAGE, 'sleep', '36000']);
  const socketPath = host.host.replace(/^unix:\/\//, '');
  const samples = { local: [] as number[], shared: [] as number[] };
  for (let round = 0; round < ATTACH_ROUNDS + 3; round++) {
    for (const kind of round % 2 ? (['shared', 'local'] as const) : (['local', 'shared'] as const)) {
      const ms =
        (await dockerApi(socketPath, `/networks/attach-${kind}/connect`, { Container: 'attacher' })) +
        (await dockerApi(socketPath, `/networks/attach-${kind}/disconnect`, { Container: 'attacher' }));
      if (round >= 3) samples[kind].push(ms);
    }
  }
  console.log(`2. attach overhead (Docker API connect + disconnect, medians of ${ATTACH_ROUNDS}):`);
  console.log(`  local pool ${median(samples.local).toFixed(1)} ms, shared pool ${median(samples.shared).toFixed(1)} ms, ratio ${(median(samples.shared) / median(samples.local)).toFixed(2)}x (goal ≤ 1.2x)`);
  await host.dockerOk(['rm', '-f', 'attacher']);
}

/** 3: 60 concurrent runs over the three hosts; returns the wall time and the runs dockerd saw fail. */
async function burst(hosts: DockerHost[], network: string): Promise<{ ms: number; failed: number }> {
  let failed = 0;
  const ms = await timed(() =>
    Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const host = hosts[i % hosts.length]!;
        const r = await host.docker(['run', '-d', '--pull=never', '--network', network, TEST_IMAGE, 'sleep', '3600'], { timeoutMs: 300_000 });
        if (r.exitCode !== 0) failed++;
      }),
    ),
  );
  await Promise.all(hosts.map((h) => h.removeAllContainers()));
  return { ms, failed };
}

async function throughput(hosts: DockerHost[]): Promise<void> {
  for (const [i, host] of hosts.entries()) {
    // The baseline: each host its own local pool, the subnet split by hand.
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '-o', 'parent=wire', '--subnet', '10.184.0.0/24',
      '--ip-range', `10.184.0.${64 * (i + 1)}/26`, 'split']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=burst', '-o', 'parent=wire',
      '--subnet', '10.185.0.0/24', 'shared']);
  }
  const samples = { split: [] as number[], shared: [] as number[] };
  let failures = 0;
  for (let round = 0; round < BURSTS; round++) {
    for (const network of round % 2 ? (['shared', 'split'] as const) : (['split', 'shared'] as const)) {
      const result = await burst(hosts, network);
      samples[network].push(result.ms);
      failures += result.failed;
    }
  }
  const report = JSON.parse((await hosts[0]!.tsnet.runCli(['cluster', 'ls', '--json'])).stdout) as { racesLost: number };
  console.log(`3. 60 concurrent docker run over 3 hosts (medians of ${BURSTS} bursts):`);
  console.log(`  local pools, hand-split ip-range ${(median(samples.split) / 1000).toFixed(1)} s, shared pool ${(median(samples.shared) / 1000).toFixed(1)} s, ratio ${(median(samples.shared) / median(samples.split)).toFixed(2)}x`);
  console.log(`  runs that failed (dockerd saw an error): ${failures}; races host1 lost to other hosts and retried inside tsnet: ${report.racesLost}`);
}

async function main(): Promise<void> {
  const id = newRunId();
  const dir = runDir(id);
  mkdirSync(dir, { recursive: true });
  const cleanup = new CleanupStack();
  cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  try {
    await allocationLatency(dir);
    await allocationAtScale(dir);
    if (process.env.BENCH_ONLY === 'allocation') return;
    const hosts = await threeHosts(id, cleanup);
    await attachOverhead(hosts[0]!);
    await throughput(hosts);
  } finally {
    await cleanup.run();
  }
}

await main();
