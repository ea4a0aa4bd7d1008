import { RequestError } from '../errors.js';
import { type Compare, deadlineFromNow, type EtcdClient, MAX_TXN_OPS, type Op } from './etcd-client.js';
import { AddressHold, ALIVE_PREFIX, AliveRecord, aliveKey, decodeValue, hostKey, HOSTS_PREFIX, HostRecord, NAMES_PREFIX, parseNameKey, PoolDefinition, PoolKeys, POOLS_PREFIX } from './keys.js';
import { hostCameBack, removeUser } from './pool-definition.js';
import { DEFAULT_VXLAN_PORT } from '../overlay/vxlan.js';

export interface HostView {
  id: string;
  alive: boolean;
  /** Container addresses the host holds in shared pools. */
  addresses: number;
  /** Endpoint names the host publishes for the other hosts' DNS (gone with its lease). */
  names: number;
  joined?: string;
  aliveSince?: string;
  /** Where overlay traffic to the host goes (address:port); absent for a host registered without one. */
  underlay?: string;
}

export interface PoolView {
  name: string;
  family: 4 | 6;
  subnet: string;
  range?: string;
  gateway?: string;
  definedBy: string;
  users: string[];
  /** Keys held: containers, gateway and aux addresses. */
  held: number;
}

/** One address hold as found in etcd. */
export interface HoldView {
  pool: string;
  address: string;
  key: string;
  value: string;
  hold: AddressHold;
}

/** An overlay segment (a shared pool with a VNI) and the hosts on it: its users and whoever holds containers in it. */
export interface SegmentView {
  pool: string;
  vni: number;
  /** tsnet.encrypt=on: its VXLAN travels in IPsec ESP. */
  encrypted?: true;
  subnet: string;
  hosts: Array<{ id: string; alive: boolean; underlay?: string; containers: number }>;
}

export interface ClusterView {
  store: string;
  self: string;
  hosts: HostView[];
  pools: PoolView[];
  segments: SegmentView[];
}

const ADDRESS_KEY = /^tsnet\/v1\/pools\/([^/]+)\/v([46])\/addresses\/(.+)$/;

/** Everything tsnet keeps in etcd, read in four range reads. */
export async function readCluster(etcd: EtcdClient, self: string, deadline: number): Promise<{ view: ClusterView; holds: HoldView[] }> {
  const [hostEntries, aliveEntries, poolEntries, nameKeys] = await Promise.all([
    etcd.list(HOSTS_PREFIX, deadline),
    etcd.list(ALIVE_PREFIX, deadline),
    etcd.list(POOLS_PREFIX, deadline),
    etcd.list(NAMES_PREFIX, deadline, true),
  ]);
  const alive = new Map(aliveEntries.map((e) => [e.key.slice(ALIVE_PREFIX.length), decodeValue(AliveRecord, e.key, e.value)]));
  const hosts = new Map<string, HostView>();
  const hostView = (id: string) => hosts.get(id) ?? hosts.set(id, { id, alive: alive.has(id), addresses: 0, names: 0 }).get(id)!;
  for (const entry of hostEntries) {
    const record = decodeValue(HostRecord, entry.key, entry.value);
    const view = hostView(record.id);
    view.joined = record.joined;
    if (record.underlay) view.underlay = `${record.underlay}:${record.vxlanPort ?? DEFAULT_VXLAN_PORT}`;
  }
  for (const [id, record] of alive) hostView(id).aliveSince = record.since;
  for (const entry of nameKeys) {
    const where = parseNameKey(entry.key);
    if (where) hostView(where.host).names++;
  }

  const pools = new Map<string, PoolView>();
  const vnis = new Map<string, { vni: number; encrypted: boolean }>();
  const holds: HoldView[] = [];
  for (const entry of poolEntries) {
    const keys = PoolKeys.ofDefinition(entry.key);
    if (keys) {
      const { name, family, subnet, range, gateway, definedBy, users, vni, encrypted } = decodeValue(PoolDefinition, entry.key, entry.value);
      pools.set(keys.prefix, { name, family, subnet, ...(range ? { range } : {}), ...(gateway ? { gateway } : {}), definedBy, users, held: pools.get(keys.prefix)?.held ?? 0 });
      if (vni !== undefined) vnis.set(keys.prefix, { vni, encrypted: encrypted === true });
      continue;
    }
    const match = ADDRESS_KEY.exec(entry.key);
    if (!match) continue;
    const hold = decodeValue(AddressHold, entry.key, entry.value);
    holds.push({ pool: match[1]!, address: match[3]!, key: entry.key, value: entry.value, hold });
    if (hold.kind === 'container') hostView(hold.host).addresses++;
    const prefix = entry.key.slice(0, entry.key.indexOf('addresses/'));
    const pool = pools.get(prefix);
    if (pool) pool.held++;
    // Keys without a definition: left by hand or by a foreign writer; shown so that they can be seen.
    else pools.set(prefix, { name: match[1]!, family: Number(match[2]) as 4 | 6, subnet: '?', definedBy: '?', users: [], held: 1 });
  }
  const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
  return {
    view: {
      store: etcd.url,
      self,
      hosts: [...hosts.values()].sort(byId),
      pools: [...pools.values()].sort((a, b) => a.name.localeCompare(b.name) || a.family - b.family),
      segments: segmentsOf(pools, vnis, holds, hostView).sort((a, b) => a.pool.localeCompare(b.pool)),
    },
    holds,
  };
}

/** The overlay pools (by key prefix → VNI) with their hosts: users first known, then every host holding containers. */
function segmentsOf(pools: ReadonlyMap<string, PoolView>, vnis: ReadonlyMap<string, { vni: number; encrypted: boolean }>, holds: readonly HoldView[], hostView: (id: string) => HostView): SegmentView[] {
  return [...vnis].map(([prefix, { vni, encrypted }]) => {
    const pool = pools.get(prefix)!;
    const containers = new Map(pool.users.map((id) => [id, 0]));
    for (const { hold } of holds.filter((h) => h.pool === pool.name && h.key.startsWith(prefix) && h.hold.kind === 'container')) containers.set(hold.host, (containers.get(hold.host) ?? 0) + 1);
    const hosts = [...containers].sort(([a], [b]) => a.localeCompare(b)).map(([id, count]) => {
      const { alive, underlay } = hostView(id);
      return { id, alive, ...(underlay ? { underlay } : {}), containers: count };
    });
    return { pool: pool.name, vni, ...(encrypted ? { encrypted: true as const } : {}), subnet: pool.subnet, hosts };
  });
}

/** What ls, gc and reclaim may take to read the whole cluster: they are not on dockerd's path, and 50k records take seconds. */
export const ADMIN_READ_MS = 30_000;

/**
 * Deletes holds in transactions of up to MAX_TXN_OPS, each batch with its
 * own deadline (so thousands of holds are not one 4 s budget), each hold
 * only if it is still exactly what was read. `deadHost`: every batch also
 * checks, in the same transaction, that this host has no alive key, so a
 * host that comes back during gc keeps what was not freed yet.
 */
async function deleteHolds(etcd: EtcdClient, holds: readonly HoldView[], deadHost: string | undefined, progress: GcProgress): Promise<string[]> {
  const guard: Compare[] = deadHost === undefined ? [] : [{ key: aliveKey(deadHost), absent: true }];
  const guardReads: Op[] = guard.map((c) => ({ get: c.key }));
  const deleteIfUnchanged = async (batch: readonly HoldView[]) => {
    const result = await etcd.txn([...guard, ...batch.map((h) => ({ key: h.key, value: h.value }))], batch.map((h) => ({ delete: h.key })), guardReads, deadlineFromNow());
    if (!result.succeeded && result.found.length > 0) throw hostCameBack(deadHost!);
    return result.succeeded;
  };
  const freed: string[] = [];
  const perBatch = MAX_TXN_OPS - guard.length;
  for (let first = 0; first < holds.length; first += perBatch) {
    const batch = holds.slice(first, first + perBatch);
    if (await deleteIfUnchanged(batch)) freed.push(...holdNames(batch));
    else {
      // A hold changed since it was read (released meanwhile): the batch again, one hold at a time.
      for (const hold of batch) if (await deleteIfUnchanged([hold])) freed.push(...holdNames([hold]));
    }
    await progress(freed.length, holds.length);
  }
  return freed;
}

/** Called after each batch of a gc (and waited for): holds freed so far, and holds to free in all. */
export type GcProgress = (freed: number, total: number) => void | Promise<void>;

export interface GcResult {
  host: string;
  /** `pool address` of every hold freed. */
  freed: string[];
  /** Pools the host was taken off (deleted when it was their last user). */
  pools: string[];
}

/**
 * Frees a dead host's container addresses, takes it off the pools it used
 * and forgets it. A live host is refused: its containers use those
 * addresses; one that comes back during gc keeps what was not freed yet
 * (every write checks that it is still dead). Its record goes last, so a gc
 * cut short (etcd down, the daemon stopped) is finished by running it again.
 */
export async function gcDeadHost(etcd: EtcdClient, host: string, progress: GcProgress = () => {}): Promise<GcResult> {
  const alive = await etcd.get(aliveKey(host), deadlineFromNow());
  if (alive) throw new RequestError('host', `host ${host} is alive (its tsnet holds its lease); gc frees only dead hosts' addresses`);
  const { view, holds } = await readCluster(etcd, '', deadlineFromNow(ADMIN_READ_MS));
  const known = view.hosts.some((h) => h.id === host) || view.pools.some((p) => p.users.includes(host));
  if (!known) throw new RequestError('host', `no host ${host} in ${etcd.url} (tsnet cluster ls lists them)`);
  const freed = await deleteHolds(etcd, holds.filter((h) => h.hold.host === host && h.hold.kind === 'container'), host, progress);
  const pools: string[] = [];
  for (const pool of view.pools.filter((p) => p.users.includes(host))) {
    await removeUser(etcd, new PoolKeys(pool.name, pool.family), host, deadlineFromNow(), true);
    pools.push(pool.name);
  }
  const forgotten = await etcd.txn([{ key: aliveKey(host), absent: true }], [{ delete: hostKey(host) }], [], deadlineFromNow());
  if (!forgotten.succeeded) throw hostCameBack(host);
  return { host, freed, pools };
}

/**
 * This host's orphans: container holds etcd says it has that its own record
 * does not know (its state was lost, or they were written by another daemon
 * with its ID). `knows` asks the shared-pool service.
 */
export const orphansOf = (holds: readonly HoldView[], self: string, knows: (value: string) => boolean): HoldView[] =>
  holds.filter((h) => h.hold.host === self && h.hold.kind === 'container' && !knows(h.value));

export const holdNames = (holds: readonly HoldView[]): string[] => holds.map((h) => `${h.pool} ${h.address}`);

/** Frees this host's orphans. */
export async function gcOrphans(etcd: EtcdClient, self: string, knows: (value: string) => boolean, progress: GcProgress = () => {}): Promise<GcResult> {
  const { holds } = await readCluster(etcd, self, deadlineFromNow(ADMIN_READ_MS));
  return { host: self, freed: await deleteHolds(etcd, orphansOf(holds, self, knows), undefined, progress), pools: [] };
}
