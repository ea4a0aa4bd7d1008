/**
 * Shared pools against a real etcd (Debian's 3.4, started by the test on
 * 127.0.0.1 with its own data dir). Each simulated host is what a daemon
 * builds: its own store, etcd client, membership and IPAM, in this process.
 */
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../src/cluster/cluster.js';
import { gcDeadHost } from '../../src/cluster/cluster-admin.js';
import { ClusterUnreachableError, deadlineFromNow, EtcdClient } from '../../src/cluster/etcd-client.js';
import { HostMembership } from '../../src/cluster/membership.js';
import { SharedPoolService } from '../../src/cluster/shared-pool-service.js';
import { type PendingOp, UndoQueue } from '../../src/cluster/undo-queue.js';
import { IpamService, LOCAL_ADDRESS_SPACE } from '../../src/ipam/ipam-service.js';
import { MemoryStore } from '../../src/store/memory.js';
import { put, type Store, type Write } from '../../src/store/store.js';
import { readFileSync } from 'node:fs';
import { clusterConfig } from '../../src/cluster/cluster-config.js';
import { type EtcdServer, makeTestPki, newRunId, run, runDir, startEtcd, startTcpProxy, waitUntil } from '../harness/index.js';

const GATEWAY = { RequestAddressType: 'com.docker.network.gateway' };
const log = pino({ level: 'silent' });
const id = newRunId();
const dir = runDir(id);
let etcd: EtcdServer;
const hosts: SimHost[] = [];

/** One simulated host: what the daemon wires for --cluster-store. */
interface SimHost {
  id: string;
  store: Store;
  client: EtcdClient;
  membership: HostMembership;
  pools: SharedPoolService;
  ipam: IpamService;
  /** Subnets with a network on this host (after CreateNetwork). */
  networks: Set<string>;
}

async function simHost(hostId: string, store: Store = new MemoryStore(), endpoint = etcd.endpoint): Promise<SimHost> {
  const client = new EtcdClient({ endpoints: [endpoint] });
  const networks = new Set<string>();
  const membership = new HostMembership(client, hostId, store, log, () => pools.drainSoon());
  await membership.load();
  const pools = new SharedPoolService(store, client, membership, (s) => networks.has(s), log);
  await pools.load();
  const ipam = new IpamService(store, { shared: pools });
  await ipam.load();
  const host = { id: hostId, store, client, membership, pools, ipam, networks };
  hosts.push(host);
  return host;
}

async function closeHost(host: SimHost): Promise<void> {
  host.pools.stop();
  await host.membership.stop();
  host.client.close();
}

const poolRequest = (name: string, pool: string, subPool = '') => ({ addressSpace: LOCAL_ADDRESS_SPACE, pool, subPool, options: { 'tsnet.pool': name }, v6: false });

/** Pool + gateway (+ aux), then CreateNetwork: what `docker network create` does on one host. */
async function createNetwork(host: SimHost, name: string, subnet: string, opts: { range?: string; gateway?: string; aux?: string[] } = {}) {
  const { poolId } = await host.ipam.requestPool(poolRequest(name, subnet, opts.range));
  const gateway = (await host.ipam.requestAddress({ poolId, address: opts.gateway ?? '', options: GATEWAY })).address;
  for (const aux of opts.aux ?? []) await host.ipam.requestAddress({ poolId, address: aux, options: {} });
  host.networks.add(subnet);
  return { poolId, gateway };
}

const runContainer = async (host: SimHost, poolId: string, ip = '') => (await host.ipam.requestAddress({ poolId, address: ip, options: {} })).address.split('/')[0]!;

/** The address keys of a pool as etcdctl sees them. */
async function heldInEtcd(name: string): Promise<string[]> {
  const r = await etcd.etcdctl(['get', '--prefix', '--keys-only', `tsnet/v1/pools/${name}/v4/addresses/`]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean).map((k) => k.split('/').pop()!);
}

/** The address keys of a pool with their lease (0: none, the hold lasts until released). */
async function holdLeases(name: string): Promise<Map<string, string>> {
  const r = await etcd.etcdctl(['get', '--prefix', '-w', 'json', `tsnet/v1/pools/${name}/v4/addresses/`]);
  expect(r.exitCode, r.stderr).toBe(0);
  const kvs = (JSON.parse(r.stdout) as { kvs?: Array<{ key: string; lease?: number }> }).kvs ?? [];
  return new Map(kvs.map((kv) => [Buffer.from(kv.key, 'base64').toString().split('/').pop()!, String(kv.lease ?? 0)]));
}

afterAll(async () => {
  await run('rm', ['-rf', dir]);
});

describe('shared pools in etcd', () => {
  beforeAll(async () => {
    etcd = await startEtcd({ name: id, address: '127.0.0.1', dataDir: join(dir, 'etcd'), logFile: join(dir, 'etcd.log') });
  });
  afterAll(async () => {
    for (const host of hosts) await closeHost(host).catch(() => undefined);
    await etcd?.destroy();
  });

  it('lets the first host define a pool and refuses a different subnet or range, naming both', async () => {
    const [a, b] = [await simHost('def-a'), await simHost('def-b')];
    await createNetwork(a, 'def', '10.161.0.0/24', { range: '10.161.0.128/25' });
    await expect(b.ipam.requestPool(poolRequest('def', '10.161.1.0/24'))).rejects.toThrow(
      'Options.tsnet.pool: pool def is 10.161.0.0/24 with ip-range 10.161.0.128/25 (defined by host def-a); this network asks 10.161.1.0/24 without ip-range',
    );
    await expect(b.ipam.requestPool(poolRequest('def', '10.161.0.0/24', '10.161.0.0/25'))).rejects.toThrow(/this network asks 10\.161\.0\.0\/24 with ip-range 10\.161\.0\.0\/25/);
    const { poolId } = await b.ipam.requestPool(poolRequest('def', '10.161.0.0/24', '10.161.0.128/25'));
    expect(poolId).toBe('tsnet-cluster/def/10.161.0.0/24');
  });

  it('refuses bad pool names and shared pools without a cluster store, before anything is written', async () => {
    const a = await simHost('names-a');
    await expect(a.ipam.requestPool(poolRequest('has space', '10.162.0.0/24'))).rejects.toThrow('Options.tsnet.pool: "has space" may only hold');
    await expect(a.ipam.requestPool(poolRequest('a/b', '10.162.0.0/24'))).rejects.toThrow('Options.tsnet.pool');
    await expect(a.ipam.requestPool(poolRequest('x'.repeat(64), '10.162.0.0/24'))).rejects.toThrow('longer than 63 bytes');
    await expect(a.ipam.requestPool(poolRequest('auto', ''))).rejects.toThrow('Pool: a shared pool (tsnet.pool) needs an explicit --subnet');
    const alone = new IpamService(new MemoryStore());
    await expect(alone.requestPool(poolRequest('lan', '10.162.0.0/24'))).rejects.toThrow('Options.tsnet.pool: shared pools need the cluster store');
    expect((await etcd.etcdctl(['get', '--prefix', '--keys-only', 'tsnet/v1/pools/has'])).stdout).toBe('');
  });

  it('reserves the gateway once for all hosts and refuses another --gateway', async () => {
    const [a, b] = [await simHost('gw-a'), await simHost('gw-b')];
    expect((await createNetwork(a, 'gw', '10.163.0.0/24')).gateway).toBe('10.163.0.1/24');
    expect((await createNetwork(b, 'gw', '10.163.0.0/24')).gateway).toBe('10.163.0.1/24');
    const c = await simHost('gw-c');
    const { poolId } = await c.ipam.requestPool(poolRequest('gw', '10.163.0.0/24'));
    await expect(c.ipam.requestAddress({ poolId, address: '10.163.0.254', options: GATEWAY })).rejects.toThrow(
      'Address: pool gw has gateway 10.163.0.1 on every host; give --gateway 10.163.0.1 or leave it out',
    );
  });

  it('gives 3 hosts × 20 concurrent containers 60 distinct addresses of a 62-address range, never the gateway', async () => {
    const three = [await simHost('run-a'), await simHost('run-b'), await simHost('run-c')];
    const nets: Array<{ poolId: string }> = [];
    // The range holds 62 container addresses: the hosts cannot help running into each other.
    for (const h of three) nets.push(await createNetwork(h, 'run', '10.164.0.0/24', { range: '10.164.0.0/26' }));
    const addresses = (await Promise.all(three.flatMap((h, i) => Array.from({ length: 20 }, () => runContainer(h, nets[i]!.poolId))))).sort();
    expect(new Set(addresses).size).toBe(60);
    expect(addresses).not.toContain('10.164.0.1');
    expect((await heldInEtcd('run')).length).toBe(61);
    await expect(runContainer(three[0]!, nets[0]!.poolId)).resolves.toMatch(/^10\.164\.0\./);
    await expect(runContainer(three[1]!, nets[1]!.poolId)).resolves.toMatch(/^10\.164\.0\./);
    await expect(runContainer(three[2]!, nets[2]!.poolId)).rejects.toThrow('Address: no free address left in shared pool run 10.164.0.0/24 (ip-range 10.164.0.0/26)');
  });

  it('makes --ip cluster-wide: an address held elsewhere is refused naming the host', async () => {
    const [a, b] = [await simHost('ip-a'), await simHost('ip-b')];
    const na = await createNetwork(a, 'ip', '10.165.0.0/24', { aux: ['10.165.0.2'] });
    const nb = await createNetwork(b, 'ip', '10.165.0.0/24', { aux: ['10.165.0.2'] });
    expect(await runContainer(a, na.poolId, '10.165.0.50')).toBe('10.165.0.50');
    await expect(runContainer(b, nb.poolId, '10.165.0.50')).rejects.toThrow('Address: 10.165.0.50 is already allocated in pool ip: held by host ip-a');
    await expect(runContainer(a, na.poolId, '10.165.0.50')).rejects.toThrow('held by this host');
    await expect(runContainer(b, nb.poolId, '10.165.0.2')).rejects.toThrow('it is an aux address of the pool');
    await expect(runContainer(b, nb.poolId, '10.165.0.1')).rejects.toThrow("it is the pool's gateway");
    await expect(runContainer(b, nb.poolId, '10.166.0.1')).rejects.toThrow('Address: 10.166.0.1 is outside pool ip');
  });

  it('refuses container addresses while no tsnet network uses the pool (another driver\'s network)', async () => {
    const a = await simHost('foreign-a');
    const { poolId } = await a.ipam.requestPool(poolRequest('foreign', '10.160.0.0/24'));
    await expect(runContainer(a, poolId)).rejects.toThrow('PoolID: shared pool foreign serves -d tsnet networks only, and this host has no tsnet network on 10.160.0.0/24');
    expect(await heldInEtcd('foreign')).toEqual([]);
  });

  it('shares IPv6 pools the same way', async () => {
    const [a, b] = [await simHost('six-a'), await simHost('six-b')];
    const v6 = (host: SimHost) => host.ipam.requestPool({ ...poolRequest('dual', 'fd00:176::/64'), v6: true });
    const [pa, pb] = [(await v6(a)).poolId, (await v6(b)).poolId];
    for (const [host, poolId] of [[a, pa], [b, pb]] as const) {
      expect((await host.ipam.requestAddress({ poolId, address: '', options: GATEWAY })).address).toBe('fd00:176::1/64');
      host.networks.add('fd00:176::/64');
    }
    const addresses = await Promise.all([runContainer(a, pa), runContainer(b, pb), runContainer(a, pa, 'fd00:176::99')]);
    expect(new Set(addresses).size).toBe(3);
    await expect(runContainer(b, pb, 'fd00:176::99')).rejects.toThrow('held by host six-a');
    const r = await etcd.etcdctl(['get', '--prefix', '--keys-only', 'tsnet/v1/pools/dual/v6/addresses/']);
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(4);
  });

  it('releases only what this host holds, and then another host may take it', async () => {
    const [a, b] = [await simHost('rel-a'), await simHost('rel-b')];
    const na = await createNetwork(a, 'rel', '10.167.0.0/24');
    const nb = await createNetwork(b, 'rel', '10.167.0.0/24');
    await runContainer(a, na.poolId, '10.167.0.9');
    await b.ipam.releaseAddress(nb.poolId, '10.167.0.9');
    await b.pools.settle();
    expect(await heldInEtcd('rel')).toContain('10.167.0.9');
    await a.ipam.releaseAddress(na.poolId, '10.167.0.9');
    await a.pools.settle();
    expect(await heldInEtcd('rel')).not.toContain('10.167.0.9');
    expect(await runContainer(b, nb.poolId, '10.167.0.9')).toBe('10.167.0.9');
  });

  it('deletes the pool with its gateway and aux addresses when the last host leaves', async () => {
    const [a, b] = [await simHost('last-a'), await simHost('last-b')];
    const na = await createNetwork(a, 'last', '10.168.0.0/24', { aux: ['10.168.0.3'] });
    const nb = await createNetwork(b, 'last', '10.168.0.0/24', { aux: ['10.168.0.3'] });
    await a.ipam.releasePool(na.poolId);
    await a.pools.settle();
    expect((await heldInEtcd('last')).sort()).toEqual(['10.168.0.1', '10.168.0.3']);
    await b.ipam.releasePool(nb.poolId);
    await b.pools.settle();
    expect((await etcd.etcdctl(['get', '--prefix', '--keys-only', 'tsnet/v1/pools/last/'])).stdout).toBe('');
  });

  it('undoes a hold written to etcd by a daemon killed before its SQLite commit', async () => {
    // The store fails the commit that would record the address: as if the daemon died right after the etcd write.
    const store = new MemoryStore();
    let failRecording = false;
    const dying: Store = {
      readAll: (c) => store.readAll(c),
      commit: async (writes: readonly Write[]) => {
        if (failRecording && writes.some((w) => w.collection === 'shared-addresses')) throw new Error('killed');
        return store.commit(writes);
      },
      close: () => store.close(),
    };
    const a = await simHost('crash-a', dying);
    const { poolId } = await createNetwork(a, 'crash', '10.169.0.0/24');
    failRecording = true;
    await expect(runContainer(a, poolId, '10.169.0.77')).rejects.toThrow('killed');
    expect(await heldInEtcd('crash')).toContain('10.169.0.77');
    await closeHost(a);
    // The restarted daemon (same state) finds the note and undoes the hold.
    const again = await simHost('crash-a', store);
    again.pools.drainSoon();
    await again.pools.settle();
    expect(await heldInEtcd('crash')).toEqual(['10.169.0.1']);
  });

  it('refuses a second live daemon with the same host ID; a restart on the same state takes over at once', async () => {
    const store = new MemoryStore();
    const first = await simHost('twin', store);
    await first.membership.ensureAlive(deadlineFromNow());
    const other = await simHost('twin');
    await expect(other.membership.ensureAlive(deadlineFromNow())).rejects.toThrow(/--host-id: host ID twin is alive in the cluster already/);
    first.client.close(); // killed: its lease would live on for its TTL
    const restarted = await simHost('twin', store);
    await expect(restarted.membership.ensureAlive(deadlineFromNow())).resolves.toBeUndefined();
  });

  it('frees a dead host\'s addresses with gc, and refuses to gc a live host', async () => {
    const [a, b] = [await simHost('gc-a'), await simHost('gc-b')];
    const na = await createNetwork(a, 'gc', '10.170.0.0/24');
    const nb = await createNetwork(b, 'gc', '10.170.0.0/24');
    await runContainer(a, na.poolId, '10.170.0.10');
    await runContainer(b, nb.poolId, '10.170.0.20');
    await expect(gcDeadHost(a.client, 'gc-b')).rejects.toThrow('host: host gc-b is alive');
    await closeHost(b);
    const result = await gcDeadHost(a.client, 'gc-b');
    expect(result).toEqual({ host: 'gc-b', freed: ['gc 10.170.0.20'], pools: ['gc'] });
    expect((await heldInEtcd('gc')).sort()).toEqual(['10.170.0.1', '10.170.0.10']);
    await expect(gcDeadHost(a.client, 'gc-b')).rejects.toThrow('no host gc-b');
  });

  it('frees a dead host\'s addresses by itself with --reclaim-after', async () => {
    const keeper = new Cluster({ endpoints: [etcd.endpoint], hostId: 'reclaim-keeper', reclaimAfterMs: 1000 }, new MemoryStore(), log);
    await keeper.sharedPools(() => false);
    keeper.start();
    try {
      const b = await simHost('reclaim-b');
      const nb = await createNetwork(b, 'reclaim', '10.174.0.0/24');
      await runContainer(b, nb.poolId, '10.174.0.40');
      await closeHost(b);
      await waitUntil(async () => !(await heldInEtcd('reclaim')).includes('10.174.0.40'), { timeoutMs: 20_000, what: 'the reclaimer to free 10.174.0.40' });
      // The host's record goes last, after its addresses and pool memberships.
      await waitUntil(async () => !(await keeper.report(new Set())).hosts.some((h) => h.id === 'reclaim-b'), { timeoutMs: 10_000, what: 'the reclaimer to forget reclaim-b' });
    } finally {
      await keeper.stop();
    }
  });

  it('refuses addresses from a pool deleted behind this host\'s back, and writes none', async () => {
    const a = await simHost('gone-a');
    const { poolId } = await createNetwork(a, 'gone', '10.159.0.0/24');
    expect((await etcd.etcdctl(['del', '--prefix', 'tsnet/v1/pools/gone/'])).exitCode).toBe(0);
    await expect(runContainer(a, poolId)).rejects.toThrow('PoolID: pool gone is no longer in the cluster store');
    await expect(runContainer(a, poolId, '10.159.0.9')).rejects.toThrow('PoolID: pool gone is no longer in the cluster store');
    expect(await heldInEtcd('gone')).toEqual([]);
  });

  it('reports the holds etcd says this host has that its own record does not know, and gc frees them', async () => {
    const store = new MemoryStore();
    const cluster = new Cluster({ endpoints: [etcd.endpoint], hostId: 'orph-a' }, store, log);
    const ipam = new IpamService(store, { shared: await cluster.sharedPools(() => true) });
    try {
      const { poolId } = await ipam.requestPool(poolRequest('orph', '10.158.0.0/24'));
      const kept = (await ipam.requestAddress({ poolId, address: '', options: {} })).address.split('/')[0]!;
      // What a lost state directory leaves behind:
      const lost = JSON.stringify({ kind: 'container', host: 'orph-a', holder: 'lost', since: new Date().toISOString() });
      expect((await etcd.etcdctl(['put', 'tsnet/v1/pools/orph/v4/addresses/10.158.0.200', lost])).exitCode).toBe(0);
      const report = await cluster.report(new Set());
      expect(report.orphans).toEqual(['orph 10.158.0.200']);
      // The address it did hand out has no endpoint here (no network service in this test):
      expect(report.unattached).toEqual([`orph ${kept}`]);
      expect((await cluster.report(new Set([kept]))).unattached).toEqual([]);
      expect(await cluster.gc()).toEqual({ host: 'orph-a', freed: ['orph 10.158.0.200'], pools: [] });
      expect(await heldInEtcd('orph')).toEqual([kept]);
      expect((await cluster.report(new Set([kept]))).orphans).toEqual([]);
    } finally {
      await cluster.stop();
    }
  });

  it('refuses garbage in the store, naming the key, and changes nothing', async () => {
    const a = await simHost('junk-a');
    expect((await etcd.etcdctl(['put', 'tsnet/v1/pools/junk/v4/definition', 'not json'])).exitCode).toBe(0);
    await expect(a.ipam.requestPool(poolRequest('junk', '10.171.0.0/24'))).rejects.toThrow(
      'cluster store: key tsnet/v1/pools/junk/v4/definition: is not JSON',
    );
    expect(a.pools.localPools()).toEqual([]);
  });

  it('fails fast while etcd hangs, allocates nothing, queues releases, and recovers without a restart', async () => {
    const store = new MemoryStore();
    const a = await simHost('hang-a', store);
    const { poolId } = await createNetwork(a, 'hang', '10.172.0.0/24');
    const kept = await runContainer(a, poolId);
    await etcd.pause();
    try {
      const started = Date.now();
      const [first, ...behind] = await Promise.allSettled([runContainer(a, poolId), runContainer(a, poolId), runContainer(a, poolId)]);
      expect(first).toMatchObject({ status: 'rejected', reason: { message: `cluster store: etcd://${etcd.endpoint} is unreachable (no answer within 4 s); nothing was allocated or released` } });
      // Those in line behind it are not made to wait 4 s more each: the store just failed to answer.
      for (const result of behind) {
        expect(result).toMatchObject({ status: 'rejected', reason: { message: expect.stringMatching(/is unreachable \(it did not answer a request ahead of this one; this request waited \d+\.\d s in line behind other requests of pool hang first\)/) } });
      }
      // The protocol contract (dockerd must get an answer), not a performance figure.
      expect(Date.now() - started).toBeLessThan(5000);
      // The undo note names the address whose write may have happened: undoing it reads no pool.
      const notes = [...(await store.readAll<{ address?: string }>('cluster-pending')).values()];
      expect(notes).toEqual([expect.objectContaining({ op: 'release', address: expect.stringMatching(/^10\.172\.0\.\d+$/) })]);
      await a.ipam.releaseAddress(poolId, kept);
      expect(a.pools.pendingCount).toBeGreaterThan(0);
    } finally {
      etcd.resume();
    }
    await a.pools.settle();
    a.pools.drainSoon();
    await a.pools.settle();
    expect(a.pools.pendingCount).toBe(0);
    // Nothing of the failed request is held for good: the hung etcd may apply its write when it goes on,
    // so where the undo found nothing yet a placeholder on an expiring lease blocks that late write.
    const left = await holdLeases('hang');
    expect(left.get('10.172.0.1')).toBe('0');
    expect([...left].filter(([address]) => address !== '10.172.0.1').every(([, lease]) => lease !== '0'), JSON.stringify([...left])).toBe(true);
    expect(await runContainer(a, poolId)).toMatch(/^10\.172\.0\./);
  });

  it('goes on with the releases queued behind one that etcd refuses', async () => {
    const store = new MemoryStore();
    // A note etcd cannot take (its hold value is bigger than etcd's 1.5 MiB request limit), queued first.
    const poisoned: PendingOp = {
      op: 'release', name: 'poison', family: 4, address: '10.175.0.9',
      value: JSON.stringify({ kind: 'container', host: 'poison-a', holder: 'x'.repeat(2 * 1024 * 1024), since: new Date().toISOString() }),
    };
    await store.commit([put('cluster-pending', UndoQueue.keyOf(poisoned), poisoned)]);
    const a = await simHost('poison-a', store);
    const { poolId } = await createNetwork(a, 'poison', '10.175.0.0/24');
    const ip = await runContainer(a, poolId);
    await a.ipam.releaseAddress(poolId, ip);
    await a.pools.settle();
    expect(await heldInEtcd('poison')).toEqual(['10.175.0.1']);
    // The refused note stays queued (it is retried with backoff), alone.
    expect(a.pools.pendingCount).toBe(1);
    expect([...(await store.readAll('cluster-pending')).keys()]).toEqual([UndoQueue.keyOf(poisoned)]);
  });

  it('claims back, when it registers again, an address freed while it was away, and reports one given to another host', async () => {
    const [a, b] = [await simHost('back-a'), await simHost('back-b')];
    const { poolId } = await createNetwork(a, 'back', '10.176.0.0/24');
    const netB = await createNetwork(b, 'back', '10.176.0.0/24');
    const [freed, taken] = [await runContainer(a, poolId), await runContainer(a, poolId)];
    // A gc of a while it was cut off: both holds deleted; b then gets one of them.
    expect((await etcd.etcdctl(['del', `tsnet/v1/pools/back/v4/addresses/${freed}`])).exitCode).toBe(0);
    expect((await etcd.etcdctl(['del', `tsnet/v1/pools/back/v4/addresses/${taken}`])).exitCode).toBe(0);
    await runContainer(b, netB.poolId, taken);
    await a.pools.checkHolds();
    expect(await heldInEtcd('back')).toContain(freed);
    expect(a.pools.conflicts).toEqual([`back ${taken} (held by host back-b)`]);
    // b's container keeps its address; a's record of freed is in etcd again under a's own hold.
    const value = (await etcd.etcdctl(['get', '--print-value-only', `tsnet/v1/pools/back/v4/addresses/${freed}`])).stdout.trim();
    expect(a.pools.knowsHold(value)).toBe(true);
  });

  it('writes its underlay address into its registry entry, and again when it changed, keeping when it joined', async () => {
    let underlay = { address: '192.0.2.10', port: 4789 };
    const client = new EtcdClient({ endpoints: [etcd.endpoint] });
    const membership = new HostMembership(client, 'under-a', new MemoryStore(), log, () => {}, 10, async () => underlay);
    try {
      await membership.load();
      await membership.ensureAlive(deadlineFromNow());
      const entry = async () => JSON.parse((await etcd.etcdctl(['get', '--print-value-only', 'tsnet/v1/hosts/under-a'])).stdout) as Record<string, unknown>;
      const first = await entry();
      expect(first).toMatchObject({ id: 'under-a', underlay: '192.0.2.10', vxlanPort: 4789 });
      // The host comes back with another address (a new DHCP lease): its entry follows, its join date stays.
      await membership.stop();
      underlay = { address: '192.0.2.11', port: 4789 };
      const again = new HostMembership(client, 'under-a', new MemoryStore(), log, () => {}, 10, async () => underlay);
      await again.load();
      await again.ensureAlive(deadlineFromNow());
      expect(await entry()).toEqual({ ...first, underlay: '192.0.2.11' });
      await again.stop();
    } finally {
      await membership.stop();
      client.close();
    }
  });

  it('revokes the lease of a registration that failed after etcd granted it', async () => {
    const leases = async () => {
      const r = await etcd.etcdctl(['lease', 'list']);
      expect(r.exitCode, r.stderr).toBe(0);
      return r.stdout.split('\n').filter((line) => /^[0-9a-f]+$/.test(line.trim())).length;
    };
    /** Loses the answer to the registration's first write, as a cut connection would. */
    class LosesFirstClaim extends EtcdClient {
      lost = false;
      override txn(...args: Parameters<EtcdClient['txn']>) {
        if (!this.lost && args[1].some((op) => 'put' in op && op.put.startsWith('tsnet/v1/alive/'))) {
          this.lost = true;
          return Promise.reject(new ClusterUnreachableError(this.url, 'the answer was lost'));
        }
        return super.txn(...args);
      }
    }
    const client = new LosesFirstClaim({ endpoints: [etcd.endpoint] });
    const membership = new HostMembership(client, 'lease-a', new MemoryStore(), log);
    try {
      await membership.load();
      const before = await leases();
      await expect(membership.ensureAlive(deadlineFromNow())).rejects.toThrow('the answer was lost');
      expect(await leases()).toBe(before);
      await membership.ensureAlive(deadlineFromNow());
      expect(await leases()).toBe(before + 1);
    } finally {
      await membership.stop();
      client.close();
    }
  });

  it('serves 12 concurrent runs through an etcd that takes 450 ms a call: no request spends its budget waiting in line', async () => {
    const slow = await startTcpProxy('127.0.0.1', etcd.clientPort, { latencyMs: 225 });
    try {
      const a = await simHost('slow-a', new MemoryStore(), slow.endpoint);
      const { poolId } = await createNetwork(a, 'slow', '10.174.0.0/24');
      const results = await Promise.allSettled(Array.from({ length: 12 }, () => runContainer(a, poolId)));
      expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
      const addresses = results.map((r) => (r as PromiseFulfilledResult<string>).value);
      expect(new Set(addresses).size).toBe(12);
      expect(a.pools.pendingCount).toBe(0);
      expect((await heldInEtcd('slow')).sort()).toEqual(['10.174.0.1', ...addresses].sort());
    } finally {
      await slow.close();
    }
  });

  it('tells an error etcd answered from an etcd it cannot reach', async () => {
    const a = await simHost('answer-a');
    await expect(a.client.txn([], [{ put: 'tsnet/v1/too-large', value: 'x'.repeat(2_000_000) }], [], deadlineFromNow())).rejects.toThrow(
      `cluster store: etcd://${etcd.endpoint} answered with an error (transaction: etcdserver: request is too large); nothing was allocated or released`,
    );
  });

  it('keeps working across an etcd kill and restart on the same data', async () => {
    const a = await simHost('restart-a');
    const { poolId } = await createNetwork(a, 'restart', '10.173.0.0/24');
    const before = await runContainer(a, poolId);
    await etcd.kill9();
    await expect(runContainer(a, poolId)).rejects.toThrow(/cluster store: etcd:\/\/.* is unreachable/);
    await etcd.start();
    const after = await runContainer(a, poolId);
    expect(after).not.toBe(before);
    // Held for good: the gateway and the two containers; the failed request's address at most by an expiring placeholder.
    const held = [...(await holdLeases('restart'))].filter(([, lease]) => lease === '0').map(([address]) => address);
    expect(held.sort()).toEqual(['10.173.0.1', before, after].sort());
  });
});

describe('a TLS cluster store', () => {
  let secure: EtcdServer;
  beforeAll(async () => {
    const pki = await makeTestPki(join(dir, 'pki'), '127.0.0.1');
    secure = await startEtcd({ name: `${id}tls`, address: '127.0.0.1', dataDir: join(dir, 'etcd-tls'), logFile: join(dir, 'etcd-tls.log'), pki });
  });
  afterAll(async () => {
    await secure?.destroy();
  });

  it('talks TLS with --cluster-ca/--cluster-cert/--cluster-key, and names the store when the CA is wrong', async () => {
    const pkiDir = join(dir, 'pki');
    const flags = { clusterStore: `etcd://${secure.endpoint}`, hostId: 'tls-a', clusterCa: join(pkiDir, 'ca.pem'), clusterCert: join(pkiDir, 'client.pem'), clusterKey: join(pkiDir, 'client.key') };
    const client = new EtcdClient(clusterConfig(flags)!);
    try {
      const result = await client.txn([], [{ put: 'tsnet/v1/probe', value: 'x' }], [], deadlineFromNow());
      expect(result.succeeded).toBe(true);
      expect((await client.get('tsnet/v1/probe', deadlineFromNow()))?.value).toBe('x');
    } finally {
      client.close();
    }
    // A CA that did not sign the server's certificate: refused, naming the store.
    const stranger = new EtcdClient({ endpoints: [secure.endpoint], tls: { ca: readFileSync(join(pkiDir, 'client.pem')), cert: readFileSync(flags.clusterCert), key: readFileSync(flags.clusterKey) } });
    try {
      await expect(stranger.get('tsnet/v1/probe', deadlineFromNow())).rejects.toThrow(`cluster store: etcd://${secure.endpoint} is unreachable`);
    } finally {
      stranger.close();
    }
  });
});
