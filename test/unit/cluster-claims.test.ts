// The shared pools' claim and undo logic against an in-memory etcd: what is
// written, what a lost answer or a race leaves, and that a release never
// frees another host's hold. (The same logic runs against a real etcd in
// test/integration/cluster-pools.test.ts.)
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AddressClaims, type ClaimedPool } from '../../src/cluster/address-claims.js';
import { ClusterAnsweredError, deadlineFromNow } from '../../src/cluster/etcd-client.js';
import { type AddressHold, type PoolDefinition, PoolKeys } from '../../src/cluster/keys.js';
import { changeDefinition, joinPool, removeUser } from '../../src/cluster/pool-definition.js';
import { type PendingOp, UndoQueue } from '../../src/cluster/undo-queue.js';
import { PoolAllocator } from '../../src/ipam/pool-allocator.js';
import { KeyedMutex } from '../../src/mutex.js';
import { formatIp, parseCidr } from '../../src/net/address.js';
import { MemoryStore } from '../../src/store/memory.js';
import { FakeClusterKv } from '../harness/fake-cluster-kv.js';

const log = pino({ level: 'silent' });
const keys = new PoolKeys('lan', 4);
const SUBNET = '10.1.0.0/28';
const ME = 'me';
const deadline = () => deadlineFromNow();

const holdValue = (host: string, holder = `${host}-1`) => JSON.stringify({ kind: 'container', host, holder, since: '2026-12-03T00:00:00.000Z' } satisfies AddressHold);

/** etcd with pool lan defined (gateway .1 held), used by this host and `other`. */
async function definedPool(users = [ME, 'other']): Promise<{ kv: FakeClusterKv; pool: ClaimedPool }> {
  const kv = new FakeClusterKv();
  const definition: PoolDefinition = { name: 'lan', family: 4, subnet: SUBNET, gateway: '10.1.0.1', definedBy: ME, users };
  await kv.txn([], [{ put: keys.definition, value: JSON.stringify(definition) }, { put: keys.address('10.1.0.1'), value: JSON.stringify({ kind: 'gateway', host: ME, holder: 'g', since: 'x' }) }], []);
  const pool: ClaimedPool = { keys, shape: new PoolAllocator(parseCidr(SUBNET)!.cidr), record: { pool: SUBNET, cursor: '-1' } };
  return { kv, pool };
}

const noNote = async () => {};

describe('address claims', () => {
  it('take the next address no host holds, and take the one after when another host wins the race', async () => {
    const { kv, pool } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.2'), value: holdValue('other') }], []);
    const claims = new AddressClaims(kv, ME);
    expect(formatIp(await claims.claimNext(pool, holdValue(ME, 'a'), noNote, deadline()))).toBe('10.1.0.3');
    // Another host writes .4 after this host read the pool: this host's view is stale.
    await kv.txn([], [{ put: keys.address('10.1.0.4'), value: holdValue('other', 'o2') }], []);
    expect(formatIp(await claims.claimNext(pool, holdValue(ME, 'b'), noNote, deadline()))).toBe('10.1.0.5');
    expect(claims.racesLost).toBe(1);
    expect(kv.value(keys.address('10.1.0.4'))).toBe(holdValue('other', 'o2'));
    expect(kv.value(keys.address('10.1.0.5'))).toBe(holdValue(ME, 'b'));
  });

  it('note each address before its write, and refuse a chosen address held elsewhere, naming the holder', async () => {
    const { kv, pool } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.2'), value: holdValue('other') }], []);
    const claims = new AddressClaims(kv, ME);
    const noted: string[] = [];
    const note = async (ip: Parameters<typeof formatIp>[0]) => void noted.push(`${formatIp(ip)} ${kv.value(keys.address(formatIp(ip))) === undefined ? 'before' : 'after'}`);
    await expect(claims.claimChosen(pool, '10.1.0.2', holdValue(ME), note, deadline())).rejects.toThrow('Address: 10.1.0.2 is already allocated in pool lan: held by host other');
    expect(formatIp(await claims.claimChosen(pool, '10.1.0.9', holdValue(ME), note, deadline()))).toBe('10.1.0.9');
    expect(noted).toEqual(['10.1.0.2 after', '10.1.0.9 before']);
  });

  it('count a write that etcd had applied before its answer was lost as done when it is sent again', async () => {
    const { kv, pool } = await definedPool();
    const claims = new AddressClaims(kv, ME);
    kv.failNext((ops) => ops.some((op) => 'put' in op && op.put === keys.address('10.1.0.7')), 'lost-after');
    await expect(claims.claimChosen(pool, '10.1.0.7', holdValue(ME), noNote, deadline())).rejects.toThrow('the answer was lost');
    expect(kv.value(keys.address('10.1.0.7'))).toBe(holdValue(ME));
    expect(formatIp(await claims.claimChosen(pool, '10.1.0.7', holdValue(ME), noNote, deadline()))).toBe('10.1.0.7');
  });

  it('refuse addresses of a pool deleted behind this host\'s back, writing none', async () => {
    const { kv, pool } = await definedPool();
    await kv.txn([], [{ deletePrefix: keys.prefix }], []);
    await expect(new AddressClaims(kv, ME).claimNext(pool, holdValue(ME), noNote, deadline())).rejects.toThrow('PoolID: pool lan is no longer in the cluster store');
    expect(kv.keys.size).toBe(0);
  });

  it('set the gateway once for every host, and refuse another', async () => {
    const kv = new FakeClusterKv();
    await joinPool(kv, keys, { host: ME, subnet: SUBNET, field: 'Options.tsnet.pool' }, deadline());
    const pool: ClaimedPool = { keys, shape: new PoolAllocator(parseCidr(SUBNET)!.cidr), record: { pool: SUBNET, cursor: '-1' } };
    const claims = new AddressClaims(kv, ME);
    expect(await claims.gateway(pool, '', deadline())).toBe('10.1.0.1');
    expect(await new AddressClaims(kv, 'other').gateway(pool, '', deadline())).toBe('10.1.0.1');
    await expect(claims.gateway(pool, '10.1.0.14', deadline())).rejects.toThrow('Address: pool lan has gateway 10.1.0.1 on every host; give --gateway 10.1.0.1 or leave it out');
  });

  it('claim back, after this host was away, a hold gc freed, and report one another host has now', async () => {
    const { kv, pool } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.2'), value: holdValue(ME, 'kept') }, { put: keys.address('10.1.0.4'), value: holdValue('other') }], []);
    const mine = new Map([['10.1.0.2', holdValue(ME, 'kept')], ['10.1.0.3', holdValue(ME, 'freed')], ['10.1.0.4', holdValue(ME, 'given')]]);
    const found = await new AddressClaims(kv, ME).reconcile(pool, mine, deadline());
    expect(found).toEqual({ conflicts: ['10.1.0.4 (held by host other)'], claimedBack: ['10.1.0.3'] });
    expect(kv.value(keys.address('10.1.0.3'))).toBe(holdValue(ME, 'freed'));
    expect(kv.value(keys.address('10.1.0.4'))).toBe(holdValue('other'));
  });
});

describe('the undo queue', () => {
  const release = (address: string, value: string): PendingOp => ({ op: 'release', name: 'lan', family: 4, value, address });

  async function queueOf(kv: FakeClusterKv, ops: PendingOp[], usesPool = false) {
    const store = new MemoryStore();
    const queue = new UndoQueue(store, kv, new KeyedMutex(), ME, () => usesPool, log);
    for (const op of ops) {
      const change = queue.add(UndoQueue.keyOf(op), op);
      await store.commit([change.write]);
      change.apply();
    }
    const drain = async () => {
      queue.drainSoon();
      await queue.settle();
    };
    return { queue, store, drain };
  }

  it('undoes a hold whose answer was lost, and keeps a late write out where it had not landed yet', async () => {
    const { kv } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.2'), value: holdValue(ME, 'landed') }], []);
    const { queue, drain } = await queueOf(kv, [release('10.1.0.2', holdValue(ME, 'landed')), release('10.1.0.3', holdValue(ME, 'late'))]);
    await drain();
    expect(queue.size).toBe(0);
    expect(kv.value(keys.address('10.1.0.2'))).toBeUndefined();
    // The late write needs the key absent: the placeholder, on a 60 s lease nobody keeps alive, makes it fail.
    expect(kv.keys.get(keys.address('10.1.0.3'))).toMatchObject({ value: holdValue(ME, 'late'), lease: '1' });
    expect(kv.leases.get('1')).toBe(60);
    expect((await kv.txn([{ key: keys.address('10.1.0.3'), absent: true }], [{ put: keys.address('10.1.0.3'), value: holdValue(ME, 'late') }], [])).succeeded).toBe(false);
  });

  it('never deletes another host\'s hold on the same address', async () => {
    const { kv } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.2'), value: holdValue('other') }], []);
    const { queue, drain } = await queueOf(kv, [release('10.1.0.2', holdValue(ME))]);
    await drain();
    expect(queue.size).toBe(0);
    expect(kv.value(keys.address('10.1.0.2'))).toBe(holdValue('other'));
  });

  it('goes on past an operation etcd refuses, keeps it, and does not retry it before its backoff', async () => {
    const { kv } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.3'), value: holdValue(ME, 'fine') }], []);
    const refused = release('10.1.0.2', holdValue(ME, 'refused'));
    const { queue, store, drain } = await queueOf(kv, [refused, release('10.1.0.3', holdValue(ME, 'fine'))]);
    kv.failNext((ops) => ops.some((op) => 'delete' in op && op.delete === keys.address('10.1.0.2')), { refuse: new ClusterAnsweredError('fake', 'etcdserver: request is too large') });
    await drain();
    expect([...(await store.readAll('cluster-pending')).keys()]).toEqual([UndoQueue.keyOf(refused)]);
    expect(kv.value(keys.address('10.1.0.3'))).toBeUndefined();
    // Asked again at once: the refused one waits for its backoff (were it sent, the fault below would be used up).
    kv.failNext((ops) => ops.some((op) => 'delete' in op && op.delete === keys.address('10.1.0.2')), { refuse: new ClusterAnsweredError('fake', 'again') });
    await drain();
    expect(kv.pendingFaults).toBe(1);
    expect(queue.size).toBe(1);
    queue.stop();
  });

  it('stops the pass when etcd is unreachable, keeping every operation', async () => {
    const { kv } = await definedPool();
    const { queue, drain } = await queueOf(kv, [release('10.1.0.2', holdValue(ME, 'a')), release('10.1.0.3', holdValue(ME, 'b'))]);
    kv.failNext(() => true, 'lost-before');
    await drain();
    expect(queue.size).toBe(2);
    queue.stop();
  });

  it('takes this host off the pool\'s users, and the last user deletes the pool with its addresses', async () => {
    const { kv } = await definedPool();
    await kv.txn([], [{ put: keys.address('10.1.0.5'), value: holdValue('other') }], []);
    const leave: PendingOp = { op: 'leave', name: 'lan', family: 4 };
    await (await queueOf(kv, [leave])).drain();
    expect((JSON.parse(kv.value(keys.definition)!) as PoolDefinition).users).toEqual(['other']);
    await removeUser(kv, keys, 'other', deadline());
    expect([...kv.keys.keys()]).toEqual([]);
  });

  it('drops a queued leave when this host uses the pool again', async () => {
    const { kv } = await definedPool();
    const { queue, drain } = await queueOf(kv, [{ op: 'leave', name: 'lan', family: 4 }], true);
    await drain();
    expect(queue.size).toBe(0);
    expect((JSON.parse(kv.value(keys.definition)!) as PoolDefinition).users).toEqual([ME, 'other']);
  });
});

describe('the pool definition', () => {
  it('is written only over the revision it was read at: a change made meanwhile is read again, not lost', async () => {
    const { kv } = await definedPool([ME]);
    let shown = 0;
    await changeDefinition(kv, keys, deadline(), async (definition) => {
      shown++;
      // Another host joins between this read and this write, the first time.
      if (shown === 1) await kv.txn([], [{ put: keys.definition, value: JSON.stringify({ ...definition!, users: [...definition!.users, 'third'] }) }], []);
      return { result: undefined, ops: [{ put: keys.definition, value: JSON.stringify({ ...definition!, users: [...definition!.users, 'fourth'] }) }] };
    });
    expect(shown).toBe(2);
    expect((JSON.parse(kv.value(keys.definition)!) as PoolDefinition).users).toEqual([ME, 'third', 'fourth']);
  });

  it('refuses a pool asked with another subnet, naming both', async () => {
    const { kv } = await definedPool();
    await expect(joinPool(kv, keys, { host: 'new', subnet: '10.2.0.0/24', field: 'Options.tsnet.pool' }, deadline())).rejects.toThrow(
      'Options.tsnet.pool: pool lan is 10.1.0.0/28 without ip-range (defined by host me); this network asks 10.2.0.0/24 without ip-range',
    );
  });
});
