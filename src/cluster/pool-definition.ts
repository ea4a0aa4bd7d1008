import { createHash } from 'node:crypto';
import { RequestError } from '../errors.js';
import type { ClusterKv, Compare, Entry, Op } from './etcd-client.js';
import { aliveKey, decodeValue, PoolDefinition, type PoolKeys, type SegmentSecrets, vniKey } from './keys.js';

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

/** What a host asks of a shared pool when its IPAM is asked for it (before the network exists). */
export interface PoolAsk {
  host: string;
  subnet: string;
  range?: string;
  /** The request's field a refusal names (the pool option). */
  field: string;
}

const shape = (s: string, r?: string) => `${s}${r ? ` with ip-range ${r}` : ' without ip-range'}`;

/** Defines the pool, or checks a request against its definition, and adds the host to its users. */
export function joinPool(etcd: ClusterKv, keys: PoolKeys, ask: PoolAsk, deadline: number): Promise<PoolDefinition> {
  return changeDefinition(etcd, keys, deadline, (definition): DefinitionChange<PoolDefinition> => {
    if (!definition) {
      const defined: PoolDefinition = { name: keys.name, family: keys.family, subnet: ask.subnet, ...(ask.range ? { range: ask.range } : {}), definedBy: ask.host, users: [ask.host] };
      return { result: defined, ops: [{ put: keys.definition, value: JSON.stringify(defined) }] };
    }
    if (definition.subnet !== ask.subnet || definition.range !== ask.range) {
      throw new RequestError(ask.field, `pool ${keys.name} is ${shape(definition.subnet, definition.range)} (defined by host ${definition.definedBy}); this network asks ${shape(ask.subnet, ask.range)}`);
    }
    if (definition.users.includes(ask.host)) return { result: definition };
    const joined = { ...definition, users: [...definition.users, ask.host] };
    return { result: joined, ops: [{ put: keys.definition, value: JSON.stringify(joined) }] };
  });
}

/**
 * Where tsnet's VNIs start: far above the 4096 on that Docker's swarm
 * overlay starts from, so both can run on one host. A pool's first choice
 * comes from its name; a VNI another pool has is skipped.
 */
const VNI_BASE = 0x740000;
const VNI_SPREAD = 0x10000;
const firstVni = (name: string) => VNI_BASE + (createHash('sha256').update(name).digest().readUInt32BE(0) % VNI_SPREAD);

/** Whether a host's overlay network asks for an encrypted segment. */
export interface SegmentAsk {
  /** The option that asked (tsnet.encrypt), which a mismatch is blamed on. */
  field: string;
  /** Present: encrypted, with the segment's first keys (random, made by the caller), written only if the segment has none. */
  firstKeys?: () => SegmentSecrets;
}

/**
 * The VNI of the overlay segment on the pool, given to it by the first
 * overlay network (with an encrypted segment's keys, in the same
 * transaction). The IPAM, asked before, cannot tell an overlay (dockerd
 * gives it only the --ipam-opt), so the pool's users, which join at that
 * moment, say nothing of their networks' kind. Whether the
 * segment is encrypted is decided by its first network and never changes:
 * a later network asking otherwise is refused, or hosts would send the
 * segment's traffic in clear to hosts that drop it, or the reverse.
 */
export function segmentVni(etcd: ClusterKv, keys: PoolKeys, field: string, deadline: number, ask?: SegmentAsk): Promise<number> {
  let vni = firstVni(keys.name);
  return changeDefinition(etcd, keys, deadline, (definition): DefinitionChange<number> => {
    if (!definition) throw new RequestError(field, `pool ${keys.name} is not in the cluster store (removed by tsnet cluster gc?); re-create the network`);
    if (definition.vni !== undefined) {
      const encrypted = definition.encrypted ?? false;
      if (encrypted !== (ask?.firstKeys !== undefined)) {
        throw new RequestError(ask?.field ?? field, encrypted ? `segment ${keys.name} is encrypted: create the network with -o ${ask?.field ?? 'tsnet.encrypt'}=on` : `segment ${keys.name} is not encrypted (its first network decided so); create this network without it`);
      }
      return { result: definition.vni };
    }
    const key = vniKey(vni);
    const secrets = ask?.firstKeys ? [{ put: keys.encryption, value: JSON.stringify(ask.firstKeys()) }] : [];
    return {
      result: vni,
      ops: [{ put: keys.definition, value: JSON.stringify({ ...definition, vni, ...(secrets.length > 0 ? { encrypted: true } : {}) }) }, { put: key, value: keys.name }, ...secrets],
      compares: [{ key, absent: true }],
      reads: [{ get: key }],
      // Another segment has this VNI: the next one is tried.
      lost: (found) => {
        if (found.length > 0) vni = VNI_BASE + ((vni + 1 - VNI_BASE) % VNI_SPREAD);
      },
    };
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
    // The last user takes the pool along, its VNI too; any other user its acknowledgement of an encrypted segment's keys.
    const ops: Op[] = users.length > 0
      ? [{ put: keys.definition, value: JSON.stringify({ ...definition, users }) }, { delete: keys.keyAck(host) }]
      : [{ deletePrefix: keys.prefix }, ...(definition.vni !== undefined ? [{ delete: vniKey(definition.vni) }] : [])];
    if (!whileDead) return { result: undefined, ops };
    return {
      result: undefined,
      ops,
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
