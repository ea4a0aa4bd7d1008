/**
 * Persistent state behind tsnet. Every record lives in a collection under a
 * key and is a JSON value. Reads happen once, at start-up; after that the
 * daemon's memory is a write-through copy and every API call persists its
 * changes as one atomic batch. An etcd backend fits the same shape.
 */
export type Collection =
  | 'networks'
  | 'endpoints'
  | 'pools'
  | 'addresses'
  | 'meta'
  // This host's own record of shared pools (the cluster store is the authority across hosts):
  | 'shared-pools'
  | 'shared-addresses'
  | 'cluster-pending'
  // Pools whose addresses the LAN's DHCP server hands out, and the leases tsnet holds of it:
  | 'dhcp-pools'
  | 'dhcp-leases';

/** One change in a batch: a put, or a delete when `value` is null. */
export interface Write {
  collection: Collection;
  key: string;
  value: unknown;
}

export interface Store {
  /** Every record of a collection, by key. */
  readAll<T>(collection: Collection): Promise<Map<string, T>>;
  /** Applies all writes atomically, or none of them. */
  commit(writes: readonly Write[]): Promise<void>;
  close(): Promise<void>;
}

export const put = (collection: Collection, key: string, value: unknown): Write => ({ collection, key, value });
export const del = (collection: Collection, key: string): Write => ({ collection, key, value: null });
