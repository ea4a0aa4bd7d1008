import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import { KeyedMutex } from '../mutex.js';
import { del, put, type Store } from '../store/store.js';
import type { Runner } from '../sys/runner.js';
import { acquire, DhcpRefused, DhcpTimeout, extend, type Lease, release } from './client.js';
import { namespaceHolding } from './lease-netns.js';
import { type ClientIdentity, clientIdForMac } from './message.js';
import { deadlines, type LeaseBook, LeaseRenewer } from './renewer.js';
import type { UdpRelay } from '../sys/index.js';
import { openDhcpWire, withProbeLink } from './wire.js';

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

/** A pool's subnet and the wire its server is heard on (its network's). */
export interface PoolWire {
  subnet: string;
  wire: DhcpWireOf;
}

/** What the leases ask of the pools and the networks. */
export interface LeaseSurroundings {
  /** The subnet and wire of a pool, while a network is on it. */
  wireOfPool(poolId: string): PoolWire | undefined;
  /** The sandbox (netns path) of the container holding `address`, once it joined. */
  sandboxOf(address: string): string | undefined;
}

/** A container name as a DHCP hostname (option 12): one DNS label, as servers that register names want it. */
export const hostnameFor = (name: string): string => name.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);

/**
 * The DHCP leases tsnet holds for containers, in the Store: taken through a
 * probe link with the MAC tsnet picked (docs/dhcp.md), renewed by one timer,
 * held a moment for the next attach after their container goes, given back.
 * Everything that touches one lease runs under that lease's lock: a probe
 * link with its MAC can exist once per parent, and a hand-over must not
 * meet a release.
 */
export class Leases implements LeaseBook<LeaseRecord> {
  private readonly records = new Map<string, LeaseRecord>();
  private readonly locks = new KeyedMutex();
  private readonly renewer: LeaseRenewer<LeaseRecord>;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** The containers' names, by address (the Docker event watcher's); absent: none known. */
  private hostnameOf: (address: string) => string | undefined = () => undefined;

  constructor(
    private readonly store: Store,
    private readonly runner: Runner,
    private readonly surroundings: LeaseSurroundings,
    private readonly log: Logger,
  ) {
    this.renewer = new LeaseRenewer(this, log);
  }

  /** Reads the leases, then keeps them alive: a restarted or killed daemon goes on renewing them. */
  async load(): Promise<void> {
    for (const [address, lease] of await this.store.readAll<LeaseRecord>('dhcp-leases')) this.records.set(address, lease);
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
    return [...this.records.values()];
  }

  /** The lease of a container address (plain IP), if tsnet holds one. */
  get(address: string): LeaseRecord | undefined {
    return this.records.get(address);
  }

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
    for (const lease of this.records.values()) if (this.hostnameOf(lease.address) !== lease.hostname) this.renewer.soon(lease.address);
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
    const found = this.surroundings.wireOfPool(lease.poolId);
    if (!found) throw new Error(`no network is on the DHCP pool of ${lease.address}`);
    const { subnet, wire } = found;
    const options = { timeoutMs: wire.timeoutMs, dropped: (why: string) => this.log.debug({ why }, 'dropped a DHCP datagram') };
    const netns = namespaceHolding(lease.address, this.surroundings.sandboxOf(lease.address));
    const identity = this.identity(lease);
    const work = (link: UdpRelay) => extend(link, identity, lease, how, options);
    const extended = netns
      ? await openDhcpWire({ path: netns }).then(async (link) => {
          try {
            return await work(link);
          } finally {
            link.close();
          }
        })
      : await withProbeLink(this.runner, { parent: wire.parent, mac: lease.mac, address: `${lease.address}/${subnet.split('/')[1]}` }, work);
    const current = this.records.get(lease.address);
    if (!current) return; // given back meanwhile
    // New terms; held or not, as it is now (it may have been released or taken meanwhile); no longer expired.
    const { expired: _, ...kept } = current;
    const held: LeaseRecord = { ...kept, ...extended, ...(identity.hostname ? { hostname: identity.hostname } : {}) };
    await this.store.commit([put('dhcp-leases', lease.address, held)]);
    this.records.set(lease.address, held);
    this.log.info({ address: lease.address, how, hostname: identity.hostname, server: extended.server, seconds: extended.leaseSeconds }, 'extended a DHCP lease');
  }

  expired(lease: LeaseRecord): void {
    this.log.warn({ address: lease.address, server: lease.server }, 'a DHCP lease ran out with no server to extend it; the container keeps the address, and tsnet keeps asking');
    const marked: LeaseRecord = { ...lease, expired: true };
    this.records.set(lease.address, marked);
    this.store.commit([put('dhcp-leases', lease.address, marked)]).catch(() => undefined);
  }

  /** A new lease for the pool's next container: for `requested` (--ip) when given; its MAC is tsnet's pick. */
  async take(poolId: string, requested: string, refuse: (offered: string) => string | undefined): Promise<LeaseRecord> {
    const { wire } = this.wireOf(poolId);
    const mac = localMac();
    const lease = await this.acquireAs(wire, mac, 'Address', { refuse, ...(requested ? { requested } : {}) });
    const held: LeaseRecord = { ...lease, poolId, mac };
    await this.store.commit([put('dhcp-leases', lease.address, held)]);
    this.records.set(lease.address, held);
    this.renewer.reschedule();
    this.log.info({ address: lease.address, mac, server: lease.server, seconds: lease.leaseSeconds, t1: lease.renewalSeconds, t2: lease.rebindingSeconds }, 'leased an address from the DHCP server');
    return held;
  }

  private wireOf(poolId: string): PoolWire {
    const found = this.surroundings.wireOfPool(poolId);
    if (!found) throw new RequestError('PoolID', `no macvlan network is on the DHCP pool ${poolId} yet: create it with -o parent=<the LAN's interface>`);
    return found;
  }

  /** DISCOVER … ACK through a probe link with `mac`; a refusal or silence becomes the attach's error, blaming `field`. */
  private async acquireAs(wire: DhcpWireOf, mac: string, field: string, wishes: { refuse?: (offered: string) => string | undefined; requested?: string }): Promise<Lease> {
    try {
      return await withProbeLink(this.runner, { parent: wire.parent, mac }, (link) =>
        acquire(link, { mac, clientId: clientIdForMac(mac) }, { timeoutMs: wire.timeoutMs, ...wishes, dropped: (why) => this.log.debug({ why }, 'dropped a DHCP datagram') }),
      );
    } catch (error) {
      if (error instanceof DhcpTimeout || error instanceof DhcpRefused) throw new RequestError(field, `DHCP on ${wire.parent}${field === 'Address' ? '' : ` as ${mac}`}: ${error.message}`);
      throw error;
    }
  }

  /**
   * The lease a container gave up a moment ago, for the next attach on the
   * pool (the one asking for its address, with --ip): a `docker restart`, or
   * a re-created container, keeps its address, as Docker's own IPAM hands a
   * freed address out again at once. Its MAC and client identifier come
   * along, so the server sees the same client.
   */
  async takeHeld(poolId: string, address: string): Promise<LeaseRecord | undefined> {
    const now = Date.now();
    const candidates = [...this.records.values()]
      .filter((l) => l.poolId === poolId && l.parkedAt !== undefined && (address === '' || l.address === address) && deadlines(l).expire > now)
      .sort((a, b) => b.parkedAt! - a.parkedAt!);
    for (const candidate of candidates) {
      // Under the lease's lock: a release of it may be under way, or another attach may take it first.
      const taken = await this.locks.run(leaseKey(candidate.address), async () => {
        const current = this.records.get(candidate.address);
        if (current?.parkedAt === undefined) return undefined;
        const { parkedAt: _, ...held } = current;
        await this.store.commit([put('dhcp-leases', held.address, held)]);
        this.records.set(held.address, held);
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
    const lease = this.records.get(address);
    if (!lease || lease.mac === mac) return;
    const { wire } = this.wireOf(lease.poolId);
    await this.giveBack(lease);
    const granted = await this.acquireAs(wire, mac, 'Interface.MacAddress', { requested: address });
    const held: LeaseRecord = { ...granted, poolId: lease.poolId, mac };
    await this.store.commit([put('dhcp-leases', address, held)]);
    this.records.set(address, held);
    this.renewer.reschedule();
    this.log.info({ address, mac }, 'took the lease again as the container\'s own MAC');
  }

  /** dockerd released a container's address: its lease is held for the pool's next attach, then given back (sweep). */
  async hold(poolId: string, address: string): Promise<void> {
    const plain = address.split('/')[0]!;
    await this.locks.run(leaseKey(plain), async () => {
      const lease = this.records.get(plain);
      if (!lease || lease.poolId !== poolId || lease.parkedAt !== undefined) return;
      const parked: LeaseRecord = { ...lease, parkedAt: Date.now() };
      await this.store.commit([put('dhcp-leases', plain, parked)]);
      this.records.set(plain, parked);
    });
    this.scheduleSweep();
  }

  /** The pool's last network goes: its leases (held ones, by then) go back to the server now. */
  async giveBackPool(poolId: string): Promise<void> {
    for (const lease of [...this.records.values()]) if (lease.poolId === poolId) await this.giveBack(lease);
  }

  /** One timer for the earliest held lease whose time is up. */
  private scheduleSweep(): void {
    clearTimeout(this.sweepTimer);
    const due = [...this.records.values()].flatMap((l) => (l.parkedAt === undefined ? [] : [l.parkedAt + this.holdMs(l)]));
    if (due.length === 0) return;
    this.sweepTimer = setTimeout(() => void this.sweep(), Math.max(0, Math.min(...due) - Date.now()));
    this.sweepTimer.unref();
  }

  private holdMs(lease: LeaseRecord): number {
    return this.surroundings.wireOfPool(lease.poolId)?.wire.holdMs ?? 0;
  }

  private async sweep(): Promise<void> {
    const now = Date.now();
    for (const lease of [...this.records.values()]) {
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
      const lease = this.records.get(stale.address);
      // Gone already, taken again as another MAC, or given to a container meanwhile: nothing to give back.
      if (lease && lease.mac === stale.mac && stillDue(lease)) await this.giveBackNow(lease);
    });
  }

  private async giveBackNow(lease: LeaseRecord): Promise<void> {
    const plain = lease.address;
    const found = this.surroundings.wireOfPool(lease.poolId);
    if (found) {
      // From the leased address, as a client releases: the container's link, which had it, is gone by now.
      const address = `${plain}/${found.subnet.split('/')[1]}`;
      await withProbeLink(this.runner, { parent: found.wire.parent, mac: lease.mac, address }, (link) => release(link, { mac: lease.mac, clientId: clientIdForMac(lease.mac) }, lease)).catch((error: unknown) =>
        this.log.warn({ address: plain, err: error instanceof Error ? error.message : String(error) }, 'could not release a DHCP lease; the server lets it expire'),
      );
    }
    await this.store.commit([del('dhcp-leases', plain)]);
    this.records.delete(plain);
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
