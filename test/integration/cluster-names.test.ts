/**
 * Cross-host names against a real etcd (Debian's 3.4 on 127.0.0.1, its own
 * data dir): each simulated host is what the daemon wires for
 * --cluster-store — an etcd client, its membership (lease), a NamePublisher
 * of its own entries and a RemoteNames of the others' — in this process,
 * with a short lease so that a dead host's names expire quickly.
 */
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkRecord } from '../../drivers/model.js';
import { EtcdClient } from '../../src/cluster/etcd-client.js';
import { HostMembership } from '../../src/cluster/membership.js';
import { NamePublisher } from '../../src/cluster/name-publisher.js';
import { HostRegistry } from '../../src/cluster/host-registry.js';
import { RemoteNames } from '../../src/cluster/remote-names.js';
import { type PoolSubnet, SharedNetworks } from '../../src/cluster/shared-networks.js';
import type { NameEntry, RecordSource } from '../../src/dns/name-entry.js';
import { MemoryStore } from '../../src/store/memory.js';
import { type EtcdServer, newRunId, run, runDir, startEtcd, startTcpProxy, type TcpProxy, waitUntil } from '../harness/index.js';

const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
const id = newRunId();
const dir = runDir(id);
const LEASE_TTL_SECONDS = 2;
let etcd: EtcdServer;
const hosts: SimHost[] = [];

/** A host's own entries, as LocalRecords would give them; the test changes them. */
class TestRecords implements RecordSource {
  private list: NameEntry[] = [];
  private readonly listeners = new Set<() => void>();
  entries(): NameEntry[] {
    return this.list;
  }
  set(entries: NameEntry[]): void {
    this.list = entries;
    this.listeners.forEach((l) => l());
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

interface SimHost {
  id: string;
  /** The host's way to etcd: cut it and the host is dead to the cluster. */
  wire: TcpProxy;
  client: EtcdClient;
  membership: HostMembership;
  records: TestRecords;
  publisher: NamePublisher;
  registry: HostRegistry;
  remote: RemoteNames;
}

const network = (networkId: string, subnet: string): NetworkRecord =>
  ({ id: networkId, ipv4: [{ pool: subnet, aux: {} }], ipv6Subnets: [] }) as unknown as NetworkRecord;

/**
 * A host with one network per entry of `networks` (ID → subnet, named
 * `<host>-<ID>` in its DNS) and shared pools `pools` (one per subnet).
 */
async function simHost(hostId: string, networks: Record<string, string>, pools: PoolSubnet[]): Promise<SimHost> {
  const wire = await startTcpProxy('127.0.0.1', etcd.clientPort);
  const client = new EtcdClient({ endpoints: [wire.endpoint] });
  const records = new TestRecords();
  const shared = new SharedNetworks(
    () => Object.entries(networks).map(([networkId, subnet]) => network(networkId, subnet)),
    () => pools,
    (networkId) => `${hostId}-${networkId}`,
  );
  // What Cluster wires: a registration rebinds the names to the new lease.
  const membership: HostMembership = new HostMembership(client, hostId, new MemoryStore(), log, () => publisher.leaseChanged(), LEASE_TTL_SECONDS);
  await membership.load();
  const publisher: NamePublisher = new NamePublisher(client, membership, records, shared, log);
  records.onChange(() => publisher.publishSoon());
  const registry = new HostRegistry(client, log);
  const remote = new RemoteNames(client, hostId, shared, registry, log);
  remote.start();
  membership.start();
  const host = { id: hostId, wire, client, membership, records, publisher, registry, remote };
  hosts.push(host);
  return host;
}

/** The host dies (or loses the network): etcd hears nothing more from it, and its lease runs out on its own. */
const killHost = (host: SimHost) => host.wire.cut();

async function stopHost(host: SimHost): Promise<void> {
  host.publisher.stop();
  host.remote.stop();
  host.registry.stop();
  await host.membership.stop();
  host.client.close();
  await host.wire.close();
}

const entry = (networkId: string, endpointId: string, names: string[], ipv4: string, ipv6?: string): NameEntry => ({
  networkId,
  networkName: networkId,
  endpointId,
  names,
  ipv4,
  ...(ipv6 ? { ipv6 } : {}),
});

/** What a host's DNS gets from the other hosts, as `network name: names address`, sorted. */
const served = (host: SimHost) =>
  host.remote
    .entries()
    .map((e) => `${e.networkId} ${e.networkName}: ${e.names.join(',') || '-'} ${[e.ipv4, e.ipv6].filter(Boolean).join(' ')}`)
    .sort();

const servesExactly = (host: SimHost, expected: string[], what: string) =>
  waitUntil(() => JSON.stringify(served(host)) === JSON.stringify(expected), {
    timeoutMs: 15_000,
    intervalMs: 50,
    what,
    diagnostics: () => `served: ${JSON.stringify(served(host))}`,
  });

/** The pool-names/ keys in etcd, as etcdctl sees them. */
async function keysInEtcd(prefix = 'tsnet/v1/pool-names/'): Promise<string[]> {
  const r = await etcd.etcdctl(['get', '--prefix', '--keys-only', prefix]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean).sort();
}

const LAN = { name: 'lan', subnet: '10.181.0.0/24' };
const OTHER = { name: 'other', subnet: '10.181.1.0/24' };
/** Pool lan's IPv6 half (a dual-stack shared network). */
const LAN6 = { name: 'lan', subnet: 'fd81::/64' };

describe('names shared through the cluster store', () => {
  beforeAll(async () => {
    etcd = await startEtcd({ name: id, address: '127.0.0.1', dataDir: join(dir, 'etcd'), logFile: join(dir, 'etcd.log') });
  });
  afterAll(async () => {
    for (const host of hosts) await stopHost(host).catch(() => undefined);
    await etcd?.destroy();
    await run('rm', ['-rf', dir]);
  });

  it('serves another host\'s names of a shared network under this host\'s network on the same pool, never its own twice', async () => {
    // Host a: network A1 on pool lan, A2 a local network. Host b: B1 on lan, B2 on pool other (which a does not use).
    const a = await simHost('xa', { A1: LAN.subnet, A2: '10.181.9.0/24' }, [LAN, LAN6]);
    const b = await simHost('xb', { B1: LAN.subnet, B2: OTHER.subnet }, [LAN, LAN6, OTHER]);
    b.records.set([
      entry('B1', 'e'.repeat(64), ['web', 'www'], '10.181.0.20', 'fd81::20'),
      entry('B1', 'f'.repeat(64), [], '10.181.0.21'),
      entry('B2', 'a'.repeat(64), ['elsewhere'], '10.181.1.5'),
    ]);
    a.records.set([entry('A1', '1'.repeat(64), ['db'], '10.181.0.30'), entry('A2', '2'.repeat(64), ['local'], '10.181.9.2')]);

    await servesExactly(a, ['A1 xa-A1: - 10.181.0.21', 'A1 xa-A1: web,www 10.181.0.20 fd81::20'], 'a to serve b\'s names of pool lan');
    await servesExactly(b, ['B1 xb-B1: db 10.181.0.30'], 'b to serve a\'s names of pool lan');
    // a follows the pools it has a network on, not pool other.
    expect(a.remote.followedPools()).toEqual(['lan']);
    // Only shared-pool networks are published: A2 (local) is not, B2 (pool other) is but a has no network on it.
    expect(await keysInEtcd()).toEqual([
      `tsnet/v1/pool-names/lan/xa/${'1'.repeat(64)}`,
      `tsnet/v1/pool-names/lan/xb/${'e'.repeat(64)}`,
      `tsnet/v1/pool-names/lan/xb/${'f'.repeat(64)}`,
      `tsnet/v1/pool-names/other/xb/${'a'.repeat(64)}`,
    ]);
    // Every name is bound to its host's lease.
    const leases = await etcd.etcdctl(['get', '--prefix', '-w', 'json', 'tsnet/v1/pool-names/']);
    const kvs = (JSON.parse(leases.stdout) as { kvs: Array<{ lease: number }> }).kvs;
    expect(kvs.map((kv) => kv.lease).every((l) => l > 0)).toBe(true);

    // A container named later, one removed: followed within moments.
    b.records.set([entry('B1', 'f'.repeat(64), ['api'], '10.181.0.21')]);
    await servesExactly(a, ['A1 xa-A1: api 10.181.0.21'], 'a to follow b\'s rename and removal');
    expect((await keysInEtcd()).filter((key) => key.includes('/xb/'))).toEqual([`tsnet/v1/pool-names/lan/xb/${'f'.repeat(64)}`]);
    await stopHost(a);
    await stopHost(b);
  });

  it('drops a dead host\'s names when its lease expires, and a stopped host\'s at once', async () => {
    const a = await simHost('da', { A1: LAN.subnet }, [LAN]);
    const b = await simHost('db', { B1: LAN.subnet }, [LAN]);
    const c = await simHost('dc', { C1: LAN.subnet }, [LAN]);
    b.records.set([entry('B1', 'b'.repeat(64), ['fromb'], '10.181.0.40')]);
    c.records.set([entry('C1', 'c'.repeat(64), ['fromc'], '10.181.0.41')]);
    await servesExactly(a, ['A1 da-A1: fromb 10.181.0.40', 'A1 da-A1: fromc 10.181.0.41'], 'a to serve b\'s and c\'s names');
    killHost(b);
    await servesExactly(a, ['A1 da-A1: fromc 10.181.0.41'], 'b\'s names to vanish with its lease');
    await stopHost(c);
    await servesExactly(a, [], 'c\'s names to vanish when it revokes its lease');
    await stopHost(a);
    await stopHost(b);
  });

  it('publishes again under a new lease after losing its own', async () => {
    const a = await simHost('la', { A1: LAN.subnet }, [LAN]);
    const b = await simHost('lb', { B1: LAN.subnet }, [LAN]);
    b.records.set([entry('B1', 'd'.repeat(64), ['again'], '10.181.0.50')]);
    await servesExactly(a, ['A1 la-A1: again 10.181.0.50'], 'a to serve b\'s name');
    const before = b.membership.leaseId!;
    // Someone revokes b's lease: its keys go; b notices at its next keep-alive and registers again.
    const revoke = await etcd.etcdctl(['lease', 'revoke', BigInt(before).toString(16)]);
    expect(revoke.exitCode, revoke.stderr).toBe(0);
    await waitUntil(() => b.membership.leaseId !== undefined && b.membership.leaseId !== before, { timeoutMs: 20_000, what: 'b to register again' });
    await servesExactly(a, ['A1 la-A1: again 10.181.0.50'], 'b\'s name to come back under its new lease');
    await b.publisher.settle();
    // Read as text: a lease ID does not fit a JSON number.
    const json = (await etcd.etcdctl(['get', '-w', 'json', `tsnet/v1/pool-names/lan/lb/${'d'.repeat(64)}`])).stdout;
    expect(/"lease":(\d+)/.exec(json)?.[1]).toBe(b.membership.leaseId);
    await stopHost(a);
    await stopHost(b);
  });

  it('keeps serving the last known names while etcd is down, and catches up when it is back', async () => {
    const a = await simHost('ka', { A1: LAN.subnet }, [LAN]);
    const b = await simHost('kb', { B1: LAN.subnet }, [LAN]);
    b.records.set([entry('B1', '3'.repeat(64), ['stays'], '10.181.0.60'), entry('B1', '4'.repeat(64), ['goes'], '10.181.0.61')]);
    await servesExactly(a, ['A1 ka-A1: goes 10.181.0.61', 'A1 ka-A1: stays 10.181.0.60'], 'a to serve b\'s names');
    await etcd.kill9();
    try {
      // b's changes while the store is down wait in its publisher.
      b.records.set([entry('B1', '3'.repeat(64), ['stays'], '10.181.0.60'), entry('B1', '5'.repeat(64), ['new'], '10.181.0.62')]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(served(a)).toEqual(['A1 ka-A1: goes 10.181.0.61', 'A1 ka-A1: stays 10.181.0.60']);
    } finally {
      await etcd.start();
    }
    await servesExactly(a, ['A1 ka-A1: new 10.181.0.62', 'A1 ka-A1: stays 10.181.0.60'], 'a to catch up with b once etcd is back');
    await stopHost(a);
    await stopHost(b);
  });

  it('reads everything again when it comes back from a partition to a compacted history', async () => {
    const a = await simHost('pa', { A1: LAN.subnet }, [LAN]);
    const b = await simHost('pb', { B1: LAN.subnet }, [LAN]);
    b.records.set([entry('B1', '6'.repeat(64), ['before'], '10.181.0.70')]);
    await servesExactly(a, ['A1 pa-A1: before 10.181.0.70'], 'a to serve b\'s name');
    a.wire.cut();
    b.records.set([entry('B1', '7'.repeat(64), ['after'], '10.181.0.71')]);
    await waitUntil(async () => (await keysInEtcd('tsnet/v1/pool-names/lan/pb/')).includes(`tsnet/v1/pool-names/lan/pb/${'7'.repeat(64)}`), { timeoutMs: 10_000, what: 'b to publish its change' });
    // The history a's watch would resume from (b's change) is gone: compacted up to a later write.
    const later = await etcd.etcdctl(['put', '-w', 'json', `tsnet/v1/test/${id}`, 'x']);
    const revision = /"revision":(\d+)/.exec(later.stdout)![1]!;
    expect((await etcd.etcdctl(['compact', revision])).exitCode).toBe(0);
    expect(served(a)).toEqual(['A1 pa-A1: before 10.181.0.70']);
    a.wire.mend();
    await servesExactly(a, ['A1 pa-A1: after 10.181.0.71'], 'a to read b\'s names again after the partition');
    // etcd ends the resumed watch (compacted): a watches again from its new read, and follows b on.
    b.records.set([entry('B1', '8'.repeat(64), ['later'], '10.181.0.72')]);
    await servesExactly(a, ['A1 pa-A1: later 10.181.0.72'], 'a to follow b after the partition');
    await stopHost(a);
    await stopHost(b);
  });

  it('skips what it cannot read or trust in pool-names/ (not JSON, a bad address, an address outside the pool, an unregistered host, a key of another shape) and serves the rest', async () => {
    const a = await simHost('ga', { A1: LAN.subnet }, [LAN]);
    try {
      const put = async (key: string, value: string) => expect((await etcd.etcdctl(['put', `tsnet/v1/${key}`, value])).exitCode).toBe(0);
      await put('hosts/gx', '{"id":"gx","joined":"2026-12-03T00:00:00.000Z"}');
      await put(`pool-names/lan/gx/${'9'.repeat(64)}`, 'not json');
      await put(`pool-names/lan/gx/${'8'.repeat(64)}`, '{"names":["bad"],"ipv4":"10.181.0.300"}');
      await put(`pool-names/lan/gx/${'6'.repeat(64)}`, '{"names":["elsewhere"],"ipv4":"192.0.2.1"}');
      await put(`pool-names/lan/ghost/${'5'.repeat(64)}`, '{"names":["ghost"],"ipv4":"10.181.0.91"}');
      await put('pool-names/lan/stray', '{"names":["stray"]}');
      await put(`pool-names/lan/gx/${'7'.repeat(64)}`, '{"names":["good"],"ipv4":"10.181.0.90"}');
      await servesExactly(a, ['A1 ga-A1: good 10.181.0.90'], 'a to serve the readable, trusted name only');
      // A full read skips them the same way.
      const fresh = await simHost('gb', { B1: LAN.subnet }, [LAN]);
      await servesExactly(fresh, ['B1 gb-B1: good 10.181.0.90'], 'a new host to read the readable, trusted name only');
      await stopHost(fresh);
    } finally {
      await etcd.etcdctl(['del', '--prefix', 'tsnet/v1/pool-names/lan/g']);
      await etcd.etcdctl(['del', 'tsnet/v1/pool-names/lan/stray']);
      await etcd.etcdctl(['del', 'tsnet/v1/hosts/gx']);
      await stopHost(a);
    }
  });

  it('reports a watch whose start revision etcd has compacted away', async () => {
    const client = new EtcdClient({ endpoints: [etcd.endpoint] });
    try {
      const first = await etcd.etcdctl(['put', 'tsnet/v1/pool-names/lan/zz/x', '{"names":[]}', '-w', 'json']);
      const revision = (JSON.parse(first.stdout) as { header: { revision: number } }).header.revision;
      await etcd.etcdctl(['put', 'tsnet/v1/pool-names/lan/zz/x', '{"names":["y"]}']);
      expect((await etcd.etcdctl(['compact', String(revision + 1)])).exitCode).toBe(0);
      const cancelled = new Promise<string>((resolve) => {
        client.watchPrefix('tsnet/v1/pool-names/', String(revision), {
          put: () => undefined,
          delete: () => undefined,
          disconnected: () => undefined,
          reconnected: () => undefined,
          cancelled: resolve,
        });
      });
      // etcd 3.4 gives no reason for a compacted start revision, only the cancel.
      expect(typeof (await cancelled)).toBe('string');
    } finally {
      client.close();
      await etcd.etcdctl(['del', '--prefix', 'tsnet/v1/pool-names/lan/zz/']);
    }
  });
});
