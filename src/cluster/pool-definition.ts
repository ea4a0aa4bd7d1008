import { RequestError } from '../errors.js';
import type { ClusterKv, Compare, Entry, Op } from './etcd-client.js';
import { aliveKey, decodeValue, PoolDefinition, type PoolKeys } from './keys.js';

/** Conflicting writes (another host changed the definition first) a change survives before it gives up. */
export const MAX_ATTEMPTS = 16;

/** What a change makes of the definition it was shown (undefined: the pool is not in etcd). */
export type DefinitionChange<T> =
  /** Nothing to write: the result stands. */
  | { result: T }
  | {
      result: T;
      /** Written if the definition is still the one shown and `compares` hold. */
      ops: Op[];
      compares?: Compare[];
      /** Read when the write did not happen, and shown to `lost`. */
      reads?: Op[];
      /** May end the change by throwing; otherwise the change is shown the definition again. */
      lost?: (found: Entry[]) => void;
    };

/**
 * The one read-decide-write loop of a pool's definition: reads it, asks
 * `change` what to write, writes that only if nobody wrote the definition
 * meanwhile (its revision, or its absence), and starts over when somebody did.
 */
export async function changeDefinition<T>(
  etcd: ClusterKv,
  keys: PoolKeys,
  deadline: number,
  change: (definition: PoolDefinition | undefined) => DefinitionChange<T> | Promise<DefinitionChange<T>>,
): Promise<T> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const entry = await etcd.get(keys.definition, deadline);
    const decided = await change(entry && decodeValue(PoolDefinition, entry.key, entry.value));
    if (!('ops' in decided)) return decided.result;
    const unchanged: Compare = entry ? { key: keys.definition, modRevision: entry.modRevision } : { key: keys.definition, absent: true };
    const written = await etcd.txn([unchanged, ...(decided.compares ?? [])], decided.ops, decided.reads ?? [], deadline);
    if (written.succeeded) return decided.result;
    decided.lost?.(written.found);
  }
  throw new RequestError('cluster store', `pool ${keys.name}: ${MAX_ATTEMPTS} writes in a row lost to other hosts' writes; try again`);
}

/** Defines the pool, or checks a request against its definition, and adds `host` to its users. */
export function joinPool(etcd: ClusterKv, keys: PoolKeys, host: string, subnet: string, range: string | undefined, poolField: string, deadline: number): Promise<void> {
  return changeDefinition(etcd, keys, deadline, (definition) => {
    if (!definition) {
      const defined: PoolDefinition = { name: keys.name, family: keys.family, subnet, ...(range ? { range } : {}), definedBy: host, users: [host] };
      return { result: undefined, ops: [{ put: keys.definition, value: JSON.stringify(defined) }] };
    }
    if (definition.subnet !== subnet || definition.range !== range) {
      const shape = (s: string, r?: string) => `${s}${r ? ` with ip-range ${r}` : ' without ip-range'}`;
      throw new RequestError(poolField, `pool ${keys.name} is ${shape(definition.subnet, definition.range)} (defined by host ${definition.definedBy}); this network asks ${shape(subnet, range)}`);
    }
    if (definition.users.includes(host)) return { result: undefined };
    return { result: undefined, ops: [{ put: keys.definition, value: JSON.stringify({ ...definition, users: [...definition.users, host] }) }] };
  });
}

/**
 * Takes `host` off a pool's users; the last user deletes the pool with
 * everything under it. `whileDead`: only while the host has no alive key
 * (gc), checked in the same transaction, so a host that comes back keeps its pools.
 */
export function removeUser(etcd: ClusterKv, keys: PoolKeys, host: string, deadline: number, whileDead = false): Promise<void> {
  const alive = aliveKey(host);
  return changeDefinition(etcd, keys, deadline, (definition) => {
    if (!definition?.users.includes(host)) return { result: undefined };
    const users = definition.users.filter((u) => u !== host);
    const op: Op = users.length === 0 ? { deletePrefix: keys.prefix } : { put: keys.definition, value: JSON.stringify({ ...definition, users }) };
    if (!whileDead) return { result: undefined, ops: [op] };
    return {
      result: undefined,
      ops: [op],
      compares: [{ key: alive, absent: true }],
      reads: [{ get: alive }],
      lost: (found) => {
        if (found.some((e) => e.key === alive)) throw hostCameBack(host);
      },
    };
  });
}

export const hostCameBack = (host: string): RequestError =>
  new RequestError('host', `host ${host} came back (its tsnet registered again) during gc; what it still holds stays its own`);
