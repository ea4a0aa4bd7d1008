// An overlay segment in the store, against an in-memory etcd: its VNI (given
// once, never shared, freed with the pool), what a pool of one L2 refuses,
// and the remote peers the hosts' holds describe.
import { describe, expect, it } from 'vitest';
import { deadlineFromNow } from '../../src/cluster/etcd-client.js';
import { type AddressHold, type HostRecord, type PoolDefinition, PoolKeys, vniKey } from '../../src/cluster/keys.js';
import { joinPool, removeUser, segmentVni } from '../../src/cluster/pool-definition.js';
import type { NetworkSpec } from '../../drivers/model.js';
import { refuseSegmentPool } from '../../drivers/segment-pool.js';
import { remotePeers, segmentMembers } from '../../src/overlay/segment-members.js';
import { peerDrift } from '../../drivers/bridge/overlay.js';
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

describe('a segment\'s members', () => {
  it('are the hosts holding containers on it, and this one, with their underlay, lease and count', () => {
    const hold = (host: string, kind: AddressHold['kind'] = 'container'): AddressHold => ({ kind, host, holder: 'x', since: 'y' });
    const registry = {
      hosts: () => new Map<string, HostRecord>([['a', { id: 'a', joined: 'x', underlay: '192.0.2.1' }], ['b', { id: 'b', joined: 'x', underlay: '198.51.100.7' }]]),
      isAlive: (id: string) => id === 'a',
    };
    const holds: Array<[string, AddressHold]> = [['10.90.0.1', hold('b', 'gateway')], ['10.90.0.2', hold('b')], ['10.90.0.3', hold('b')], ['10.90.0.4', hold('gone')]];
    expect(segmentMembers(holds, registry, 'a')).toEqual([
      { host: 'a', underlay: '192.0.2.1', alive: true, containers: 0, self: true },
      { host: 'b', underlay: '198.51.100.7', alive: false, containers: 2, self: false },
      { host: 'gone', alive: false, containers: 1, self: false },
    ]);
  });
});

describe('a segment device\'s entries against the store', () => {
  const wanted = [
    { ip: '10.90.0.3', mac: '02:42:0a:5a:00:03', host: '198.51.100.7' },
    { ip: '10.90.0.4', mac: '02:42:0a:5a:00:04', host: '198.51.100.7' },
  ];
  const entries = (neighbours: Array<[string, string]>, destinations: Array<[string, string]>) => ({ neighbours: new Map(neighbours), destinations: new Map(destinations) });
  const shown = (held: ReturnType<typeof entries>) => peerDrift('n', 'tsx1', wanted, held).map((d) => `${d.problem} ${d.object} ${d.detail}`);

  it('match when every peer has its neighbour and forwarding entry and nothing else is there', () => {
    expect(shown(entries([['10.90.0.3', '02:42:0a:5a:00:03'], ['10.90.0.4', '02:42:0a:5a:00:04']], [['02:42:0a:5a:00:03', '198.51.100.7'], ['02:42:0a:5a:00:04', '198.51.100.7']]))).toEqual([]);
  });

  it('differ by each entry missing, pointing elsewhere, or added by someone else', () => {
    const held = entries(
      [['10.90.0.3', '02:42:0a:5a:00:99'], ['10.90.0.9', '02:42:0a:5a:00:09']],
      [['02:42:0a:5a:00:03', '203.0.113.5'], ['02:42:0a:5a:00:09', '203.0.113.5']],
    );
    expect(shown(held)).toEqual([
      'changed neighbour 10.90.0.3 lladdr 02:42:0a:5a:00:03 dev tsx1',
      'changed fdb 02:42:0a:5a:00:03 dst 198.51.100.7 dev tsx1',
      'missing neighbour 10.90.0.4 lladdr 02:42:0a:5a:00:04 dev tsx1',
      'missing fdb 02:42:0a:5a:00:04 dst 198.51.100.7 dev tsx1',
      'extra neighbour 10.90.0.9 lladdr 02:42:0a:5a:00:09 dev tsx1',
      'extra fdb 02:42:0a:5a:00:09 dst 203.0.113.5 dev tsx1',
    ]);
    // A device the read did not find entries on: every peer missing.
    expect(peerDrift('n', 'tsx1', wanted).length).toBe(4);
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
