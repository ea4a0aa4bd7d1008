import { RequestError } from '../errors.js';
import { KeyedMutex } from '../mutex.js';
import { type Store, type Write, del, put } from '../store/store.js';
import { type Cidr, type Ip, cidrOverlaps, cidrWithin, formatCidr, formatIp, parseCidr, parseCidrWithIp, parseIp } from '../net/address.js';
import { type DefaultPool, candidateSubnets, parseDefaultPools, DEFAULT_POOLS_V4, DEFAULT_POOLS_V6 } from './default-pools.js';
import { checkChosenAddress, PoolAllocator } from './pool-allocator.js';
import { isSharedPoolId, parsePoolName, POOL_OPTION, type PoolGrant, type SharedPools } from './shared-pools.js';
import { type DhcpPools, isDhcpPoolId } from '../dhcp/dhcp-pools.js';
import { DHCP_OPTION } from '../dhcp/options.js';
import type { LeaseRecord } from '../dhcp/leases.js';

export const LOCAL_ADDRESS_SPACE = 'tsnet-local';
export const GLOBAL_ADDRESS_SPACE = 'tsnet-global';
const ADDRESS_SPACES = [LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE];
export const GATEWAY_REQUEST = 'com.docker.network.gateway';

/** A pool as persisted; `refs` counts the networks that requested it. */
export interface PoolRecord {
  id: string;
  addressSpace: string;
  pool: string;
  subPool?: string;
  v6: boolean;
  refs: number;
  /** The allocator's cursor (an offset, as a decimal string: JSON has no bigint). */
  cursor: string;
}

/** A taken address; a gateway shared by networks on one pool is held several times. */
export interface AddressRecord {
  poolId: string;
  address: string;
  gateway: boolean;
  holders: number;
}

export interface PoolRequest {
  addressSpace: string;
  pool: string;
  subPool: string;
  options: Record<string, string>;
  v6: boolean;
}

export interface AddressRequest {
  poolId: string;
  address: string;
  options: Record<string, string>;
}

export interface IpamConfig {
  defaultPoolsV4?: string;
  defaultPoolsV6?: string;
  /** Subnets in use on the host (routes, addresses); automatic pools avoid them. */
  hostNetworks?: () => Promise<Cidr[]>;
  /** Pools shared through the cluster store (`--ipam-opt tsnet.pool=NAME`); absent without --cluster-store. */
  shared?: SharedPools;
  /** Pools whose addresses the LAN's DHCP server hands out (`--ipam-opt tsnet.dhcp=on`). */
  dhcp?: DhcpPools;
  /**
   * Whether a device outside tsnet answers for an address (`a.b.c.d/len`)
   * on its network's wire (macvlan with tsnet.arp_probe=on). Such an address
   * stays allocated, so it is never handed out, and the next one is tried.
   */
  inUse?: (address: string) => Promise<boolean>;
  /**
   * Whether the host itself holds an address (`a.b.c.d/len`) on its network
   * (a macvlan's tsnet.host_shim): the driver takes it after the pool is made,
   * so the pool cannot know. A container given it would clash with the host.
   */
  hostHolds?: (address: string) => boolean;
}

/** Addresses probed for one automatic request before it gives up: each probe may wait ~1 s. */
const MAX_PROBES = 4;

interface LivePool {
  record: PoolRecord;
  allocator: PoolAllocator;
  addresses: Map<string, AddressRecord>;
}

const addressKey = (poolId: string, address: string) => `${poolId} ${address}`;

/**
 * Lock keys. POOLS is the cross-pool section: a new pool is checked against
 * the others (and an automatic one chosen) under it, and pools come and go
 * under it. Addresses are taken and given back under their pool's own key,
 * so the address requests of one pool never wait for another pool, nor for
 * an automatic pool choice (which reads the host's routes).
 */
const POOLS = 'pools';
const poolKey = (poolId: string) => `pool ${poolId}`;

/** tsnet's IPAM: pools, gateways, aux and container addresses, persisted in the Store. */
export class IpamService {
  private readonly pools = new Map<string, LivePool>();
  private readonly locks = new KeyedMutex();
  private readonly defaults: Record<4 | 6, DefaultPool[]>;
  private readonly hostNetworks: () => Promise<Cidr[]>;
  private readonly shared: SharedPools | undefined;
  private readonly dhcp: DhcpPools | undefined;
  private readonly inUse: ((address: string) => Promise<boolean>) | undefined;
  private readonly hostHolds: (address: string) => boolean;
  /**
   * The gateways the user chose (--gateway), as `subnet gateway` by pool and
   * address: a network kind may refuse one it has no use for (ipvlan l3).
   * Memory is enough: dockerd sends CreateNetwork right after the gateway's
   * RequestAddress, within the same `docker network create`.
   */
  private readonly chosenGateways = new Map<string, string>();

  constructor(
    private readonly store: Store,
    config: IpamConfig = {},
  ) {
    this.defaults = {
      4: parseDefaultPools(config.defaultPoolsV4 ?? DEFAULT_POOLS_V4),
      6: parseDefaultPools(config.defaultPoolsV6 ?? DEFAULT_POOLS_V6),
    };
    this.hostNetworks = config.hostNetworks ?? (async () => []);
    this.shared = config.shared;
    this.dhcp = config.dhcp;
    this.inUse = config.inUse;
    this.hostHolds = config.hostHolds ?? (() => false);
  }

  async load(): Promise<void> {
    const records = await this.store.readAll<PoolRecord>('pools');
    for (const record of records.values()) this.pools.set(record.id, this.instantiate(record));
    const addresses = await this.store.readAll<AddressRecord>('addresses');
    for (const address of addresses.values()) {
      const live = this.pools.get(address.poolId);
      if (!live) continue;
      live.allocator.take(parseIp(address.address)!, false);
      live.addresses.set(address.address, address);
    }
  }

  private instantiate(record: PoolRecord): LivePool {
    const pool = parseCidr(record.pool)!.cidr;
    const range = record.subPool ? parseCidr(record.subPool)!.cidr : undefined;
    const allocator = new PoolAllocator(pool, range);
    allocator.cursor = BigInt(record.cursor);
    return { record, allocator, addresses: new Map() };
  }

  /** The pools known, for state inspection and tests. */
  list(): PoolRecord[] {
    return [...this.pools.values()].map((p) => ({ ...p.record }));
  }

  addressesOf(poolId: string): AddressRecord[] {
    return [...(this.pools.get(poolId)?.addresses.values() ?? [])].map((a) => ({ ...a }));
  }

  requestPool(request: PoolRequest): Promise<PoolGrant> {
    if (this.wantsDhcp(request)) return this.requestDhcpPool(request);
    const sharedName = request.options[POOL_OPTION];
    // Shared pools wait on the cluster store, not on this host's IPAM lock.
    if (sharedName !== undefined) return this.requestSharedPool(request, sharedName);
    return this.locks.run(POOLS, async () => {
      this.checkPoolRequest(request);
      const family = request.v6 ? 6 : 4;
      const pool = request.pool === '' ? await this.choosePool(request.addressSpace, family, request.subPool) : this.parsePool(request.pool, family);
      const subPool = this.parseSubPool(request.subPool, pool);
      const id = [request.addressSpace, formatCidr(pool), ...(subPool ? [formatCidr(subPool)] : [])].join('/');

      const existing = this.pools.get(id);
      if (existing) {
        // Same space, pool and range: the spec asks for the same PoolID, counted once more.
        return this.locks.run(poolKey(id), async () => {
          const record = { ...existing.record, refs: existing.record.refs + 1 };
          await this.store.commit([put('pools', id, record)]);
          existing.record = record;
          return { poolId: id, pool: record.pool, data: {} };
        });
      }
      for (const other of this.pools.values()) {
        const otherPool = other.allocator.pool;
        if (other.record.addressSpace === request.addressSpace && cidrOverlaps(otherPool, pool)) {
          throw new RequestError('Pool', `${formatCidr(pool)} overlaps with pool ${formatCidr(otherPool)} in address space ${request.addressSpace}`);
        }
      }
      const allocator = new PoolAllocator(pool, subPool);
      const record: PoolRecord = {
        id,
        addressSpace: request.addressSpace,
        pool: formatCidr(pool),
        ...(subPool ? { subPool: formatCidr(subPool) } : {}),
        v6: request.v6,
        refs: 1,
        cursor: allocator.cursor.toString(),
      };
      await this.store.commit([put('pools', id, record)]);
      this.pools.set(id, { record, allocator, addresses: new Map() });
      return { poolId: id, pool: record.pool, data: {} };
    });
  }

  private checkPoolRequest(request: PoolRequest): void {
    if (!ADDRESS_SPACES.includes(request.addressSpace)) {
      throw new RequestError('AddressSpace', `unknown address space "${request.addressSpace}"; tsnet serves ${ADDRESS_SPACES.join(' and ')}`);
    }
    for (const key of Object.keys(request.options)) {
      if (key.startsWith('tsnet.') && key !== POOL_OPTION && key !== DHCP_OPTION) throw new RequestError(`Options.${key}`, `unknown IPAM option (tsnet's: ${POOL_OPTION}, ${DHCP_OPTION})`);
    }
  }

  private async requestSharedPool(request: PoolRequest, nameText: string): Promise<PoolGrant> {
    this.checkPoolRequest(request);
    const name = parsePoolName(nameText);
    const shared = this.sharedPools(`Options.${POOL_OPTION}`);
    if (request.pool === '') throw new RequestError('Pool', `a shared pool (${POOL_OPTION}) needs an explicit --subnet`);
    const pool = this.parsePool(request.pool, request.v6 ? 6 : 4);
    const subPool = this.parseSubPool(request.subPool, pool);
    return shared.requestPool({ name, pool, ...(subPool ? { subPool } : {}) });
  }

  /** tsnet.dhcp=on|off (off: tsnet's own addresses, as without it). */
  private wantsDhcp(request: PoolRequest): boolean {
    const value = request.options[DHCP_OPTION];
    if (value === undefined || value === 'off') return false;
    if (value !== 'on') throw new RequestError(`Options.${DHCP_OPTION}`, `"${value}" must be on or off`);
    return true;
  }

  private requestDhcpPool(request: PoolRequest): Promise<PoolGrant> {
    this.checkPoolRequest(request);
    const field = `Options.${DHCP_OPTION}`;
    const dhcp = this.dhcpPools(field);
    if (request.v6) throw new RequestError(field, 'DHCP hands out IPv4 addresses only; give IPv6 its own subnet without tsnet.dhcp');
    if (request.options[POOL_OPTION] !== undefined) throw new RequestError(field, `a pool is either the LAN's DHCP server's or shared through the cluster store (${POOL_OPTION}), not both`);
    if (request.pool === '') throw new RequestError('Pool', `${DHCP_OPTION}=on needs the LAN's subnet: --subnet`);
    if (request.subPool !== '') throw new RequestError('SubPool', `the DHCP server hands out its own range: no --ip-range with ${DHCP_OPTION}=on`);
    return dhcp.requestPool(this.parsePool(request.pool, 4));
  }

  private dhcpPools(field = 'PoolID'): DhcpPools {
    if (!this.dhcp) throw new RequestError(field, 'this daemon serves no DHCP pools');
    return this.dhcp;
  }

  private sharedPools(field: string): SharedPools {
    if (!this.shared) throw new RequestError(field, 'shared pools need the cluster store: start tsnet daemon with --cluster-store etcd://HOST:PORT');
    return this.shared;
  }

  private parsePool(text: string, family: 4 | 6): Cidr {
    const parsed = parseCidr(text);
    if (!parsed) throw new RequestError('Pool', `"${text}" is not a subnet in CIDR notation`);
    if (parsed.cidr.family !== family) throw new RequestError('Pool', `${text} is not an IPv${family} subnet`);
    if (parsed.hostBitsSet) throw new RequestError('Pool', `${text} has host bits set; did you mean ${formatCidr(parsed.cidr)}?`);
    const maxPrefix = family === 4 ? 30 : 126;
    if (parsed.cidr.prefix > maxPrefix) throw new RequestError('Pool', `${text} is too small: it must hold at least two container addresses`);
    if (parsed.cidr.prefix === 0) throw new RequestError('Pool', `${text} covers the whole address family`);
    return parsed.cidr;
  }

  private parseSubPool(text: string, pool: Cidr): Cidr | undefined {
    if (text === '') return undefined;
    const parsed = parseCidr(text);
    if (!parsed) throw new RequestError('SubPool', `"${text}" is not a subnet in CIDR notation`);
    if (parsed.hostBitsSet) throw new RequestError('SubPool', `${text} has host bits set; did you mean ${formatCidr(parsed.cidr)}?`);
    if (!cidrWithin(parsed.cidr, pool)) throw new RequestError('SubPool', `${text} is not inside pool ${formatCidr(pool)}`);
    return parsed.cidr;
  }

  private async choosePool(addressSpace: string, family: 4 | 6, subPool: string): Promise<Cidr> {
    if (subPool !== '') throw new RequestError('SubPool', 'an ip-range needs an explicit subnet (Pool)');
    const inUse = [...this.pools.values()].map((p) => p.allocator.pool);
    const onHost = await this.hostNetworks();
    for (const candidate of candidateSubnets(this.defaults[family])) {
      // A pool libnetwork rejected stays allocated until it releases it, so it is never offered twice.
      if (inUse.some((used) => cidrOverlaps(used, candidate))) continue;
      if (onHost.some((used) => cidrOverlaps(used, candidate))) continue;
      return candidate;
    }
    throw new RequestError('Pool', `no free IPv${family} subnet left in the default pools of address space ${addressSpace}`);
  }

  releasePool(poolId: string): Promise<void> {
    if (isDhcpPoolId(poolId)) return this.dhcpPools().releasePool(poolId);
    if (isSharedPoolId(poolId)) return this.sharedPools('PoolID').releasePool(poolId);
    return this.locks.run(POOLS, () => this.locks.run(poolKey(poolId), async () => {
      const live = this.pools.get(poolId);
      if (!live) return;
      if (live.record.refs > 1) {
        const record = { ...live.record, refs: live.record.refs - 1 };
        await this.store.commit([put('pools', poolId, record)]);
        live.record = record;
        return;
      }
      const writes: Write[] = [del('pools', poolId), ...[...live.addresses.keys()].map((a) => del('addresses', addressKey(poolId, a)))];
      await this.store.commit(writes);
      this.pools.delete(poolId);
    }));
  }

  /**
   * An address of the pool: the one asked for, or the next free one. An
   * automatic container address that a device outside tsnet answers for
   * (tsnet.arp_probe) stays allocated to that device, and the next is tried.
   */
  async requestAddress(request: AddressRequest): Promise<{ address: string }> {
    // The server decides: no probing, no host-shim check of tsnet's own (its server pings before it offers).
    if (isDhcpPoolId(request.poolId)) return this.dhcpPools().requestAddress(request.poolId, request.address, request.options);
    if (request.options.RequestAddressType === GATEWAY_REQUEST) {
      const allocated = await this.allocate(request);
      const parsed = parseCidrWithIp(allocated.address)!;
      if (request.address !== '') this.chosenGateways.set(addressKey(request.poolId, formatIp(parsed.ip)), `${formatCidr(parsed.cidr)} ${formatIp(parsed.ip)}`);
      return allocated;
    }
    if (request.address !== '') return this.allocateChosen(request);
    const foreign: string[] = [];
    while (foreign.length < MAX_PROBES) {
      const allocated = await this.allocate(request);
      // Kept allocated, like a foreign device's address: the host's own address is never handed out.
      if (this.hostHolds(allocated.address)) continue;
      if (!this.inUse || !(await this.probe(this.inUse, request.poolId, allocated.address))) return allocated;
      foreign.push(allocated.address.split('/')[0]!);
    }
    throw new RequestError('Address', `devices outside tsnet answer ARP for ${foreign.join(', ')} on the network's LAN: those stay reserved; ask again for the next addresses, or give --ip`);
  }

  /** A container's --ip, refused when the host holds it on the network (the pool alone knows only its prefix). */
  private async allocateChosen(request: AddressRequest): Promise<{ address: string }> {
    const allocated = await this.allocate(request);
    if (!this.hostHolds(allocated.address)) return allocated;
    await this.releaseAddress(request.poolId, allocated.address);
    throw new RequestError('Address', `${request.address} is the host's own address on the network (tsnet.host_shim)`);
  }

  /**
   * Whether a device outside tsnet answers for the address just allocated.
   * A probe that fails gives the address back first: dockerd never learns
   * of it, so nobody would ever release it.
   */
  private async probe(inUse: (address: string) => Promise<boolean>, poolId: string, address: string): Promise<boolean> {
    try {
      return await inUse(address);
    } catch (error) {
      await this.releaseAddress(poolId, address);
      throw error;
    }
  }

  private allocate(request: AddressRequest): Promise<{ address: string }> {
    if (isSharedPoolId(request.poolId)) return this.sharedPools('PoolID').requestAddress(request.poolId, request.address, request.options);
    return this.locks.run(poolKey(request.poolId), async () => {
      const live = this.pools.get(request.poolId);
      if (!live) throw new RequestError('PoolID', `unknown pool "${request.poolId}"`);
      const isGateway = request.options.RequestAddressType === GATEWAY_REQUEST;
      const address = request.address === '' ? this.nextAddress(live, isGateway) : this.preferredAddress(live, request.address, isGateway);
      const automatic = request.address === '' && !isGateway;
      return { address: `${await this.take(live, address, isGateway, automatic)}/${live.allocator.pool.prefix}` };
    });
  }

  /** The address automatic allocation gives: the pool's first free one for a gateway, else the range's next. */
  private nextAddress(live: LivePool, isGateway: boolean): Ip {
    const next = isGateway ? live.allocator.peekFirstInPool() : live.allocator.peekNext();
    if (next) return next;
    const range = live.record.subPool ? ` (ip-range ${live.record.subPool})` : '';
    throw new RequestError('Address', `no free address left in pool ${live.record.pool}${range}`);
  }

  /** Checks an address the user chose (--gateway, --aux-address, --ip); it may lie outside the ip-range. */
  private preferredAddress(live: LivePool, text: string, isGateway: boolean): Ip {
    const ip = checkChosenAddress(live.allocator, text, `pool ${live.record.pool}`);
    const held = live.addresses.get(formatIp(ip));
    // Several networks on one shared pool may share their gateway; nothing else is shared.
    if (held && !(isGateway && held.gateway)) throw new RequestError('Address', `${text} is already allocated in pool ${live.record.pool}`);
    return ip;
  }

  /** Persists the address as taken (or held once more), then updates memory; only automatic picks move the cursor. */
  private async take(live: LivePool, ip: Ip, isGateway: boolean, automatic: boolean): Promise<string> {
    const { allocator } = live;
    const text = formatIp(ip);
    const held = live.addresses.get(text);
    const address: AddressRecord = held ? { ...held, holders: held.holders + 1 } : { poolId: live.record.id, address: text, gateway: isGateway, holders: 1 };
    const writes: Write[] = [put('addresses', addressKey(live.record.id, text), address)];
    const previousCursor = allocator.cursor;
    if (!held) allocator.take(ip, automatic);
    const record = allocator.cursor === previousCursor ? live.record : { ...live.record, cursor: allocator.cursor.toString() };
    if (record !== live.record) writes.push(put('pools', record.id, record));
    try {
      await this.store.commit(writes);
    } catch (error) {
      if (!held) allocator.release(ip);
      allocator.cursor = previousCursor;
      throw error;
    }
    live.record = record;
    live.addresses.set(text, address);
    return text;
  }

  releaseAddress(poolId: string, address: string): Promise<void> {
    this.chosenGateways.delete(addressKey(poolId, address.split('/')[0]!));
    if (isDhcpPoolId(poolId)) return this.dhcpPools().releaseAddress(poolId, address);
    if (isSharedPoolId(poolId)) return this.sharedPools('PoolID').releaseAddress(poolId, address);
    return this.locks.run(poolKey(poolId), () => this.release(this.pools.get(poolId), address));
  }

  /** The DHCP lease of a container address (plain IP), where the LAN's server gave it. */
  dhcpLease(address: string): LeaseRecord | undefined {
    return this.dhcp?.leases.get(address);
  }

  /** Every DHCP lease this host holds. */
  dhcpLeases(): readonly LeaseRecord[] {
    return this.dhcp?.leases.leases() ?? [];
  }

  /** Whether the user chose `gateway` (a plain IP) of the pool on `subnet` with --gateway. */
  gatewayChosen(subnet: string, gateway: string): boolean {
    const parsed = parseCidr(subnet);
    return parsed !== undefined && [...this.chosenGateways.values()].includes(`${formatCidr(parsed.cidr)} ${gateway}`);
  }

  /**
   * Gives back the container address (`ip/prefix`) of an endpoint dropped as
   * stale: dockerd tried ReleaseAddress while tsnet was down, gave up and
   * forgot it. Only a pool of exactly that subnet holding it as a container
   * address qualifies; an address of Docker's own IPAM is found nowhere.
   */
  async releaseStale(address: string): Promise<void> {
    const parsed = parseCidrWithIp(address);
    if (!parsed) return;
    const lease = this.dhcp?.leases.get(formatIp(parsed.ip));
    if (lease) return this.dhcp!.releaseAddress(lease.poolId, address);
    const holds = (p: LivePool) =>
      p.allocator.pool.network === parsed.cidr.network && p.allocator.pool.prefix === parsed.cidr.prefix && p.addresses.get(formatIp(parsed.ip))?.gateway === false;
    const candidate = [...this.pools.values()].find(holds);
    if (!candidate) return;
    const poolId = candidate.record.id;
    await this.locks.run(poolKey(poolId), async () => {
      const live = this.pools.get(poolId);
      if (live && holds(live)) await this.release(live, address);
    });
  }

  /** One holder less of `address` in `live`; the last one frees it. Unknown pools and addresses are done already. */
  private async release(live: LivePool | undefined, address: string): Promise<void> {
    const ip = parseIp(address.split('/')[0] ?? '');
    const held = ip && live?.addresses.get(formatIp(ip));
    if (!live || !ip || !held) return;
    const key = addressKey(live.record.id, held.address);
    if (held.holders > 1) {
      const shared = { ...held, holders: held.holders - 1 };
      await this.store.commit([put('addresses', key, shared)]);
      live.addresses.set(held.address, shared);
      return;
    }
    await this.store.commit([del('addresses', key)]);
    live.allocator.release(ip);
    live.addresses.delete(held.address);
  }
}
