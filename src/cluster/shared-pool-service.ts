import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import { GATEWAY_REQUEST } from '../ipam/ipam-service.js';
import { checkChosenAddress, PoolAllocator } from '../ipam/pool-allocator.js';
import { type PoolGrant, POOL_OPTION, SHARED_POOL_ID_PREFIX, type SharedPoolRequest, type SharedPools } from '../ipam/shared-pools.js';
import { KeyedMutex } from '../mutex.js';
import { type Cidr, type Family, type Ip, cidrSize, formatCidr, formatIp, parseCidr, parseIp } from '../net/address.js';
import { type Store, type Write, del, put } from '../store/store.js';
import { ClusterStoreError, ClusterUnreachableError, deadlineFromNow, type EtcdClient, type Entry } from './etcd-client.js';
import { BackgroundTask, errorText } from './background-task.js';
import { AddressHold, decodeValue, PoolDefinition, PoolKeys } from './keys.js';

/** Conflicting writes (another host took the address first) a request survives before it gives up. */
const MAX_ATTEMPTS = 16;

/**
 * dockerd asks a network's --aux-address values right after its gateway, before
 * CreateNetwork; an address asked this long after the gateway, with still no
 * tsnet network on the subnet, is no aux address.
 */
const AUX_WINDOW_MS = 5000;

/** How soon etcd work that failed (store unreachable) is tried again. */
const DRAIN_RETRY_MS = 2000;

/** How long a placeholder blocks a timed-out hold that etcd may still apply (see undoHold). */
const LATE_WRITE_TTL_SECONDS = 60;

/** Time in line worth naming in an error: the store was not alone in taking the request's time. */
const NOTABLE_WAIT_MS = 100;

/** This host's record of a shared pool it uses: one network per pool per host. */
export interface SharedPoolRecord {
  id: string;
  name: string;
  family: Family;
  pool: string;
  subPool?: string;
  /** This host's allocation cursor (decimal offset); each host starts at its own point of the range. */
  cursor: string;
}

/** An address this host holds in a shared pool, with the exact value it wrote to etcd. */
export interface SharedAddressRecord {
  poolId: string;
  address: string;
  kind: AddressHold['kind'];
  value: string;
}

/**
 * etcd work that must still happen, kept in SQLite until etcd confirmed it:
 * undo a container hold (released, or written by a request that never got its
 * answer), or take this host off a pool's users.
 */
export type PendingOp =
  | { op: 'release'; name: string; family: Family; value: string; address?: string }
  | { op: 'leave'; name: string; family: Family };

/** Who this host is in the cluster; shared-pool requests need it registered and alive. */
export interface Membership {
  readonly hostId: string;
  ensureAlive(deadline: number): Promise<void>;
}

interface LivePool {
  record: SharedPoolRecord;
  keys: PoolKeys;
  /** The pool's shape alone (no address taken): checks addresses users choose. */
  shape: PoolAllocator;
  holds: Map<string, SharedAddressRecord>;
  /** This host's picture of the addresses taken cluster-wide: refreshed from etcd when it proves stale. */
  view?: PoolAllocator;
  /** When dockerd last asked this pool's gateway (a network being created). */
  gatewayAskedAt?: number;
}

const holdKey = (poolId: string, address: string) => `${poolId} ${address}`;
const pendingKeyOf = (op: PendingOp, keys: PoolKeys) =>
  op.op === 'leave' ? `leave ${keys.prefix}` : `release ${keys.prefix}${(JSON.parse(op.value) as AddressHold).holder}`;

/**
 * Pools several hosts allocate from, with etcd as the authority. Every
 * address is one etcd transaction that creates its key only if it is absent,
 * so two hosts never hold the same address. A container hold is first noted
 * in SQLite as "to undo", then written to etcd, then recorded as held in the
 * same SQLite commit that drops the note: a daemon killed between the two
 * undoes the hold when it runs again, so a crash leaves nothing held by no one.
 */
export class SharedPoolService implements SharedPools {
  private readonly pools = new Map<string, LivePool>();
  private readonly pending = new Map<string, PendingOp>();
  private readonly mutex = new KeyedMutex();
  private readonly drain = new BackgroundTask(
    () => this.drainAll(),
    (error) => this.log.warn({ err: errorText(error), pending: this.pending.size }, 'cluster store work postponed'),
    DRAIN_RETRY_MS,
  );
  /** Allocations that lost a race to another host and tried again (never seen by dockerd). */
  racesLost = 0;

  constructor(
    private readonly store: Store,
    private readonly etcd: EtcdClient,
    private readonly membership: Membership,
    /** Whether a tsnet network on this subnet exists yet: before it does, chosen addresses are aux addresses. */
    private readonly subnetInUse: (subnet: string) => boolean,
    private readonly log: Logger,
  ) {}

  async load(): Promise<void> {
    for (const record of (await this.store.readAll<SharedPoolRecord>('shared-pools')).values()) this.pools.set(record.id, this.instantiate(record));
    for (const hold of (await this.store.readAll<SharedAddressRecord>('shared-addresses')).values()) {
      this.pools.get(hold.poolId)?.holds.set(hold.address, hold);
    }
    for (const [key, op] of await this.store.readAll<PendingOp>('cluster-pending')) this.pending.set(key, op);
  }

  private instantiate(record: SharedPoolRecord): LivePool {
    const pool = parseCidr(record.pool)!.cidr;
    const range = record.subPool ? parseCidr(record.subPool)!.cidr : undefined;
    return { record, keys: new PoolKeys(record.name, pool.family), shape: new PoolAllocator(pool, range), holds: new Map() };
  }

  /** The pools this host uses and what it holds in them. */
  localPools(): Array<{ record: SharedPoolRecord; holds: SharedAddressRecord[] }> {
    return [...this.pools.values()].map((p) => ({ record: { ...p.record }, holds: [...p.holds.values()] }));
  }

  /** Whether this host knows the hold with this etcd value (held, or queued to be undone). */
  knowsHold(value: string): boolean {
    for (const op of this.pending.values()) if (op.op === 'release' && op.value === value) return true;
    for (const pool of this.pools.values()) for (const hold of pool.holds.values()) if (hold.value === value) return true;
    return false;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private livePool(poolId: string): LivePool {
    const live = this.pools.get(poolId);
    if (!live) throw new RequestError('PoolID', `unknown shared pool "${poolId}"`);
    return live;
  }

  private newHold(kind: AddressHold['kind']): string {
    const hold: AddressHold = { kind, host: this.membership.hostId, holder: randomBytes(8).toString('hex'), since: new Date().toISOString() };
    return JSON.stringify(hold);
  }

  private async commit(writes: Write[], apply: () => void): Promise<void> {
    await this.store.commit(writes);
    apply();
  }

  // ------------------------------------------------------------------ pools

  requestPool(request: SharedPoolRequest): Promise<PoolGrant> {
    const keys = new PoolKeys(request.name, request.pool.family);
    const subnet = formatCidr(request.pool);
    const range = request.subPool ? formatCidr(request.subPool) : undefined;
    return this.inLine(keys, async (deadline) => {
      const other = [...this.pools.values()].find((p) => p.keys.prefix === keys.prefix);
      if (other) throw new RequestError(`Options.${POOL_OPTION}`, `pool ${request.name} already serves a network on this host (${other.record.pool}); a shared pool serves one network per host`);
      await this.membership.ensureAlive(deadline);
      const leave: PendingOp = { op: 'leave', name: request.name, family: keys.family };
      const leaveKey = pendingKeyOf(leave, keys);
      // Noted before etcd sees this host as a user: a request that dies half-way is undone.
      await this.commit([put('cluster-pending', leaveKey, leave)], () => this.pending.set(leaveKey, leave));
      try {
        await this.join(keys, subnet, range, deadline);
      } catch (error) {
        this.drainSoon();
        throw error;
      }
      const id = `${SHARED_POOL_ID_PREFIX}${request.name}/${subnet}`;
      const shape = new PoolAllocator(request.pool, request.subPool);
      const record: SharedPoolRecord = {
        id,
        name: request.name,
        family: keys.family,
        pool: subnet,
        ...(range ? { subPool: range } : {}),
        cursor: (shape.cursor + this.startingPoint(request.subPool ?? request.pool)).toString(),
      };
      await this.commit([put('shared-pools', id, record), del('cluster-pending', leaveKey)], () => {
        this.pools.set(id, this.instantiate(record));
        this.pending.delete(leaveKey);
      });
      return { poolId: id, pool: subnet, data: {} };
    });
  }

  /**
   * Runs a request under its pool's lock, its etcd budget starting once it
   * holds the lock: requests of one pool go one at a time, and with a slow
   * etcd (450 ms a call) those at the back of the line used to spend their
   * whole budget waiting and were called "unreachable". The line cannot grow
   * long behind an etcd that does not answer: one that failed so while a
   * request waited refuses that request at once.
   */
  private inLine<T>(keys: PoolKeys, work: (deadline: number) => Promise<T>): Promise<T> {
    const queuedAt = Date.now();
    return this.mutex.run(keys.prefix, async () => {
      const waitedMs = Date.now() - queuedAt;
      const inLine = `this request waited ${(waitedMs / 1000).toFixed(1)} s in line behind other requests of pool ${keys.name} first`;
      if (this.etcd.lastUnreachableAt >= queuedAt) throw new ClusterUnreachableError(this.etcd.url, `it did not answer a request ahead of this one; ${inLine}`);
      try {
        return await work(deadlineFromNow());
      } catch (error) {
        if (error instanceof ClusterStoreError && waitedMs >= NOTABLE_WAIT_MS) throw error.explained(inLine);
        throw error;
      }
    });
  }

  /** Hosts start at different points of the range (from their ID), so they seldom race for the same address. */
  private startingPoint(range: Cidr): bigint {
    const digest = createHash('sha256').update(this.membership.hostId).digest('hex');
    return BigInt(`0x${digest.slice(0, 12)}`) % cidrSize(range);
  }

  /** Defines the pool, or checks this request against its definition, and adds this host to its users. */
  private async join(keys: PoolKeys, subnet: string, range: string | undefined, deadline: number): Promise<void> {
    const me = this.membership.hostId;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.etcd.get(keys.definition, deadline);
      if (!entry) {
        const definition: PoolDefinition = { name: keys.name, family: keys.family, subnet, ...(range ? { range } : {}), definedBy: me, users: [me] };
        const created = await this.etcd.txn([{ key: keys.definition, absent: true }], [{ put: keys.definition, value: JSON.stringify(definition) }], [], deadline);
        if (created.succeeded) return;
        continue; // another host defined it first: check against its definition
      }
      const definition = decodeValue(PoolDefinition, entry.key, entry.value);
      if (definition.subnet !== subnet || definition.range !== range) {
        const shape = (s: string, r?: string) => `${s}${r ? ` with ip-range ${r}` : ' without ip-range'}`;
        throw new RequestError(
          `Options.${POOL_OPTION}`,
          `pool ${keys.name} is ${shape(definition.subnet, definition.range)} (defined by host ${definition.definedBy}); this network asks ${shape(subnet, range)}`,
        );
      }
      if (definition.users.includes(me)) return;
      const joined = { ...definition, users: [...definition.users, me] };
      const result = await this.etcd.txn([{ key: keys.definition, modRevision: entry.modRevision }], [{ put: keys.definition, value: JSON.stringify(joined) }], [], deadline);
      if (result.succeeded) return;
    }
    throw this.busy(keys.name);
  }

  releasePool(poolId: string): Promise<void> {
    const live = this.pools.get(poolId);
    if (!live) return Promise.resolve();
    return this.mutex.run(live.keys.prefix, async () => {
      if (!this.pools.has(poolId)) return;
      const leave: PendingOp = { op: 'leave', name: live.record.name, family: live.keys.family };
      const ops = new Map<string, PendingOp>([[pendingKeyOf(leave, live.keys), leave]]);
      // Containers are gone before dockerd releases a pool; a hold left by a failed start is undone too.
      for (const hold of live.holds.values()) {
        if (hold.kind !== 'container') continue;
        const release: PendingOp = { op: 'release', name: live.record.name, family: live.keys.family, value: hold.value, address: hold.address };
        ops.set(pendingKeyOf(release, live.keys), release);
      }
      const writes = [
        del('shared-pools', poolId),
        ...[...live.holds.keys()].map((address) => del('shared-addresses', holdKey(poolId, address))),
        ...[...ops].map(([key, op]) => put('cluster-pending', key, op)),
      ];
      await this.commit(writes, () => {
        this.pools.delete(poolId);
        for (const [key, op] of ops) this.pending.set(key, op);
      });
      this.drainSoon();
    });
  }

  // ------------------------------------------------------------------ addresses

  requestAddress(poolId: string, address: string, options: Record<string, string>): Promise<{ address: string }> {
    const live = this.livePool(poolId);
    return this.inLine(live.keys, async (deadline) => {
      await this.membership.ensureAlive(deadline);
      let ip: string;
      if (options.RequestAddressType === GATEWAY_REQUEST) {
        live.gatewayAskedAt = Date.now();
        ip = await this.gateway(live, address, deadline);
      } else if (this.subnetInUse(live.record.pool)) {
        ip = await this.container(live, address, deadline);
      } else if (address !== '' && Date.now() - (live.gatewayAskedAt ?? 0) < AUX_WINDOW_MS) {
        // Before the network exists, dockerd asks only for its gateway and its --aux-address values.
        ip = await this.aux(live, address, deadline);
      } else {
        // Another network driver's network: tsnet could not tell its aux addresses from its containers'.
        throw new RequestError('PoolID', `shared pool ${live.keys.name} serves -d tsnet networks only, and this host has no tsnet network on ${live.record.pool}`);
      }
      return { address: `${ip}/${live.shape.pool.prefix}` };
    });
  }

  private async record(live: LivePool, address: string, kind: AddressHold['kind'], value: string, extra: Write[] = [], apply = () => {}): Promise<void> {
    const hold: SharedAddressRecord = { poolId: live.record.id, address, kind, value };
    await this.commit([put('shared-addresses', holdKey(live.record.id, address), hold), ...extra], () => {
      live.holds.set(address, hold);
      apply();
    });
  }

  /** The pool's gateway: set once, by the first network on any host, and the same for all. */
  private async gateway(live: LivePool, chosen: string, deadline: number): Promise<string> {
    const { keys } = live;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.etcd.get(keys.definition, deadline);
      if (!entry) throw this.gone(keys.name);
      const definition = decodeValue(PoolDefinition, entry.key, entry.value);
      if (definition.gateway) {
        if (chosen !== '' && chosen !== definition.gateway) {
          throw new RequestError('Address', `pool ${keys.name} has gateway ${definition.gateway} on every host; give --gateway ${definition.gateway} or leave it out`);
        }
        await this.record(live, definition.gateway, 'gateway', '');
        return definition.gateway;
      }
      const ip = chosen !== '' ? checkChosenAddress(live.shape, chosen, `pool ${keys.name}`) : (await this.refreshView(live, deadline)).peekFirstInPool();
      if (!ip) throw this.exhausted(live);
      const address = formatIp(ip);
      const key = keys.address(address);
      const result = await this.etcd.txn(
        [{ key: keys.definition, modRevision: entry.modRevision }, { key, absent: true }],
        [{ put: keys.definition, value: JSON.stringify({ ...definition, gateway: address }) }, { put: key, value: this.newHold('gateway') }],
        [{ get: key }],
        deadline,
      );
      if (result.succeeded) {
        await this.record(live, address, 'gateway', '');
        return address;
      }
      const holder = result.found[0];
      if (holder && chosen !== '') throw new RequestError('Address', `${chosen} is already allocated in pool ${keys.name}: ${this.describe(holder)}`);
      // The definition changed meanwhile, or the candidate was taken: look again.
    }
    throw this.busy(keys.name);
  }

  /** An --aux-address: held by the pool for every host; a host asking it again shares it. */
  private async aux(live: LivePool, chosen: string, deadline: number): Promise<string> {
    const address = formatIp(checkChosenAddress(live.shape, chosen, `pool ${live.keys.name}`));
    const key = live.keys.address(address);
    const result = await this.etcd.txn([{ key, absent: true }], [{ put: key, value: this.newHold('aux') }], [{ get: key }], deadline);
    const holder = result.found[0];
    if (!result.succeeded && holder && decodeValue(AddressHold, holder.key, holder.value).kind !== 'aux') {
      throw new RequestError('Address', `${chosen} is already allocated in pool ${live.keys.name}: ${this.describe(holder)}`);
    }
    await this.record(live, address, 'aux', '');
    return address;
  }

  /** A container address (automatic or --ip), held by this host until dockerd releases it. */
  private async container(live: LivePool, chosen: string, deadline: number): Promise<string> {
    const value = this.newHold('container');
    const undo: PendingOp = { op: 'release', name: live.record.name, family: live.keys.family, value };
    const undoKey = pendingKeyOf(undo, live.keys);
    await this.commit([put('cluster-pending', undoKey, undo)], () => this.pending.set(undoKey, undo));
    // The note names each address before its write: undoing it is one delete, not a read of the whole pool.
    const trying = (ip: Ip) => {
      const tried: PendingOp = { ...undo, address: formatIp(ip) };
      return this.commit([put('cluster-pending', undoKey, tried)], () => this.pending.set(undoKey, tried));
    };
    let ip: Ip;
    try {
      ip = chosen === '' ? await this.claimNext(live, value, trying, deadline) : await this.claimChosen(live, chosen, value, trying, deadline);
    } catch (error) {
      // The store failed: the write may have happened, so the note stays and the drain undoes it. Refused: nothing was written.
      if (error instanceof ClusterStoreError) this.drainSoon();
      else await this.commit([del('cluster-pending', undoKey)], () => this.pending.delete(undoKey));
      throw error;
    }
    const address = formatIp(ip);
    const cursor = live.view?.cursor.toString() ?? live.record.cursor;
    const record = cursor === live.record.cursor ? live.record : { ...live.record, cursor };
    await this.record(live, address, 'container', value, [del('cluster-pending', undoKey), put('shared-pools', record.id, record)], () => {
      this.pending.delete(undoKey);
      live.record = record;
    });
    return address;
  }

  /**
   * Writes a container hold if the address is free and the pool still exists
   * (gc may have deleted it); undefined when another hold is there. A retried
   * transaction that had gone through finds its own value: that is success.
   */
  private async claim(live: LivePool, ip: Ip, value: string, trying: (ip: Ip) => Promise<void>, deadline: number): Promise<{ claimed: true } | { claimed: false; holder?: Entry }> {
    const { keys } = live;
    await trying(ip);
    const key = keys.address(formatIp(ip));
    const result = await this.etcd.txn(
      [{ key, absent: true }, { key: keys.definition, present: true }],
      [{ put: key, value }],
      [{ get: key }, { get: keys.definition }],
      deadline,
    );
    const holder = result.found.find((e) => e.key === key);
    if (result.succeeded || holder?.value === value) return { claimed: true };
    if (!result.found.some((e) => e.key === keys.definition)) throw this.gone(keys.name);
    return { claimed: false, ...(holder ? { holder } : {}) };
  }

  private async claimChosen(live: LivePool, chosen: string, value: string, trying: (ip: Ip) => Promise<void>, deadline: number): Promise<Ip> {
    const ip = checkChosenAddress(live.shape, chosen, `pool ${live.keys.name}`);
    const result = await this.claim(live, ip, value, trying, deadline);
    if (!result.claimed) {
      throw new RequestError('Address', `${chosen} is already allocated in pool ${live.keys.name}: ${result.holder ? this.describe(result.holder) : 'taken meanwhile'}`);
    }
    live.view?.take(ip, false);
    return ip;
  }

  /** The next free address after this host's cursor; a race lost to another host refreshes the view and tries the next. */
  private async claimNext(live: LivePool, value: string, trying: (ip: Ip) => Promise<void>, deadline: number): Promise<Ip> {
    let view = live.view ?? (await this.refreshView(live, deadline));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let ip = view.peekNext();
      if (!ip) {
        // Other hosts may have released addresses this host has not seen yet.
        view = await this.refreshView(live, deadline);
        ip = view.peekNext();
        if (!ip) throw this.exhausted(live);
      }
      if ((await this.claim(live, ip, value, trying, deadline)).claimed) {
        view.take(ip, true);
        return ip;
      }
      this.racesLost++;
      view = await this.refreshView(live, deadline);
    }
    throw this.busy(live.keys.name);
  }

  /** Rebuilds this host's view of the taken addresses from etcd, keeping its cursor. */
  private async refreshView(live: LivePool, deadline: number): Promise<PoolAllocator> {
    const entries = await this.etcd.list(live.keys.addressesPrefix, deadline, true);
    const view = new PoolAllocator(live.shape.pool, live.shape.range);
    view.cursor = live.view?.cursor ?? BigInt(live.record.cursor);
    for (const entry of entries) {
      const ip = parseIp(live.keys.addressOf(entry.key));
      if (ip && view.contains(ip) && !view.isReserved(ip)) view.take(ip, false);
    }
    live.view = view;
    return view;
  }

  releaseAddress(poolId: string, address: string): Promise<void> {
    const live = this.pools.get(poolId);
    const ip = parseIp(address.split('/')[0] ?? '');
    if (!live || !ip) return Promise.resolve();
    return this.mutex.run(live.keys.prefix, async () => {
      const hold = live.holds.get(formatIp(ip));
      if (!hold) return;
      const writes = [del('shared-addresses', holdKey(poolId, hold.address))];
      // Gateway and aux addresses belong to the pool: they go when the last host leaves it.
      const release: PendingOp | undefined =
        hold.kind === 'container' ? { op: 'release', name: live.record.name, family: live.keys.family, value: hold.value, address: hold.address } : undefined;
      const releaseKey = release && pendingKeyOf(release, live.keys);
      if (release) writes.push(put('cluster-pending', releaseKey!, release));
      // dockerd only logs a failed release: the hold is undone in etcd in the background, also when etcd is down now.
      await this.commit(writes, () => {
        live.holds.delete(hold.address);
        if (release) this.pending.set(releaseKey!, release);
      });
      if (release) this.drainSoon();
    });
  }

  // ------------------------------------------------------------------ the undo queue

  /** Starts working off the queue (at start-up, after each release, and again while etcd is unreachable). */
  drainSoon(): void {
    this.drain.request();
  }

  /** Waits for the queue run in progress (tests, shutdown). */
  settle(): Promise<void> {
    return this.drain.settle();
  }

  /** One pass over the queue; throws when etcd refused (the task tries again later). */
  private async drainAll(): Promise<void> {
    for (const [key, op] of [...this.pending]) {
      const keys = new PoolKeys(op.name, op.family);
      // Under the pool's lock: a request in flight owns its own note until it finishes.
      await this.mutex.run(keys.prefix, async () => {
        if (this.pending.get(key) !== op) return;
        if (op.op === 'leave') await this.leave(keys, deadlineFromNow());
        else await this.undoHold(keys, op, deadlineFromNow());
        await this.commit([del('cluster-pending', key)], () => this.pending.delete(key));
      });
    }
  }

  /**
   * Deletes a container hold if it is still exactly the one this host wrote.
   * A write that timed out may still be applied after this runs: an etcd
   * that hung applies what waited in its buffers once it goes on. So where
   * the hold is not there yet, the same value is put with a lease nobody
   * keeps alive: the late write (which needs the key absent) fails, and the
   * placeholder goes by itself after LATE_WRITE_TTL_SECONDS.
   */
  private async undoHold(keys: PoolKeys, op: Extract<PendingOp, { op: 'release' }>, deadline: number): Promise<void> {
    if (!op.address) {
      // A note of an older tsnet: the hold is found by its value.
      for (const entry of (await this.etcd.list(keys.addressesPrefix, deadline)).filter((e) => e.value === op.value)) {
        await this.etcd.txn([{ key: entry.key, value: op.value }], [{ delete: entry.key }], [], deadline);
      }
      return;
    }
    const key = keys.address(op.address);
    const deleted = await this.etcd.txn([{ key, value: op.value }], [{ delete: key }], [], deadline);
    if (deleted.succeeded) return;
    const lease = await this.etcd.expiringLease(LATE_WRITE_TTL_SECONDS, deadline);
    await this.etcd.txn([{ key, absent: true }], [{ put: key, value: op.value, lease }], [], deadline);
  }

  /** Takes this host off the pool's users; the last user deletes the pool with everything under it. */
  private async leave(keys: PoolKeys, deadline: number): Promise<void> {
    // The host uses the pool again (a network re-created since): staying is what is wanted now.
    if ([...this.pools.values()].some((p) => p.keys.prefix === keys.prefix)) return;
    await removeUser(this.etcd, keys, this.membership.hostId, deadline);
  }

  stop(): void {
    this.drain.stop();
  }

  // ------------------------------------------------------------------ messages

  private describe(holder: Entry): string {
    const hold = decodeValue(AddressHold, holder.key, holder.value);
    if (hold.kind === 'gateway') return 'it is the pool\'s gateway';
    if (hold.kind === 'aux') return 'it is an aux address of the pool';
    return hold.host === this.membership.hostId ? 'held by this host' : `held by host ${hold.host}`;
  }

  private exhausted(live: LivePool): RequestError {
    const range = live.record.subPool ? ` (ip-range ${live.record.subPool})` : '';
    return new RequestError('Address', `no free address left in shared pool ${live.keys.name} ${live.record.pool}${range}`);
  }

  private gone(name: string): RequestError {
    return new RequestError('PoolID', `pool ${name} is no longer in the cluster store (removed by tsnet cluster gc?); re-create the network`);
  }

  private busy(name: string): RequestError {
    return new RequestError('Address', `pool ${name}: ${MAX_ATTEMPTS} writes in a row lost to other hosts' writes; try again`);
  }
}

/** Takes `host` off a pool's users (CAS on the definition); the last user deletes the pool's keys. */
export async function removeUser(etcd: EtcdClient, keys: PoolKeys, host: string, deadline: number): Promise<void> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const entry = await etcd.get(keys.definition, deadline);
    if (!entry) return;
    const definition = decodeValue(PoolDefinition, entry.key, entry.value);
    if (!definition.users.includes(host)) return;
    const users = definition.users.filter((u) => u !== host);
    const change = users.length === 0 ? { deletePrefix: keys.prefix } : { put: keys.definition, value: JSON.stringify({ ...definition, users }) };
    const result = await etcd.txn([{ key: keys.definition, modRevision: entry.modRevision }], [change], [], deadline);
    if (result.succeeded) return;
  }
  throw new RequestError('cluster store', `pool ${keys.name}: the definition kept changing; try again`);
}
