/**
 * The cluster store with 50k endpoint records (Debian's etcd 3.4, started by
 * the test on 127.0.0.1): 20 shared pools, three live hosts and one dead one,
 * each endpoint an address hold and a published name, written straight to
 * etcd as tsnet writes them. What a large cluster needs must complete: the
 * names snapshot (one answer for it all passed grpc-js's 4 MiB limit at about
 * 23k endpoints), `cluster ls`, and the gc of a dead host's 2000 addresses
 * (one transaction each within one 4 s budget stopped half-way). The time of
 * each is printed, never asserted.
 */
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkRecord } from '../../drivers/model.js';
import { gcDeadHost, readCluster } from '../../src/cluster/cluster-admin.js';
import { deadlineFromNow, EtcdClient, MAX_TXN_OPS } from '../../src/cluster/etcd-client.js';
import { aliveKey, type AliveRecord, hostKey, type PoolDefinition, PoolKeys } from '../../src/cluster/keys.js';
import { HostRegistry } from '../../src/cluster/host-registry.js';
import { RemoteNames } from '../../src/cluster/remote-names.js';
import { SharedNetworks } from '../../src/cluster/shared-networks.js';
import { containerHold, putAll, scaleAddress, scalePoolName, scaleSubnet, seedCluster } from '../harness/cluster-records.js';
import { type EtcdServer, newRunId, run, runDir, startEtcd, waitUntil } from '../harness/index.js';

const ENDPOINTS = 50_000;
const POOLS = 20;
const LIVE = ['scale-a', 'scale-b', 'scale-c'];
/** Holds the first DEAD_HOLDS endpoints; the live hosts share the rest. */
const DEAD = 'scale-dead';
const DEAD_HOLDS = 2_000;
/** A second dead host, for the gc it comes back during. */
const BACK = 'scale-back';
const BACK_HOLDS = 1_000;

const log = pino({ level: 'silent' });
const id = newRunId();
const dir = runDir(id);
let etcd: EtcdServer;
let client: EtcdClient;

const hostOf = (endpoint: number) => (endpoint < DEAD_HOLDS ? DEAD : LIVE[endpoint % LIVE.length]!);

const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
  const started = performance.now();
  const result = await work();
  console.log(`cluster store at ${ENDPOINTS} endpoints: ${what} in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  return result;
};

/** `count` address holds of `host` in pool 0, past the other endpoints' addresses. */
const extraHolds = (host: string, count: number, offset: number) =>
  Array.from({ length: count }, (_, n) => [new PoolKeys(scalePoolName(0), 4).address(scaleAddress(0, offset + n)), containerHold(host)] as const);

/** How many address holds each host has in etcd, as etcdctl reads them. */
async function holdsByHost(): Promise<Map<string, number>> {
  const r = await etcd.etcdctl(['get', '--prefix', '--print-value-only', 'tsnet/v1/pools/']);
  expect(r.exitCode, r.stderr).toBe(0);
  const counts = new Map<string, number>();
  for (const host of r.stdout.matchAll(/"host":"([^"]+)"/g)) counts.set(host[1]!, (counts.get(host[1]!) ?? 0) + 1);
  return counts;
}

afterAll(async () => {
  await run('rm', ['-rf', dir]);
});

describe('the cluster store at 50k endpoint records', () => {
  beforeAll(async () => {
    etcd = await startEtcd({ name: id, address: '127.0.0.1', dataDir: join(dir, 'etcd'), logFile: join(dir, 'etcd.log') });
    client = new EtcdClient({ endpoints: [etcd.endpoint] });
    await timed('seeded', async () => {
      await seedCluster(client, { endpoints: ENDPOINTS, pools: POOLS, hosts: [...LIVE, DEAD, BACK], hostOf });
      await putAll(client, extraHolds(BACK, BACK_HOLDS, ENDPOINTS));
    });
  }, 300_000);

  afterAll(async () => {
    client?.close();
    await etcd?.destroy();
  });

  it('reads the names snapshot whole, and serves every other host\'s name', async () => {
    const networks = Array.from({ length: POOLS }, (_, pool) => ({ id: `net${pool}`, ipv4: [{ pool: scaleSubnet(pool), aux: {} }], ipv6Subnets: [] }) as unknown as NetworkRecord);
    const shared = new SharedNetworks(() => networks, () => networks.map((_, pool) => ({ name: scalePoolName(pool), subnet: scaleSubnet(pool) })), (networkId) => networkId);
    const registry = new HostRegistry(client, log);
    const remote = new RemoteNames(client, LIVE[0]!, shared, registry, log);
    const others = Array.from({ length: ENDPOINTS }, (_, n) => hostOf(n)).filter((host) => host !== LIVE[0]).length;
    try {
      await timed('names snapshot read and served', async () => {
        remote.start();
        await waitUntil(() => remote.entries().length === others, { timeoutMs: 60_000, what: `${others} remote names` });
      });
    } finally {
      remote.stop();
      registry.stop();
    }
  });

  it('lists the whole cluster (tsnet cluster ls)', async () => {
    const { view, holds } = await timed('cluster read for ls', () => readCluster(client, LIVE[0]!, deadlineFromNow(30_000)));
    expect(view.pools).toHaveLength(POOLS);
    expect(holds).toHaveLength(ENDPOINTS + BACK_HOLDS);
    expect(view.hosts.find((h) => h.id === DEAD)).toMatchObject({ alive: false, addresses: DEAD_HOLDS, names: DEAD_HOLDS });
  });

  it('frees a dead host\'s 2000 addresses in batches and forgets it', async () => {
    const batches: number[] = [];
    const result = await timed(`gc of a dead host holding ${DEAD_HOLDS} addresses`, () => gcDeadHost(client, DEAD, (freed) => void batches.push(freed)));
    expect(result.freed).toHaveLength(DEAD_HOLDS);
    expect(batches.length).toBe(Math.ceil(DEAD_HOLDS / (MAX_TXN_OPS - 1)));
    const held = await holdsByHost();
    expect(held.get(DEAD)).toBeUndefined();
    expect(LIVE.reduce((sum, host) => sum + (held.get(host) ?? 0), 0)).toBe(ENDPOINTS - DEAD_HOLDS);
    expect(await client.get(hostKey(DEAD), deadlineFromNow())).toBeUndefined();
  });

  it('leaves a host that comes back during its own gc what was not freed yet, and its pools', async () => {
    const back: AliveRecord = { id: BACK, instance: 'back', since: new Date().toISOString(), pid: 1 };
    let cameBackAfter = -1;
    const gc = gcDeadHost(client, BACK, async (freed) => {
      if (cameBackAfter >= 0) return;
      // The host registers again right after the first batch.
      cameBackAfter = freed;
      await client.txn([], [{ put: aliveKey(BACK), value: JSON.stringify(back) }], [], deadlineFromNow());
    });
    await expect(gc).rejects.toThrow(`host: host ${BACK} came back (its tsnet registered again) during gc`);
    expect(cameBackAfter).toBe(MAX_TXN_OPS - 1);
    expect((await holdsByHost()).get(BACK)).toBe(BACK_HOLDS - cameBackAfter);
    const pool = await client.get(new PoolKeys(scalePoolName(0), 4).definition, deadlineFromNow());
    expect((JSON.parse(pool!.value) as PoolDefinition).users).toContain(BACK);
    expect(await client.get(hostKey(BACK), deadlineFromNow())).toBeDefined();
  });
});
