/**
 * A large cluster's records, written straight to etcd as tsnet writes them:
 * for the scale tests and bench/cluster. Endpoint n is in pool n % pools, at
 * that pool's (n / pools)-th address past the gateway, held by hostOf(n),
 * with an address hold and a published name.
 */
import { randomBytes } from 'node:crypto';
import { deadlineFromNow, type EtcdClient, MAX_TXN_OPS, type Op } from '../../src/cluster/etcd-client.js';
import { type AddressHold, hostKey, nameKey, type PoolDefinition, PoolKeys, type PublishedName } from '../../src/cluster/keys.js';

export interface ClusterLayout {
  endpoints: number;
  pools: number;
  /** Every host using the pools (each gets a registry entry). */
  hosts: readonly string[];
  hostOf: (endpoint: number) => string;
}

export const scalePoolName = (pool: number) => `scale${pool}`;
export const scaleSubnet = (pool: number) => `10.${100 + pool}.0.0/16`;
/** The n-th address of a scale pool past its gateway (n = -1: the gateway). */
export const scaleAddress = (pool: number, n: number) => `10.${100 + pool}.${(n + 2) >> 8}.${(n + 2) & 255}`;

export const containerHold = (host: string): AddressHold => ({ kind: 'container', host, holder: randomBytes(8).toString('hex'), since: new Date().toISOString() });

/** Puts in transactions of etcd's most operations. */
export async function putAll(client: EtcdClient, entries: ReadonlyArray<readonly [string, unknown]>): Promise<void> {
  for (let first = 0; first < entries.length; first += MAX_TXN_OPS) {
    const ops: Op[] = entries.slice(first, first + MAX_TXN_OPS).map(([key, value]) => ({ put: key, value: JSON.stringify(value) }));
    await client.txn([], ops, [], deadlineFromNow());
  }
}

/** Writes the registry, the pools' definitions, and each endpoint's hold and name. */
export async function seedCluster(client: EtcdClient, layout: ClusterLayout): Promise<void> {
  const definitions = Array.from({ length: layout.pools }, (_, pool) => {
    const definition: PoolDefinition = { name: scalePoolName(pool), family: 4, subnet: scaleSubnet(pool), gateway: scaleAddress(pool, -1), definedBy: layout.hosts[0]!, users: [...layout.hosts] };
    return [new PoolKeys(scalePoolName(pool), 4).definition, definition] as const;
  });
  const endpoints = Array.from({ length: layout.endpoints }, (_, n) => ({ n, pool: n % layout.pools, host: layout.hostOf(n), address: scaleAddress(n % layout.pools, Math.floor(n / layout.pools)) }));
  await putAll(client, [
    ...layout.hosts.map((host) => [hostKey(host), { id: host, joined: new Date().toISOString() }] as const),
    ...definitions,
    ...endpoints.map((e) => [new PoolKeys(scalePoolName(e.pool), 4).address(e.address), containerHold(e.host)] as const),
    ...endpoints.map((e) => [nameKey(e.host, scalePoolName(e.pool), `${e.n}`.padStart(64, '0')), { names: [`c${e.n}`], ipv4: e.address } satisfies PublishedName] as const),
  ]);
}
