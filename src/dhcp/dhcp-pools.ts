import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import { type Cidr, cidrContains, formatCidr, formatIp, parseCidr, parseIp } from '../net/address.js';
import { KeyedMutex } from '../mutex.js';
import { del, put, type Store } from '../store/store.js';
import type { Runner } from '../sys/runner.js';
import { type DhcpWireOf, Leases } from './leases.js';

export const DHCP_POOL_ID_PREFIX = 'tsnet-dhcp/';
export const isDhcpPoolId = (poolId: string) => poolId.startsWith(DHCP_POOL_ID_PREFIX);


const GATEWAY_REQUEST = 'com.docker.network.gateway';

/** A DHCP pool: the LAN's subnet, which tsnet never hands addresses of itself. */
export interface DhcpPoolRecord {
  id: string;
  pool: string;
  refs: number;
}

/** What the pools ask of the networks. */
export interface DhcpNetworks {
  /** The network on the subnet, once `docker network create` made it. */
  wireOf(subnet: string): DhcpWireOf | undefined;
  /** The sandbox (netns path) of the container holding `address`, once it joined. */
  sandboxOf(address: string): string | undefined;
}

/**
 * Pools whose addresses the LAN's DHCP server hands out: tsnet's IPAM face
 * of them. A container's address is leased in RequestAddress, before
 * dockerd makes the endpoint (leases.ts); the endpoint's link then gets the
 * lease's MAC. The network's gateway is --gateway, or a reserved placeholder:
 * containers get the lease's router in Join.
 */
export class DhcpPools {
  private readonly pools = new Map<string, DhcpPoolRecord>();
  private readonly locks = new KeyedMutex();
  readonly leases: Leases;

  constructor(
    private readonly store: Store,
    runner: Runner,
    networks: DhcpNetworks,
    log: Logger,
  ) {
    const wireOfPool = (poolId: string) => {
      const subnet = this.pools.get(poolId)?.pool;
      const wire = subnet === undefined ? undefined : networks.wireOf(subnet);
      return subnet !== undefined && wire ? { subnet, wire } : undefined;
    };
    this.leases = new Leases(store, runner, { wireOfPool, sandboxOf: (address) => networks.sandboxOf(address) }, log);
  }

  /** Reads pools and leases, then keeps the leases alive: a restarted or killed daemon goes on renewing them. */
  async load(): Promise<void> {
    for (const [id, pool] of await this.store.readAll<DhcpPoolRecord>('dhcp-pools')) this.pools.set(id, pool);
    await this.leases.load();
  }

  /** Whether `subnet` is a DHCP pool's. */
  hasPool(subnet: string): boolean {
    return [...this.pools.values()].some((p) => p.pool === subnet);
  }

  requestPool(pool: Cidr): Promise<{ poolId: string; pool: string; data: Record<string, string> }> {
    const id = `${DHCP_POOL_ID_PREFIX}${formatCidr(pool)}`;
    return this.locks.run(id, async () => {
      const existing = this.pools.get(id);
      const record = existing ? { ...existing, refs: existing.refs + 1 } : { id, pool: formatCidr(pool), refs: 1 };
      await this.store.commit([put('dhcp-pools', id, record)]);
      this.pools.set(id, record);
      return { poolId: id, pool: record.pool, data: {} };
    });
  }

  releasePool(poolId: string): Promise<void> {
    return this.locks.run(poolId, async () => {
      const record = this.pools.get(poolId);
      if (!record) return;
      if (record.refs > 1) {
        const fewer = { ...record, refs: record.refs - 1 };
        await this.store.commit([put('dhcp-pools', poolId, fewer)]);
        this.pools.set(poolId, fewer);
        return;
      }
      await this.leases.giveBackPool(poolId);
      await this.store.commit([del('dhcp-pools', poolId)]);
      this.pools.delete(poolId);
    });
  }

  /**
   * The gateway: --gateway, else the subnet's first address, reserved. A
   * container: the lease held for the pool's next attach, or a new one from
   * the server, for `address` (--ip) when given.
   */
  async requestAddress(poolId: string, address: string, options: Record<string, string>): Promise<{ address: string }> {
    const record = this.pools.get(poolId);
    if (!record) throw new RequestError('PoolID', `unknown pool "${poolId}"`);
    const subnet = parseCidr(record.pool)!.cidr;
    if (options.RequestAddressType === GATEWAY_REQUEST) return { address: `${address || formatIp({ family: 4, value: subnet.network + 1n })}/${subnet.prefix}` };
    const refuse = (offered: string) => (cidrContains(subnet, parseIp(offered)!) ? undefined : `outside the network's subnet ${record.pool}`);
    const lease = (await this.leases.takeHeld(poolId, address)) ?? (await this.leases.take(poolId, address, refuse));
    return { address: `${lease.address}/${subnet.prefix}` };
  }

  /** dockerd released a container's address: its lease is held for the pool's next attach, then given back. */
  releaseAddress(poolId: string, address: string): Promise<void> {
    return this.leases.hold(poolId, address.split('/')[0]!);
  }
}
