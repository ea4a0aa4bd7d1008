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
import { AddressHold, decodeValue, PoolKeys } from './keys.js';
import { changeDefinition, type DefinitionChange, joinPool, MAX_ATTEMPTS } from './pool-definition.js';
import { type PendingOp, UndoQueue } from './undo-queue.js';

/**
 * dockerd asks a network's --aux-address values right after its gateway, before
 * CreateNetwork; an address asked this long after the gateway, with still no
 * tsnet network on the subnet, is no aux address.
 */
const AUX_WINDOW_MS = 5000;

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
  private readonly mutex = new KeyedMutex();
  private readonly queue: UndoQueue;
  /** Allocations that lost a race to another host and tried again (never seen by dockerd). */
  racesLost = 0;
  /** `pool address (who has it)` of this host's addresses that etcd gives to another hold, as of the last check. */
  conflicts: string[] = [];

  constructor(
    private readonly store: Store,
    private readonly etcd: EtcdClient,
    private readonly membership: Membership,
    /** Whether a tsnet network on this subnet exists yet: before it does, chosen addresses are aux addresses. */
    private readonly subnetInUse: (subnet: string) => boolean,
    private readonly log: Logger,
  ) {
    const usesPool = (keys: PoolKeys) => [...this.pools.values()].some((p) => p.keys.prefix === keys.prefix);
    this.queue = new UndoQueue(store, etcd, this.mutex, membership.hostId, usesPool, log);
  }

  async load(): Promise<void> {
    for (const record of (await this.store.readAll<SharedPoolRecord>('shared-pools')).values()) this.pools.set(record.id, this.instantiate(record));
    for (const hold of (await this.store.readAll<SharedAddressRecord>('shared-addresses')).values()) {
      this.pools.get(hold.poolId)?.holds.set(hold.address, hold);
    }
    await this.queue.load();
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
    if (this.queue.releases(value)) return true;
    for (const pool of this.pools.values()) for (const hold of pool.holds.values()) if (hold.value === value) return true;
    return false;
  }

  /** etcd work queued (releases while etcd was unreachable). */
  get pendingCount(): number {
    return this.queue.size;
  }

  /** Queued etcd work that etcd refused again and again. */
  get stuckCount(): number {
    return this.queue.stuck;
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
      const leaveKey = UndoQueue.keyOf(leave);
      // Noted before etcd sees this host as a user: a request that dies half-way is undone.
      const noted = this.queue.add(leaveKey, leave);
      await this.commit([noted.write], noted.apply);
      try {
        await joinPool(this.etcd, keys, this.membership.hostId, subnet, range, `Options.${POOL_OPTION}`, deadline);
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
      const joined = this.queue.remove(leaveKey);
      await this.commit([put('shared-pools', id, record), joined.write], () => {
        this.pools.set(id, this.instantiate(record));
        joined.apply();
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

  releasePool(poolId: string): Promise<void> {
    const live = this.pools.get(poolId);
    if (!live) return Promise.resolve();
    return this.mutex.run(live.keys.prefix, async () => {
      if (!this.pools.has(poolId)) return;
      const leave: PendingOp = { op: 'leave', name: live.record.name, family: live.keys.family };
      const ops = [this.queue.add(UndoQueue.keyOf(leave), leave)];
      // Containers are gone before dockerd releases a pool; a hold left by a failed start is undone too.
      for (const hold of live.holds.values()) {
        if (hold.kind !== 'container') continue;
        const release: PendingOp = { op: 'release', name: live.record.name, family: live.keys.family, value: hold.value, address: hold.address };
        ops.push(this.queue.add(UndoQueue.keyOf(release), release));
      }
      const writes = [
        del('shared-pools', poolId),
        ...[...live.holds.keys()].map((address) => del('shared-addresses', holdKey(poolId, address))),
        ...ops.map((op) => op.write),
      ];
      await this.commit(writes, () => {
        this.pools.delete(poolId);
        for (const op of ops) op.apply();
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
    const gateway = await changeDefinition(this.etcd, keys, deadline, async (definition): Promise<DefinitionChange<string>> => {
      if (!definition) throw this.gone(keys.name);
      if (definition.gateway) {
        if (chosen !== '' && chosen !== definition.gateway) {
          throw new RequestError('Address', `pool ${keys.name} has gateway ${definition.gateway} on every host; give --gateway ${definition.gateway} or leave it out`);
        }
        return { result: definition.gateway };
      }
      const ip = chosen !== '' ? checkChosenAddress(live.shape, chosen, `pool ${keys.name}`) : (await this.refreshView(live, deadline)).peekFirstInPool();
      if (!ip) throw this.exhausted(live);
      const address = formatIp(ip);
      const key = keys.address(address);
      return {
        result: address,
        ops: [{ put: keys.definition, value: JSON.stringify({ ...definition, gateway: address }) }, { put: key, value: this.newHold('gateway') }],
        compares: [{ key, absent: true }],
        reads: [{ get: key }],
        // Taken: a chosen gateway is refused; otherwise the definition changed meanwhile, or the candidate was taken: look again.
        lost: ([holder]) => {
          if (holder && chosen !== '') throw new RequestError('Address', `${chosen} is already allocated in pool ${keys.name}: ${this.describe(holder)}`);
        },
      };
    });
    await this.record(live, gateway, 'gateway', '');
    return gateway;
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
    const undoKey = UndoQueue.keyOf(undo);
    const noted = this.queue.add(undoKey, undo);
    await this.commit([noted.write], noted.apply);
    // The note names each address before its write: undoing it is one delete, not a read of the whole pool.
    const trying = (ip: Ip) => {
      const tried = this.queue.add(undoKey, { ...undo, address: formatIp(ip) });
      return this.commit([tried.write], tried.apply);
    };
    let ip: Ip;
    try {
      ip = chosen === '' ? await this.claimNext(live, value, trying, deadline) : await this.claimChosen(live, chosen, value, trying, deadline);
    } catch (error) {
      // The store failed: the write may have happened, so the note stays and the drain undoes it. Refused: nothing was written.
      if (error instanceof ClusterStoreError) this.drainSoon();
      else {
        const dropped = this.queue.remove(undoKey);
        await this.commit([dropped.write], dropped.apply);
      }
      throw error;
    }
    const address = formatIp(ip);
    const cursor = live.view?.cursor.toString() ?? live.record.cursor;
    const record = cursor === live.record.cursor ? live.record : { ...live.record, cursor };
    const held = this.queue.remove(undoKey);
    await this.record(live, address, 'container', value, [held.write, put('shared-pools', record.id, record)], () => {
      held.apply();
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
      const queued = release && this.queue.add(UndoQueue.keyOf(release), release);
      if (queued) writes.push(queued.write);
      // dockerd only logs a failed release: the hold is undone in etcd in the background, also when etcd is down now.
      await this.commit(writes, () => {
        live.holds.delete(hold.address);
        queued?.apply();
      });
      if (release) this.drainSoon();
    });
  }

  /**
   * Checks every container address this host holds against etcd, after
   * each registration (this host was away: etcd unreachable past its lease,
   * or stopped). One whose key is gone (a gc or --reclaim-after while it was
   * away) is claimed back when still free; one another hold has now is an
   * address two containers may use, reported in `tsnet cluster ls` and logged.
   */
  async checkHolds(): Promise<void> {
    const conflicts: string[] = [];
    for (const live of this.pools.values()) {
      await this.mutex.run(live.keys.prefix, async () => {
        const mine = [...live.holds.values()].filter((h) => h.kind === 'container');
        if (mine.length === 0) return;
        const deadline = deadlineFromNow();
        const inEtcd = new Map((await this.etcd.list(live.keys.addressesPrefix, deadline)).map((e) => [live.keys.addressOf(e.key), e]));
        for (const hold of mine) {
          let holder = inEtcd.get(hold.address);
          if (holder?.value === hold.value) continue;
          if (!holder) {
            const key = live.keys.address(hold.address);
            const back = await this.etcd.txn([{ key, absent: true }], [{ put: key, value: hold.value }], [{ get: key }], deadline);
            if (back.succeeded) {
              this.log.warn({ pool: live.record.name, address: hold.address }, 'an address of this host was freed in the cluster store while it was away (gc?); claimed it back');
              continue;
            }
            holder = back.found[0];
          }
          conflicts.push(`${live.record.name} ${hold.address} (${holder ? this.describe(holder) : 'taken meanwhile'})`);
        }
      });
    }
    if (conflicts.length > 0) this.log.error({ conflicts }, 'addresses of this host\'s containers are given to others in the cluster store: two containers may use each; restart those containers');
    this.conflicts = conflicts;
  }

  // ------------------------------------------------------------------ the undo queue

  /** Starts working off the queue (at start-up, after each release, and when etcd answers again). */
  drainSoon(): void {
    this.queue.drainSoon();
  }

  /** Waits for the queue run in progress (tests, shutdown). */
  settle(): Promise<void> {
    return this.queue.settle();
  }

  stop(): void {
    this.queue.stop();
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
