import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import { GATEWAY_REQUEST } from '../ipam/ipam-service.js';
import { PoolAllocator } from '../ipam/pool-allocator.js';
import { type PoolGrant, POOL_OPTION, SHARED_POOL_ID_PREFIX, type SharedPoolRequest, type SharedPools } from '../ipam/shared-pools.js';
import { KeyedMutex } from '../mutex.js';
import { type Cidr, type Family, type Ip, cidrSize, formatCidr, formatIp, parseCidr, parseIp } from '../net/address.js';
import { type Store, type Write, del, put } from '../store/store.js';
import { AddressClaims, type ClaimedPool } from './address-claims.js';
import { ClusterStoreError, ClusterUnreachableError, deadlineFromNow, type EtcdClient } from './etcd-client.js';
import { type AddressHold, PoolKeys } from './keys.js';
import { joinPool } from './pool-definition.js';
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

interface LivePool extends ClaimedPool {
  record: SharedPoolRecord;
  holds: Map<string, SharedAddressRecord>;
  /** When dockerd last asked this pool's gateway (a network being created). */
  gatewayAskedAt?: number;
}

const holdKey = (poolId: string, address: string) => `${poolId} ${address}`;

/**
 * Pools several hosts allocate from, with etcd as the authority: this
 * host's side of them (its record in SQLite, the order of its durable notes,
 * one request per pool at a time). The etcd writes are AddressClaims' (an
 * address) and pool-definition's (the pool's document); what must still
 * reach etcd waits in the UndoQueue. A container hold is first noted in
 * SQLite as "to undo", then written to etcd, then recorded as held in the
 * same SQLite commit that drops the note: a daemon killed between the two
 * undoes the hold when it runs again, so a crash leaves nothing held by no one.
 */
export class SharedPoolService implements SharedPools {
  private readonly pools = new Map<string, LivePool>();
  private readonly mutex = new KeyedMutex();
  private readonly queue: UndoQueue;
  private readonly claims: AddressClaims;
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
    this.claims = new AddressClaims(etcd, membership.hostId);
  }

  /** Allocations that lost a race to another host and tried again (never seen by dockerd). */
  get racesLost(): number {
    return this.claims.racesLost;
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
        await joinPool(this.etcd, keys, { host: this.membership.hostId, subnet, ...(range ? { range } : {}), field: `Options.${POOL_OPTION}` }, deadline);
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
        ip = await this.claims.gateway(live, address, deadline);
        await this.record(live, ip, 'gateway', '');
      } else if (this.subnetInUse(live.record.pool)) {
        ip = await this.container(live, address, deadline);
      } else if (address !== '' && Date.now() - (live.gatewayAskedAt ?? 0) < AUX_WINDOW_MS) {
        // Before the network exists, dockerd asks only for its gateway and its --aux-address values.
        ip = await this.claims.aux(live, address, deadline);
        await this.record(live, ip, 'aux', '');
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

  /** A container address (automatic or --ip), held by this host until dockerd releases it. */
  private async container(live: LivePool, chosen: string, deadline: number): Promise<string> {
    const value = this.claims.newHold('container');
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
      ip = chosen === '' ? await this.claims.claimNext(live, value, trying, deadline) : await this.claims.claimChosen(live, chosen, value, trying, deadline);
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
        const mine = new Map([...live.holds.values()].filter((h) => h.kind === 'container').map((h) => [h.address, h.value]));
        if (mine.size === 0) return;
        const found = await this.claims.reconcile(live, mine, deadlineFromNow());
        for (const address of found.claimedBack) this.log.warn({ pool: live.record.name, address }, 'an address of this host was freed in the cluster store while it was away (gc?); claimed it back');
        conflicts.push(...found.conflicts.map((c) => `${live.record.name} ${c}`));
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
}
