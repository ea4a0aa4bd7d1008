import { RequestError } from '../errors.js';
import type { Cidr } from '../net/address.js';

/** `--ipam-opt tsnet.pool=NAME`: the network's addresses come from pool NAME, shared by every host of the cluster. */
export const POOL_OPTION = 'tsnet.pool';

/** PoolIDs of shared pools start with this; the IpamService hands their requests to SharedPools. */
export const SHARED_POOL_ID_PREFIX = 'tsnet-cluster/';

export const isSharedPoolId = (poolId: string) => poolId.startsWith(SHARED_POOL_ID_PREFIX);

const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A pool name becomes an etcd key segment: no spaces or slashes, at most 63 bytes. */
export function parsePoolName(name: string): string {
  const field = `Options.${POOL_OPTION}`;
  if (Buffer.byteLength(name) > 63) throw new RequestError(field, `"${name}" is longer than 63 bytes`);
  if (!POOL_NAME.test(name)) throw new RequestError(field, `"${name}" may only hold letters, digits, _ . and -, starting with a letter or digit`);
  return name;
}

export interface SharedPoolRequest {
  name: string;
  pool: Cidr;
  subPool?: Cidr;
}

export interface PoolGrant {
  poolId: string;
  pool: string;
  data: Record<string, string>;
}

/**
 * Pools whose addresses several hosts hand out (the cluster store). The
 * IpamService validates the request and passes shared-pool calls here; the
 * answers and errors are those of the IpamDriver protocol.
 */
export interface SharedPools {
  requestPool(request: SharedPoolRequest): Promise<PoolGrant>;
  releasePool(poolId: string): Promise<void>;
  /** `options` as in RequestAddress: the gateway is asked with RequestAddressType. */
  requestAddress(poolId: string, address: string, options: Record<string, string>): Promise<{ address: string }>;
  releaseAddress(poolId: string, address: string): Promise<void>;
}
