import { randomBytes } from 'node:crypto';
import { RequestError } from '../errors.js';
import { checkChosenAddress, PoolAllocator } from '../ipam/pool-allocator.js';
import { formatIp, type Ip, parseIp } from '../net/address.js';
import type { ClusterKv, Entry } from './etcd-client.js';
import { AddressHold, decodeValue, type PoolKeys } from './keys.js';
import { changeDefinition, type DefinitionChange, MAX_ATTEMPTS } from './pool-definition.js';

/** What the claims need of one shared pool this host uses. */
export interface ClaimedPool {
  keys: PoolKeys;
  /** The pool's shape alone (no address taken): checks addresses users choose. */
  shape: PoolAllocator;
  /** This host's picture of the addresses taken cluster-wide: refreshed from etcd when it proves stale. */
  view?: PoolAllocator;
  record: {
    /** The pool's subnet and ip-range, as given. */
    pool: string;
    subPool?: string;
    /** Where this host's search starts when it has no view yet (decimal offset). */
    cursor: string;
  };
}

/** Notes the address a claim is about to write (the durable undo note), before it is written. */
export type BeforeWrite = (ip: Ip) => Promise<void>;

/**
 * The addresses of shared pools in etcd: every one is a transaction that
 * creates its key only if it is absent, so two hosts never hold the same
 * address; the gateway is set once in the pool's definition; an aux
 * address is the pool's, shared by every host asking it.
 */
export class AddressClaims {
  /** Allocations that lost a race to another host and tried again (never seen by dockerd). */
  racesLost = 0;

  constructor(
    private readonly etcd: ClusterKv,
    private readonly hostId: string,
  ) {}

  /** A new hold of this host, as etcd stores it (the random holder tells this allocation from any other). */
  newHold(kind: AddressHold['kind']): string {
    const hold: AddressHold = { kind, host: this.hostId, holder: randomBytes(8).toString('hex'), since: new Date().toISOString() };
    return JSON.stringify(hold);
  }

  /** The pool's gateway: set once, by the first network on any host, and the same for all. */
  gateway(pool: ClaimedPool, chosen: string, deadline: number): Promise<string> {
    const { keys } = pool;
    return changeDefinition(this.etcd, keys, deadline, async (definition): Promise<DefinitionChange<string>> => {
      if (!definition) throw gone(keys.name);
      if (definition.gateway) {
        if (chosen !== '' && chosen !== definition.gateway) {
          throw new RequestError('Address', `pool ${keys.name} has gateway ${definition.gateway} on every host; give --gateway ${definition.gateway} or leave it out`);
        }
        return { result: definition.gateway };
      }
      const ip = chosen !== '' ? checkChosenAddress(pool.shape, chosen, `pool ${keys.name}`) : (await this.refreshView(pool, deadline)).peekFirstInPool();
      if (!ip) throw exhausted(pool);
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
  }

  /** An --aux-address: held by the pool for every host; a host asking it again shares it. */
  async aux(pool: ClaimedPool, chosen: string, deadline: number): Promise<string> {
    const address = formatIp(checkChosenAddress(pool.shape, chosen, `pool ${pool.keys.name}`));
    const key = pool.keys.address(address);
    const result = await this.etcd.txn([{ key, absent: true }], [{ put: key, value: this.newHold('aux') }], [{ get: key }], deadline);
    const holder = result.found[0];
    if (!result.succeeded && holder && decodeValue(AddressHold, holder.key, holder.value).kind !== 'aux') {
      throw new RequestError('Address', `${chosen} is already allocated in pool ${pool.keys.name}: ${this.describe(holder)}`);
    }
    return address;
  }

  /** A container address the user chose (--ip), written as hold `value`. */
  async claimChosen(pool: ClaimedPool, chosen: string, value: string, beforeWrite: BeforeWrite, deadline: number): Promise<Ip> {
    const ip = checkChosenAddress(pool.shape, chosen, `pool ${pool.keys.name}`);
    const result = await this.claim(pool, ip, value, beforeWrite, deadline);
    if (!result.claimed) {
      throw new RequestError('Address', `${chosen} is already allocated in pool ${pool.keys.name}: ${result.holder ? this.describe(result.holder) : 'taken meanwhile'}`);
    }
    pool.view?.take(ip, false);
    return ip;
  }

  /** The next free address after this host's cursor; a race lost to another host refreshes the view and tries the next. */
  async claimNext(pool: ClaimedPool, value: string, beforeWrite: BeforeWrite, deadline: number): Promise<Ip> {
    let view = pool.view ?? (await this.refreshView(pool, deadline));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let ip = view.peekNext();
      if (!ip) {
        // Other hosts may have released addresses this host has not seen yet.
        view = await this.refreshView(pool, deadline);
        ip = view.peekNext();
        if (!ip) throw exhausted(pool);
      }
      if ((await this.claim(pool, ip, value, beforeWrite, deadline)).claimed) {
        view.take(ip, true);
        return ip;
      }
      this.racesLost++;
      view = await this.refreshView(pool, deadline);
    }
    throw new RequestError('Address', `pool ${pool.keys.name}: ${MAX_ATTEMPTS} writes in a row lost to other hosts' writes; try again`);
  }

  /**
   * This host's container holds (address → the value it wrote) against
   * etcd, after it was away: one whose key is gone (a gc) is claimed back
   * when still free. Returns those another hold has now, as
   * `address (who has it)`, and those claimed back.
   */
  async reconcile(pool: ClaimedPool, holds: ReadonlyMap<string, string>, deadline: number): Promise<{ conflicts: string[]; claimedBack: string[] }> {
    const conflicts: string[] = [];
    const claimedBack: string[] = [];
    const inEtcd = new Map((await this.etcd.list(pool.keys.addressesPrefix, deadline)).map((e) => [pool.keys.addressOf(e.key), e]));
    for (const [address, value] of holds) {
      let holder = inEtcd.get(address);
      if (holder?.value === value) continue;
      if (!holder) {
        const key = pool.keys.address(address);
        const back = await this.etcd.txn([{ key, absent: true }], [{ put: key, value }], [{ get: key }], deadline);
        if (back.succeeded) {
          claimedBack.push(address);
          continue;
        }
        holder = back.found[0];
      }
      conflicts.push(`${address} (${holder ? this.describe(holder) : 'taken meanwhile'})`);
    }
    return { conflicts, claimedBack };
  }

  /**
   * Writes a container hold if the address is free and the pool still exists
   * (gc may have deleted it). A retried transaction that had gone through
   * finds its own value: that is success.
   */
  private async claim(pool: ClaimedPool, ip: Ip, value: string, beforeWrite: BeforeWrite, deadline: number): Promise<{ claimed: true } | { claimed: false; holder?: Entry }> {
    const { keys } = pool;
    await beforeWrite(ip);
    const key = keys.address(formatIp(ip));
    const result = await this.etcd.txn(
      [{ key, absent: true }, { key: keys.definition, present: true }],
      [{ put: key, value }],
      [{ get: key }, { get: keys.definition }],
      deadline,
    );
    const holder = result.found.find((e) => e.key === key);
    if (result.succeeded || holder?.value === value) return { claimed: true };
    if (!result.found.some((e) => e.key === keys.definition)) throw gone(keys.name);
    return { claimed: false, ...(holder ? { holder } : {}) };
  }

  /** Rebuilds this host's view of the taken addresses from etcd, keeping its cursor. */
  private async refreshView(pool: ClaimedPool, deadline: number): Promise<PoolAllocator> {
    const entries = await this.etcd.list(pool.keys.addressesPrefix, deadline, true);
    const view = new PoolAllocator(pool.shape.pool, pool.shape.range);
    view.cursor = pool.view?.cursor ?? BigInt(pool.record.cursor);
    for (const entry of entries) {
      const ip = parseIp(pool.keys.addressOf(entry.key));
      if (ip && view.contains(ip) && !view.isReserved(ip)) view.take(ip, false);
    }
    pool.view = view;
    return view;
  }

  private describe(holder: Entry): string {
    const hold = decodeValue(AddressHold, holder.key, holder.value);
    if (hold.kind === 'gateway') return 'it is the pool\'s gateway';
    if (hold.kind === 'aux') return 'it is an aux address of the pool';
    return hold.host === this.hostId ? 'held by this host' : `held by host ${hold.host}`;
  }
}

function exhausted(pool: ClaimedPool): RequestError {
  const range = pool.record.subPool ? ` (ip-range ${pool.record.subPool})` : '';
  return new RequestError('Address', `no free address left in shared pool ${pool.keys.name} ${pool.record.pool}${range}`);
}

function gone(name: string): RequestError {
  return new RequestError('PoolID', `pool ${name} is no longer in the cluster store (removed by tsnet cluster gc?); re-create the network`);
}
