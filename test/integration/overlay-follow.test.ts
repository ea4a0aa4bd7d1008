/**
 * A segment's peer entries kept from the store: a real etcd (Debian's 3.4, on
 * 127.0.0.1 of the test process), two routed hosts sharing no L2, and a
 * SegmentFollower on each writing the other's containers into its kernel.
 * Holds are written as the shared pools write them. Convergence times are
 * printed, never asserted.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadlineFromNow, EtcdClient } from '../../src/cluster/etcd-client.js';
import { HostRegistry } from '../../src/cluster/host-registry.js';
import { type AddressHold, aliveKey, type AliveRecord, hostKey, type HostRecord, PoolKeys } from '../../src/cluster/keys.js';
import { SegmentFollower } from '../../src/overlay/segment-follower.js';
import { VXLAN_OVERHEAD } from '../../src/overlay/vxlan.js';
import { ExecaRunner } from '../../src/sys/runner.js';
import { CleanupStack, createRoutedHosts, type EtcdServer, execInNetns, newRunId, runDir, startEtcd, waitUntil } from '../harness/index.js';
import { buildSegment, echoes, segmentContainer } from '../harness/overlay-segment.js';

const run = randomBytes(2).toString('hex');
const ns = { router: `tsfr${run}`, a: `tsfa${run}`, b: `tsfb${run}`, ca: `tsfca${run}`, cb: `tsfcb${run}` };
const MTU = 1500 - VXLAN_OVERHEAD[4];
const log = pino({ level: 'silent' });
const keys = new PoolKeys('seg', 4);
const runner = new ExecaRunner();
const cleanup = new CleanupStack();
const id = newRunId();
let etcd: EtcdServer;
let client: EtcdClient;
let macs: { ca: string; cb: string };

const hold = (host: string, mac?: string): string => JSON.stringify({ kind: 'container', host, holder: randomBytes(4).toString('hex'), since: new Date().toISOString(), ...(mac ? { mac } : {}) } satisfies AddressHold);
const put = (key: string, value: string) => client.txn([], [{ put: key, value }], [], deadlineFromNow());
const remove = (key: string) => client.txn([], [{ delete: key }], [], deadlineFromNow());
const fdbOf = async (netns: string) => (await execInNetns(netns, ['bridge', 'fdb', 'show', 'dev', 'vx'])).stdout;

/** Runs `change`, then waits until `done` holds, printing how long it took. */
async function converges(what: string, change: () => Promise<unknown>, done: () => Promise<boolean>): Promise<void> {
  const started = performance.now();
  await change();
  await waitUntil(done, { timeoutMs: 10_000, intervalMs: 20, what });
  console.log(`overlay convergence: ${what} in ${Math.round(performance.now() - started)} ms`);
}

describe('a segment followed from the store', () => {
  const followers: SegmentFollower[] = [];
  const registries: HostRegistry[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ name: id, address: '127.0.0.1', dataDir: join(runDir(id), 'etcd'), logFile: join(runDir(id), 'etcd.log') });
    cleanup.defer('destroy etcd', () => etcd.destroy());
    client = new EtcdClient({ endpoints: [etcd.endpoint] });
    cleanup.defer('close the etcd client', () => client.close());
    const [a, b] = await createRoutedHosts(ns.router, [ns.a, ns.b], cleanup);
    for (const [self, host] of [['a', a!], ['b', b!]] as const) {
      const record: HostRecord = { id: self, joined: new Date().toISOString(), underlay: host.underlay, vxlanPort: 4789 };
      await put(hostKey(self), JSON.stringify(record));
      const registry = new HostRegistry(client, log);
      const follower = new SegmentFollower(client, keys, registry, self, await buildSegment(runner, host.netns, host.underlay, MTU), log);
      registries.push(registry);
      followers.push(follower);
      cleanup.defer(`stop following on ${self}`, () => {
        follower.stop();
        registry.stop();
      });
    }
    macs = { ca: await segmentContainer(ns.a, ns.ca, '10.90.0.2', MTU, cleanup), cb: await segmentContainer(ns.b, ns.cb, '10.90.0.3', MTU, cleanup) };
    for (const registry of registries) registry.start();
    for (const follower of followers) follower.start();
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('reaches a container of the other host once its hold is in the store, both ways', async () => {
    await converges('a hold written → reached from the other host', async () => {
      await put(keys.address('10.90.0.2'), hold('a', macs.ca));
      await put(keys.address('10.90.0.3'), hold('b', macs.cb));
    }, async () => (await echoes(ns.ca, '10.90.0.3', 16, 200)) && (await echoes(ns.cb, '10.90.0.2', 16, 200)));
  });

  it('removes a released container\'s entries from the other host', async () => {
    await converges('a hold deleted → its entries gone on the other host', () => remove(keys.address('10.90.0.3')), async () => !(await fdbOf(ns.a)).includes(`${macs.cb} dst`));
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(false);
  });

  it('skips a hold it cannot read and writes the others', async () => {
    await put(keys.address('10.90.0.9'), 'not json');
    await converges('a hold written next to a bad one', () => put(keys.address('10.90.0.3'), hold('b', macs.cb)), () => echoes(ns.ca, '10.90.0.3', 16, 200));
    await remove(keys.address('10.90.0.9'));
  });

  it('keeps the entries of a host whose lease expired: only --reclaim-after, freeing its holds, removes them', async () => {
    // B's liveness bound to a 2 s lease that nobody keeps alive, as when B's daemon or its link to etcd is gone.
    const lease = /lease ([0-9a-f]+) granted/.exec((await etcd.etcdctl(['lease', 'grant', '2'])).stdout)![1]!;
    const alive: AliveRecord = { id: 'b', instance: 'test', since: new Date().toISOString(), pid: process.pid };
    await etcd.etcdctl(['put', `--lease=${lease}`, aliveKey('b'), JSON.stringify(alive)]);
    await waitUntil(async () => registries[0]!.isAlive('b') === true, { timeoutMs: 5_000, what: 'A to see B alive' });
    await waitUntil(async () => registries[0]!.isAlive('b') === false, { timeoutMs: 10_000, what: 'B\'s lease to expire, seen by A' });
    // A follower that acted on liveness would have removed B's peers by now.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await fdbOf(ns.a)).toContain(`${macs.cb} dst`);
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(true);
  });

  it('keeps the entries while etcd is down, and catches up with what changed once it is back', async () => {
    await etcd.kill9();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await echoes(ns.ca, '10.90.0.3')).toBe(true);
    } finally {
      await etcd.start();
    }
    await converges('etcd back → a change made since reaches the kernel', () => remove(keys.address('10.90.0.3')), async () => !(await fdbOf(ns.a)).includes(`${macs.cb} dst`));
  });
});
