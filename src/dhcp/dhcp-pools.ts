import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import { type Cidr, cidrContains, formatCidr, formatIp, parseCidr, parseIp } from '../net/address.js';
import { KeyedMutex } from '../mutex.js';
import { del, put, type Store } from '../store/store.js';
import type { Runner } from '../sys/runner.js';
import { acquire, DhcpRefused, DhcpTimeout, extend, type Lease, release } from './client.js';
import { type ClientIdentity, clientIdForMac } from './message.js';
import { namespaceHolding } from './lease-netns.js';
import { deadlines, type LeaseBook, LeaseRenewer } from './renewer.js';
import { RelayWire, withProbeLink } from './wire.js';

/** `--ipam-opt tsnet.dhcp=on`: the pool's addresses come from the DHCP server on its network's wire. */
export const DHCP_OPTION = 'tsnet.dhcp';
export const DHCP_POOL_ID_PREFIX = 'tsnet-dhcp/';
export const isDhcpPoolId = (poolId: string) => poolId.startsWith(DHCP_POOL_ID_PREFIX);

const GATEWAY_REQUEST = 'com.docker.network.gateway';

/** A DHCP pool: the LAN's subnet, which tsnet never hands addresses of itself. */
export interface DhcpPoolRecord {
  id: string;
  pool: string;
  refs: number;
  /** The gateway dockerd was answered at `network create` (--gateway, or the reserved first address). */
  gateway: string;
}

/** A lease tsnet holds for a container, with the MAC and client identifier it was taken as. */
export interface LeaseRecord extends Lease {
  poolId: string;
  mac: string;
  /** Set when it ran out with no server to extend it (cleared when one does). */
  expired?: true;
  /** The hostname (option 12) the server last heard for it. */
  hostname?: string;
  /** Set while no container holds it: dockerd released the address, and tsnet keeps the lease a moment for the next attach (a restart). */
  parkedAt?: number;
}

/** Where a pool's subnet is on the wire: the parent of the macvlan network on it, and how long a server may take. */
export interface DhcpWireOf {
  parent: string;
  timeoutMs: number;
  /** How long a lease whose container went is kept for the pool's next attach before it is released. */
  holdMs: number;
}

/** What the pools ask of the networks. */
export interface DhcpNetworks {
  /** The network on the subnet, once `docker network create` made it. */
  wireOf(subnet: string): DhcpWireOf | undefined;
  /** The sandbox (netns path) of the container holding `address`, once it joined. */
  sandboxOf(address: string): string | undefined;
}

/** A container name as a DHCP hostname (option 12): one DNS label, as servers that register names want it. */
export const hostnameFor = (name: string): string => name.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);

/**
 * Pools whose addresses the LAN's DHCP server hands out. A container's
 * address is leased in RequestAddress, before dockerd makes the endpoint:
 * through a probe link with the MAC tsnet picked for it (docs/dhcp.md),
 * which the endpoint's link then gets. Leases are in the Store.
 */
export class DhcpPools implements LeaseBook<LeaseRecord> {
  private readonly pools = new Map<string, DhcpPoolRecord>();
  private readonly leaseRecords = new Map<string, LeaseRecord>();
  private readonly locks = new KeyedMutex();
  private readonly renewer: LeaseRenewer<LeaseRecord>;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly runner: Runner,
    private readonly networks: DhcpNetworks,
    private readonly log: Logger,
  ) {
    this.renewer = new LeaseRenewer(this, log);
  }

  private wireOf(subnet: string): DhcpWireOf | undefined {
    return this.networks.wireOf(subnet);
  }

  /** Reads pools and leases, then keeps the leases alive: a restarted or killed daemon goes on renewing them. */
  async load(): Promise<void> {
    for (const [id, pool] of await this.store.readAll<DhcpPoolRecord>('dhcp-pools')) this.pools.set(id, pool);
    for (const [address, lease] of await this.store.readAll<LeaseRecord>('dhcp-leases')) this.leaseRecords.set(address, lease);
    this.renewer.reschedule();
    this.scheduleSweep();
  }

  stop(): void {
    this.renewer.stop();
    clearTimeout(this.sweepTimer);
  }

  /** Waits for renewals under way (tests). */
  settle(): Promise<void> {
    return this.renewer.settle();
  }

  leases(): readonly LeaseRecord[] {
    return [...this.leaseRecords.values()];
  }

  /** The containers' names, by address (the Docker event watcher's); absent: none known. */
  private hostnameOf: (address: string) => string | undefined = () => undefined;

  /**
   * Names containers from now on (option 12), and tells the server at once
   * the name of a container it has not heard yet: a server that registers
   * hostnames (dnsmasq, Pi-hole, Kea with DDNS) then resolves it on the LAN.
   */
  useHostnames(hostnameOf: (address: string) => string | undefined): void {
    this.hostnameOf = (address) => {
      const name = hostnameOf(address);
      return name ? hostnameFor(name) || undefined : undefined;
    };
  }

  /** Renews now every lease whose container's name the server has not heard (the names changed). */
  namesChanged(): void {
    for (const lease of this.leaseRecords.values()) if (this.hostnameOf(lease.address) !== lease.hostname) this.renewer.soon(lease.address);
  }

  private identity(lease: Pick<LeaseRecord, 'mac' | 'address'>): ClientIdentity {
    const hostname = this.hostnameOf(lease.address);
    return { mac: lease.mac, clientId: clientIdForMac(lease.mac), ...(hostname ? { hostname } : {}) };
  }

  /**
   * Renews or rebinds from where the address is: the container's network
   * namespace while it runs, else (not started yet, or stopped) a probe
   * link holding the address.
   */
  extend(lease: LeaseRecord, how: 'renew' | 'rebind'): Promise<void> {
    return this.locks.run(leaseKey(lease.address), () => this.extendNow(lease, how));
  }

  private async extendNow(lease: LeaseRecord, how: 'renew' | 'rebind'): Promise<void> {
    const pool = this.pools.get(lease.poolId)?.pool;
    const wire = pool ? this.wireOf(pool) : undefined;
    if (!pool || !wire) throw new Error(`no network is on the DHCP pool of ${lease.address}`);
    const options = { timeoutMs: wire.timeoutMs, dropped: (why: string) => this.log.debug({ why }, 'dropped a DHCP datagram') };
    const netns = namespaceHolding(lease.address, this.networks.sandboxOf(lease.address));
    const identity = this.identity(lease);
    const work = (link: RelayWire) => extend(link, identity, lease, how, options);
    const extended = netns
      ? await RelayWire.open({ path: netns }).then(async (link) => {
          try {
            return await work(link);
          } finally {
            link.close();
          }
        })
      : await withProbeLink(this.runner, { parent: wire.parent, mac: lease.mac, address: `${lease.address}/${pool.split('/')[1]}` }, work);
    const current = this.leaseRecords.get(lease.address);
    if (!current) return; // given back meanwhile
    // New terms; held or not, as it is now (it may have been released or taken meanwhile); no longer expired.
    const { expired: _, ...kept } = current;
    const held: LeaseRecord = { ...kept, ...extended, ...(identity.hostname ? { hostname: identity.hostname } : {}) };
    await this.store.commit([put('dhcp-leases', lease.address, held)]);
    this.leaseRecords.set(lease.address, held);
    this.log.info({ address: lease.address, how, hostname: identity.hostname, server: extended.server, seconds: extended.leaseSeconds }, 'extended a DHCP lease');
  }

  expired(lease: LeaseRecord): void {
    this.log.warn({ address: lease.address, server: lease.server }, 'a DHCP lease ran out with no server to extend it; the container keeps the address, and tsnet keeps asking');
    const marked: LeaseRecord = { ...lease, expired: true };
    this.leaseRecords.set(lease.address, marked);
    this.store.commit([put('dhcp-leases', lease.address, marked)]).catch(() => undefined);
  }

  /** Whether `subnet` is a DHCP pool's. */
  hasPool(subnet: string): boolean {
    return [...this.pools.values()].some((p) => p.pool === subnet);
  }

  /** The lease of a container address (plain IP), if tsnet holds one. */
  lease(address: string): LeaseRecord | undefined {
    return this.leaseRecords.get(address);
  }

  requestPool(pool: Cidr): Promise<{ poolId: string; pool: string; data: Record<string, string> }> {
    const id = `${DHCP_POOL_ID_PREFIX}${formatCidr(pool)}`;
    return this.locks.run(id, async () => {
      const existing = this.pools.get(id);
      const record = existing ? { ...existing, refs: existing.refs + 1 } : { id, pool: formatCidr(pool), refs: 1, gateway: '' };
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
      // The pool's last network goes: the leases held for its next attach go back to the server now.
      for (const lease of [...this.leaseRecords.values()]) if (lease.poolId === poolId) await this.giveBack(lease);
      await this.store.commit([del('dhcp-pools', poolId)]);
      this.pools.delete(poolId);
    });
  }

  /**
   * The gateway: --gateway, else the subnet's first address, reserved as a
   * placeholder (containers get the lease's router in Join). A container:
   * a lease from the server, for `address` (--ip) when given.
   */
  async requestAddress(poolId: string, address: string, options: Record<string, string>): Promise<{ address: string }> {
    const record = this.pools.get(poolId);
    if (!record) throw new RequestError('PoolID', `unknown pool "${poolId}"`);
    const subnet = parseCidr(record.pool)!.cidr;
    const prefix = subnet.prefix;
    if (options.RequestAddressType === GATEWAY_REQUEST) {
      const gateway = address || formatIp({ family: 4, value: subnet.network + 1n });
      await this.locks.run(poolId, () => this.store.commit([put('dhcp-pools', poolId, { ...record, gateway })]));
      this.pools.set(poolId, { ...record, gateway });
      return { address: `${gateway}/${prefix}` };
    }
    const wire = this.wireOf(record.pool);
    if (!wire) throw new RequestError('PoolID', `no macvlan network is on the DHCP pool ${record.pool} yet: create it with -o parent=<the LAN's interface>`);
    const parked = await this.unpark(poolId, address);
    if (parked) return { address: `${parked.address}/${prefix}` };
    const mac = localMac();
    const refuse = (offered: string) => (cidrContains(subnet, parseIp(offered)!) ? undefined : `outside the network's subnet ${record.pool}`);
    let lease: Lease;
    try {
      lease = await withProbeLink(this.runner, { parent: wire.parent, mac }, (link) =>
        acquire(link, { mac, clientId: clientIdForMac(mac) }, { timeoutMs: wire.timeoutMs, refuse, ...(address ? { requested: address } : {}), dropped: (why) => this.log.debug({ why }, 'dropped a DHCP datagram') }),
      );
    } catch (error) {
      if (error instanceof DhcpTimeout || error instanceof DhcpRefused) throw new RequestError('Address', `DHCP on ${wire.parent}: ${error.message}`);
      throw error;
    }
    const held: LeaseRecord = { ...lease, poolId, mac };
    await this.store.commit([put('dhcp-leases', lease.address, held)]);
    this.leaseRecords.set(lease.address, held);
    this.renewer.reschedule();
    this.log.info({ address: lease.address, mac, server: lease.server, seconds: lease.leaseSeconds, t1: lease.renewalSeconds, t2: lease.rebindingSeconds }, 'leased an address from the DHCP server');
    return { address: `${lease.address}/${prefix}` };
  }

  /**
   * The lease a container gave up a moment ago, for the next attach on the
   * pool (the one asking for its address, with --ip): a `docker restart`, or
   * a re-created container, keeps its address, as Docker's own IPAM hands a
   * freed address out again at once. Its MAC and client identifier come
   * along, so the server sees the same client.
   */
  private async unpark(poolId: string, address: string): Promise<LeaseRecord | undefined> {
    const now = Date.now();
    const candidates = [...this.leaseRecords.values()]
      .filter((l) => l.poolId === poolId && l.parkedAt !== undefined && (address === '' || l.address === address) && deadlines(l).expire > now)
      .sort((a, b) => b.parkedAt! - a.parkedAt!);
    for (const candidate of candidates) {
      // Under the lease's lock: a release of it may be under way, or another attach may take it first.
      const taken = await this.locks.run(leaseKey(candidate.address), async () => {
        const current = this.leaseRecords.get(candidate.address);
        if (current?.parkedAt === undefined) return undefined;
        const { parkedAt: _, ...held } = current;
        await this.store.commit([put('dhcp-leases', held.address, held)]);
        this.leaseRecords.set(held.address, held);
        return held;
      });
      if (!taken) continue;
      this.log.info({ address: taken.address, mac: taken.mac }, 'gave a held DHCP lease to the next container');
      return taken;
    }
    return undefined;
  }

  /**
   * `--mac-address M`: dockerd tells it only now, after the lease was taken
   * under tsnet's MAC. The lease is given back and the same address asked
   * for as M (option 50), so the server's lease is the container's own; a
   * server that will not give it fails the attach, naming what it did.
   */
  async rekey(address: string, mac: string): Promise<void> {
    const lease = this.leaseRecords.get(address);
    if (!lease || lease.mac === mac) return;
    const pool = this.pools.get(lease.poolId)!;
    const wire = this.wireOf(pool.pool);
    if (!wire) throw new RequestError('PoolID', `no macvlan network is on the DHCP pool ${pool.pool}`);
    await this.giveBack(lease);
    let granted: Lease;
    try {
      granted = await withProbeLink(this.runner, { parent: wire.parent, mac }, (link) =>
        acquire(link, { mac, clientId: clientIdForMac(mac) }, { timeoutMs: wire.timeoutMs, requested: address, dropped: (why) => this.log.debug({ why }, 'dropped a DHCP datagram') }),
      );
    } catch (error) {
      if (error instanceof DhcpTimeout || error instanceof DhcpRefused) throw new RequestError('Interface.MacAddress', `DHCP on ${wire.parent} as ${mac}: ${error.message}`);
      throw error;
    }
    const held: LeaseRecord = { ...granted, poolId: lease.poolId, mac };
    await this.store.commit([put('dhcp-leases', address, held)]);
    this.leaseRecords.set(address, held);
    this.renewer.reschedule();
    this.log.info({ address, mac }, 'took the lease again as the container\'s own MAC');
  }

  /** dockerd released a container's address: its lease is held for the pool's next attach, then given back (sweep). */
  async releaseAddress(poolId: string, address: string): Promise<void> {
    const plain = address.split('/')[0]!;
    await this.locks.run(leaseKey(plain), async () => {
      const lease = this.leaseRecords.get(plain);
      if (!lease || lease.poolId !== poolId || lease.parkedAt !== undefined) return;
      const parked: LeaseRecord = { ...lease, parkedAt: Date.now() };
      await this.store.commit([put('dhcp-leases', plain, parked)]);
      this.leaseRecords.set(plain, parked);
    });
    this.scheduleSweep();
  }

  /** One timer for the earliest held lease whose time is up. */
  private scheduleSweep(): void {
    clearTimeout(this.sweepTimer);
    const due = [...this.leaseRecords.values()].flatMap((l) => (l.parkedAt === undefined ? [] : [l.parkedAt + this.holdMs(l)]));
    if (due.length === 0) return;
    this.sweepTimer = setTimeout(() => void this.sweep(), Math.max(0, Math.min(...due) - Date.now()));
    this.sweepTimer.unref();
  }

  private holdMs(lease: LeaseRecord): number {
    return this.wireOf(this.pools.get(lease.poolId)?.pool ?? '')?.holdMs ?? 0;
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const lease of [...this.leaseRecords.values()]) {
      const due = (l: LeaseRecord) => l.parkedAt !== undefined && l.parkedAt + this.holdMs(l) <= now;
      if (due(lease)) await this.giveBack(lease, due).catch(() => undefined);
    }
    this.scheduleSweep();
  }

  /**
   * Gives a lease back to its server (best effort: a server that is away
   * lets it expire) and forgets it. After any extension of it under way:
   * both may need a probe link with its MAC, and a parent takes one at a time.
   */
  private giveBack(stale: LeaseRecord, stillDue: (current: LeaseRecord) => boolean = () => true): Promise<void> {
    return this.locks.run(leaseKey(stale.address), async () => {
      const lease = this.leaseRecords.get(stale.address);
      // Gone already, taken again as another MAC, or given to a container meanwhile: nothing to give back.
      if (lease && lease.mac === stale.mac && stillDue(lease)) await this.giveBackNow(lease);
    });
  }

  private async giveBackNow(lease: LeaseRecord): Promise<void> {
    const plain = lease.address;
    const poolId = lease.poolId;
    const pool = this.pools.get(poolId)?.pool ?? '';
    const wire = this.wireOf(pool);
    if (wire) {
      // From the leased address, as a client releases: the container's link, which had it, is gone by now.
      const address = `${plain}/${pool.split('/')[1]}`;
      await withProbeLink(this.runner, { parent: wire.parent, mac: lease.mac, address }, (link) => release(link, { mac: lease.mac, clientId: clientIdForMac(lease.mac) }, lease)).catch((error: unknown) =>
        this.log.warn({ address: plain, err: error instanceof Error ? error.message : String(error) }, 'could not release a DHCP lease; the server lets it expire'),
      );
    }
    await this.store.commit([del('dhcp-leases', plain)]);
    this.leaseRecords.delete(plain);
    this.renewer.forget(plain);
  }
}

/** The lock of one lease's probe links and records (pool locks are keyed by pool ID). */
const leaseKey = (address: string) => `lease ${address}`;

/** A locally administered unicast MAC, as containers' are: 02:xx…, random. */
function localMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
