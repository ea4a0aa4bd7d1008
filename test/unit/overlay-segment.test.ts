// An overlay segment in the store, against an in-memory etcd: its VNI (given
// once, never shared, freed with the pool), what a pool of one L2 refuses,
// and the remote peers the hosts' holds describe.
import { describe, expect, it } from 'vitest';
import { deadlineFromNow } from '../../src/cluster/etcd-client.js';
import { type AddressHold, type HostRecord, type PoolDefinition, PoolKeys, vniKey } from '../../src/cluster/keys.js';
import { joinPool, removeUser, segmentVni } from '../../src/cluster/pool-definition.js';
import type { NetworkSpec } from '../../drivers/model.js';
import { refuseSegmentPool } from '../../drivers/segment-pool.js';
import { remotePeers } from '../../src/overlay/segment-members.js';
import type { Segments } from '../../src/overlay/segments.js';
import { FakeClusterKv } from '../harness/fake-cluster-kv.js';

const FIELD = 'Options.tsnet.pool';
const join = (kv: FakeClusterKv, keys: PoolKeys, host: string) => joinPool(kv, keys, { host, subnet: '10.90.0.0/16', field: FIELD }, deadlineFromNow());
const vniOf = (kv: FakeClusterKv, keys: PoolKeys) => segmentVni(kv, keys, FIELD, deadlineFromNow());
const definition = (kv: FakeClusterKv, keys: PoolKeys) => JSON.parse(kv.value(keys.definition)!) as PoolDefinition;

describe('an overlay segment\'s VNI', () => {
  it('is given by the first overlay network, the same for every host, and freed with the pool', async () => {
    const kv = new FakeClusterKv();
    const app = new PoolKeys('app', 4);
    await join(kv, app, 'h1');
    const vni = await vniOf(kv, app);
    expect(vni).toBeGreaterThanOrEqual(0x740000);
    expect(kv.value(vniKey(vni))).toBe('app');
    await join(kv, app, 'h2');
    expect(await vniOf(kv, app)).toBe(vni);
    expect(definition(kv, app)).toMatchObject({ vni, users: ['h1', 'h2'] });
    await removeUser(kv, app, 'h1', deadlineFromNow());
    expect(kv.value(vniKey(vni))).toBe('app');
    await removeUser(kv, app, 'h2', deadlineFromNow());
    expect([...kv.keys.keys()]).toEqual([]);
  });

  it('is never another segment\'s: a VNI taken is skipped', async () => {
    const kv = new FakeClusterKv();
    const app = new PoolKeys('app', 4);
    await join(kv, app, 'h1');
    // What the name gives on an empty store, taken here by another pool: the next one is used.
    const probe = new FakeClusterKv();
    await join(probe, app, 'h1');
    const first = await vniOf(probe, app);
    await kv.txn([], [{ put: vniKey(first), value: 'other' }], []);
    expect(await vniOf(kv, app)).toBe(first + 1);
    expect(kv.value(vniKey(first))).toBe('other');
  });

  it('is given whoever joined the pool before (hosts join at the IPAM request, before any network exists)', async () => {
    const kv = new FakeClusterKv();
    const app = new PoolKeys('app', 4);
    await join(kv, app, 'h1');
    await join(kv, app, 'h2');
    const vni = await vniOf(kv, app);
    expect(await vniOf(kv, app)).toBe(vni);
    expect(definition(kv, app)).toMatchObject({ vni, users: ['h1', 'h2'] });
  });
});

describe('a segment\'s remote peers', () => {
  const hold = (host: string, kind: AddressHold['kind'] = 'container', mac?: string): AddressHold => ({ kind, host, holder: 'x', since: 'y', ...(mac ? { mac } : {}) });
  const hosts = new Map<string, HostRecord>([
    ['a', { id: 'a', joined: 'x', underlay: '192.0.2.1' }],
    ['b', { id: 'b', joined: 'x', underlay: '198.51.100.7' }],
    ['old', { id: 'old', joined: 'x' }],
  ]);

  it('are the other hosts\' containers, at their hosts\' underlay addresses, with the MAC tsnet derives or the one chosen', () => {
    const holds: Array<[string, AddressHold]> = [
      ['10.90.0.1', hold('a', 'gateway')],
      ['10.90.0.2', hold('a')],
      ['10.90.0.3', hold('b')],
      ['10.90.0.4', hold('b', 'container', '02:00:00:00:00:99')],
      ['10.90.0.5', hold('old')],
      ['10.90.0.6', hold('gone')],
    ];
    expect(remotePeers(holds, hosts, 'a')).toEqual([
      { ip: '10.90.0.3', mac: '02:42:0a:5a:00:03', host: '198.51.100.7' },
      { ip: '10.90.0.4', mac: '02:00:00:00:00:99', host: '198.51.100.7' },
    ]);
  });
});

describe('a network of one L2 on a segment\'s pool', () => {
  const spec = (pool: string) => ({ id: 'n', options: {}, ipv4: [{ pool, aux: {} }], ipv6: false, ipv6Subnets: [], internal: false }) as unknown as NetworkSpec;
  const segments = { vniOf: async (subnet: string) => (subnet === '10.90.0.0/16' ? 7602176 : undefined) } as unknown as Segments;

  it('is refused, naming the segment; any other pool, or no cluster store, passes', async () => {
    await expect(refuseSegmentPool(segments, spec('10.90.0.0/16'))).rejects.toThrow('tsnet.mode: 10.90.0.0/16 is the shared pool of an overlay segment (VNI 7602176); create the network with -o tsnet.mode=overlay');
    await expect(refuseSegmentPool(segments, spec('10.91.0.0/16'))).resolves.toBeUndefined();
    await expect(refuseSegmentPool(undefined, spec('10.90.0.0/16'))).resolves.toBeUndefined();
  });
});
