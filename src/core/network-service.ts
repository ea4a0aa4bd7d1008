import type { Logger } from 'pino';
import type { Driver, DriftView } from '../../drivers/driver.js';
import type { GoneEndpoints } from '../../drivers/sandbox.js';
import type { DriverKind, EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, PortBinding, PublishedPort } from '../../drivers/model.js';
import { RequestError } from '../errors.js';
import { KeyedMutex } from '../mutex.js';
import { canonicalCidr, formatCidr, formatIp, parseCidrWithIp } from '../net/address.js';
import { MAC_ADDRESS, macFor } from '../net/mac.js';
import { DHCP_NETWORK_OPTIONS, DHCP_OPTION } from '../dhcp/options.js';
import { POOL_OPTION } from '../ipam/shared-pools.js';
import { type Store, type Write, del, put } from '../store/store.js';
import type { Drift } from '../sys/index.js';
import { portBindings } from './endpoint-options.js';
import { COMMON_OPTIONS, type CreateNetworkInput, networkSpec } from './network-options.js';

export interface CreateEndpointInput {
  networkId: string;
  endpointId: string;
  address: string;
  addressIPv6: string;
  macAddress: string;
  options: Record<string, unknown>;
}

/** Join's answer: the driver's JoinInfo plus the interface prefix of the network. */
export interface JoinResult extends JoinInfo {
  dstPrefix: string;
}

/** tsnet's IPAM as core sees it (addresses of Docker's own IPAM are found in neither). */
export interface TsnetAddresses {
  /** Where a dropped endpoint's addresses go back. */
  releaseStale(address: string): Promise<void>;
  /** Whether the user chose `gateway` (a plain IP) of `subnet` with --gateway; absent: never known. */
  gatewayChosen?(subnet: string, gateway: string): boolean;
  /** Whether `subnet` is a pool of the LAN's DHCP server (`--ipam-opt tsnet.dhcp=on`). */
  isDhcpSubnet?(subnet: string): boolean;
  /** The DHCP lease of a container address (plain IP): the endpoint takes its MAC, and its router as gateway. */
  lease?(address: string): { mac: string; routers: readonly string[] } | undefined;
  /** Takes the lease of `address` again as `mac` (the container's --mac-address); throws when the server will not. */
  rekeyLease?(address: string, mac: string): Promise<void>;
}

/**
 * A network or endpoint that came or went, told after the state changed.
 * Rooms that follow the topology (DNS) subscribe instead of polling.
 */
export type TopologyChange =
  | { kind: 'network'; action: 'created' | 'deleted'; networkId: string }
  | { kind: 'endpoint'; action: 'created' | 'deleted'; networkId: string; endpointId: string };

export type TopologyListener = (change: TopologyChange) => void;

/** tsnet's IPAM options (--ipam-opt), which dockerd never shows a network driver: one given as -o is a user's slip. */
const IPAM_OPTIONS: readonly string[] = [POOL_OPTION, DHCP_OPTION];

/**
 * The short cross-network section: a new network is checked against all the
 * others (subnets, bridge names, parents) and claims its own under it. No
 * kernel work of another network ever runs under it.
 */
const TOPOLOGY = 'topology';
/** Everything done to one network and its endpoints runs under the network's key, one at a time. */
const networkKey = (networkId: string) => `network ${networkId}`;

/**
 * Networks and endpoints: their lifecycle, persisted in the Store, with the
 * kernel work delegated to the driver of each network's kind. Requests for
 * different networks run concurrently.
 */
export class NetworkService {
  private readonly networks = new Map<string, NetworkRecord>();
  /** Networks being created: claimed, not yet committed. Others are checked against them as against stored ones. */
  private readonly creating = new Map<string, NetworkRecord>();
  private readonly endpoints = new Map<string, EndpointRecord>();
  /** The same endpoints per network, so a network's requests never scan the others'. */
  private readonly endpointsByNetwork = new Map<string, Map<string, EndpointRecord>>();
  private readonly locks = new KeyedMutex();
  /** Per network, how many locked operations have ended: a view read after no new one is still right for it (repair). */
  private readonly generations = new Map<string, number>();
  private readonly listeners = new Set<TopologyListener>();

  /** The second look at endpoints that seemed gone at start-up. */
  private recheck: NodeJS.Timeout | undefined;
  /** Endpoints that looked gone at start-up but could be starting containers (see lostSandbox), until the second look. */
  private readonly suspects = new Set<string>();
  /** The second look under way, which a request refused meanwhile waits for. */
  private looking: Promise<boolean> | undefined;

  constructor(
    private readonly store: Store,
    private readonly drivers: ReadonlyMap<DriverKind, Driver>,
    private readonly log: Logger,
    private readonly addresses: TsnetAddresses,
    /**
     * How long an endpoint that looks gone at start-up is kept before it is
     * dropped. dockerd joins a starting container's endpoint before it makes
     * the container's netns: a container that was starting when tsnet went
     * down looks gone for a moment (no sandbox file, its interface still in
     * the host netns), exactly like one removed meanwhile.
     */
    private readonly staleGraceMs = 10_000,
    /**
     * Until the links of deleted networks that the kernel still has are gone
     * (see LinkReaper): a new network must not meet an old one's subnet,
     * address or route on the host.
     */
    private readonly deletedLinksGone: () => Promise<void> = async () => undefined,
  ) {}

  /** Runs `work` under the network's lock; its generation moves on when it ends, whatever it did. */
  private exclusive<T>(networkId: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(networkKey(networkId), async () => {
      try {
        return await work();
      } finally {
        if (this.networks.has(networkId)) this.generations.set(networkId, (this.generations.get(networkId) ?? 0) + 1);
        else this.generations.delete(networkId);
      }
    });
  }

  /** Every network's generation now: taken before a view is read, so repair knows whether the view may be stale. */
  generationsNow(): ReadonlyMap<string, number> {
    return new Map(this.generations);
  }

  /** How the kernel in `view` differs from every network's record (tsnet doctor, the drift watcher's look). */
  drift(view: DriftView): Drift[] {
    return this.listNetworks().flatMap((network) => this.driverOf(network).drift(network, this.endpointsOf(network.id), view));
  }

  /**
   * Repairs one network under its lock: if the network changed since `view`
   * was read (`generations`), the kernel is read again; if it still differs
   * from the record, the driver restores the network. Returns what differed.
   */
  repair(networkId: string, view: DriftView, generations: ReadonlyMap<string, number>, read: () => Promise<DriftView>): Promise<Drift[]> {
    return this.exclusive(networkId, async () => {
      const network = this.networks.get(networkId);
      if (!network) return [];
      const driver = this.driverOf(network);
      const current = this.generations.get(networkId) === generations.get(networkId) ? view : await read();
      const found = driver.drift(network, this.endpointsOf(networkId), current);
      if (found.length > 0) await driver.restore(network, this.endpointsOf(networkId), found);
      return found;
    });
  }

  /** Start-up, after restore: what a crash left of networks without a record, per kind (rules, set elements). */
  async removeLeftovers(): Promise<string[]> {
    const removed: string[] = [];
    for (const [kind, driver] of this.drivers) {
      try {
        removed.push(...(await driver.removeLeftovers(this.listNetworks().filter((n) => n.kind === kind))));
      } catch (error) {
        this.log.error({ err: error, kind }, 'could not remove what networks without a record left');
      }
    }
    for (const what of removed) this.log.warn({ what }, 'removed what no stored network owns (left by a crash)');
    return removed;
  }

  /** Stops the pending second look (daemon shutdown). */
  stop(): void {
    clearTimeout(this.recheck);
  }

  /**
   * Calls `listener` after every network or endpoint creation and deletion;
   * returns the unsubscribe. Listeners run inside the request: they must only
   * take note and do their work later, and what they throw is logged, never
   * the request's failure.
   */
  onChange(listener: TopologyListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(change: TopologyChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.log.error({ err: error, change }, 'a topology listener failed');
      }
    }
  }

  async load(): Promise<void> {
    // Records written before tsnet.dns existed have no dns field: the default, on.
    for (const network of (await this.store.readAll<NetworkRecord>('networks')).values()) this.networks.set(network.id, { ...network, dns: network.dns ?? true });
    for (const endpoint of (await this.store.readAll<EndpointRecord>('endpoints')).values()) this.remember(endpoint);
  }

  private remember(endpoint: EndpointRecord): void {
    this.endpoints.set(endpoint.id, endpoint);
    let mine = this.endpointsByNetwork.get(endpoint.networkId);
    if (!mine) this.endpointsByNetwork.set(endpoint.networkId, (mine = new Map()));
    mine.set(endpoint.id, endpoint);
  }

  private forget(endpoint: EndpointRecord): void {
    this.endpoints.delete(endpoint.id);
    const mine = this.endpointsByNetwork.get(endpoint.networkId);
    mine?.delete(endpoint.id);
    if (mine?.size === 0) this.endpointsByNetwork.delete(endpoint.networkId);
  }

  /**
   * Makes the kernel match the stored networks again. Endpoints whose
   * container went away while tsnet was down are dropped first, so none of
   * their ports or rules comes back. A failing network is logged, not fatal.
   */
  async restore(): Promise<void> {
    const gone = await this.goneAtStart();
    // What is gone for certain goes before anything is restored: none of its ports or rules comes back.
    await this.dropEach(new Set(gone.certain), 'could not drop the endpoints whose container is gone');
    for (const network of this.networks.values()) {
      try {
        await this.driverOf(network).restore(network, this.endpointsOf(network.id));
      } catch (error) {
        this.log.error({ err: error, network: network.id }, 'could not restore network');
      }
    }
    if (gone.unsure.length === 0) return;
    gone.unsure.forEach((id) => this.suspects.add(id));
    this.log.info({ endpoints: gone.unsure.length, inMs: this.staleGraceMs }, 'endpoints whose container looks gone: dropping those that still look so in a moment');
    this.recheck = setTimeout(() => void this.lookAgainAtSuspects(), this.staleGraceMs);
    this.recheck.unref();
  }

  /**
   * The start-up suspects that still look gone now are dropped; returns
   * whether any was. At the end of the grace, or at once when a request
   * collides with what one holds (a host port): the request must not be
   * refused for a container that is no more.
   */
  private lookAgainAtSuspects(): Promise<boolean> {
    this.looking ??= (async () => {
      const suspects = new Set(this.suspects);
      this.suspects.clear();
      const before = this.endpoints.size;
      await this.dropEach(suspects, 'could not drop the endpoints whose container is gone');
      return this.endpoints.size < before;
    })().finally(() => (this.looking = undefined));
    return this.looking;
  }

  /** Drops those of `ids` that still look gone, each network under its lock. */
  private async dropEach(ids: ReadonlySet<string>, failure: string): Promise<void> {
    if (ids.size === 0) return;
    for (const network of this.networks.values()) {
      const mine = () => this.endpointsOf(network.id).filter((e) => ids.has(e.id));
      if (mine().length === 0) continue;
      await this.exclusive(network.id, () => this.dropGone(network, mine())).catch((error: unknown) => {
        this.log.error({ err: error, network: network.id }, failure);
      });
    }
  }

  /**
   * Runs a request; when a host port it wants is refused while start-up
   * suspects are still waiting for their second look (one may hold it),
   * looks at them now and, if any was dropped, runs it once more.
   */
  private async retryPastSuspects<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      const portRefused = error instanceof RequestError && error.field.endsWith('HostPort');
      if (!portRefused || (this.suspects.size === 0 && !this.looking) || !(await this.lookAgainAtSuspects())) throw error;
      return request();
    }
  }

  /** The IDs of the stored endpoints whose container is gone: one question per driver, not per network. */
  private async goneAtStart(): Promise<GoneEndpoints<string>> {
    const gone: GoneEndpoints<string> = { certain: [], unsure: [] };
    for (const [kind, driver] of this.drivers) {
      const candidates = [...this.endpoints.values()].filter((e) => this.networks.get(e.networkId)?.kind === kind);
      if (candidates.length === 0) continue;
      try {
        const found = await driver.goneEndpoints(candidates);
        gone.certain.push(...found.certain.map((e) => e.id));
        gone.unsure.push(...found.unsure.map((e) => e.id));
      } catch (error) {
        this.log.error({ err: error, kind }, 'could not tell which endpoints are gone; keeping them all');
      }
    }
    return gone;
  }

  /**
   * Forgets the candidates whose container is gone (dockerd's DeleteEndpoint
   * and ReleaseAddress never reached tsnet; dockerd gave up and forgot them),
   * undoing what is left of them in the kernel and giving their addresses
   * back, and returns the live ones.
   */
  private async dropGone(network: NetworkRecord, candidates: readonly EndpointRecord[]): Promise<EndpointRecord[]> {
    const found = await this.driverOf(network).goneEndpoints(candidates);
    const gone = [...found.certain, ...found.unsure];
    await this.forgetGone(network, gone);
    return candidates.filter((e) => !gone.includes(e));
  }

  private async forgetGone(network: NetworkRecord, gone: readonly EndpointRecord[]): Promise<void> {
    const driver = this.driverOf(network);
    for (const endpoint of gone) {
      await driver.deleteEndpoint(network, endpoint);
      await this.store.commit([del('endpoints', endpoint.id)]);
      this.forget(endpoint);
      for (const address of [endpoint.address, endpoint.addressIPv6]) if (address) await this.addresses.releaseStale(address);
      this.emit({ kind: 'endpoint', action: 'deleted', networkId: network.id, endpointId: endpoint.id });
      this.log.warn({ network: network.id, endpoint: endpoint.id, address: endpoint.address }, 'dropped an endpoint whose container went away while tsnet was down');
    }
  }

  /** The links the stored networks and endpoints own (with generated names), whatever their kind. */
  ownedLinks(): Set<string> {
    return new Set([...this.networks.values()].flatMap((n) => this.driverOf(n).ownedLinks(n, this.endpointsOf(n.id))));
  }

  listNetworks(): NetworkRecord[] {
    return [...this.networks.values()];
  }

  /** Whether a network on this subnet (canonical CIDR) exists on this host. */
  hasNetworkOn(subnet: string): boolean {
    return this.networkOn(subnet) !== undefined;
  }

  /** The network with this subnet (canonical CIDR) among its subnets, of either family. */
  private networkOn(subnet: string): NetworkRecord | undefined {
    return this.listNetworks().find((n) => [...n.ipv4, ...n.ipv6Subnets].some((s) => canonicalCidr(s.pool) === subnet));
  }

  /**
   * Whether a device outside tsnet answers for `address` (`a.b.c.d/len`) on
   * the wire of the network on its subnet (a macvlan network with
   * tsnet.arp_probe=on); false when no network of this host looks.
   */
  async addressInUse(address: string): Promise<boolean> {
    const parsed = parseCidrWithIp(address);
    if (!parsed) return false;
    const network = this.networkOn(formatCidr(parsed.cidr));
    if (!network || !(await this.driverOf(network).addressInUse?.(network, formatIp(parsed.ip)))) return false;
    this.log.warn({ network: network.id, address }, 'a device outside tsnet answers ARP for the address: it stays reserved, never handed out');
    return true;
  }

  /** Whether `address` (`ip/len`) is the host's own on a network of that subnet (see Driver.hostAddresses). */
  hostHolds(address: string): boolean {
    const parsed = parseCidrWithIp(address);
    const network = parsed && this.networkOn(formatCidr(parsed.cidr));
    return network !== undefined && this.driverOf(network).hostAddresses(network).includes(formatIp(parsed!.ip));
  }

  listEndpoints(): EndpointRecord[] {
    return [...this.endpoints.values()];
  }

  /** Where the DHCP server of the network on `subnet` is heard (its driver's dhcpWire); undefined: no such network. */
  dhcpWireOf(subnet: string): { parent: string; timeoutMs: number; holdMs: number } | undefined {
    const network = this.listNetworks().find((n) => n.ipv4.some((s) => s.pool === subnet) && this.driverOf(n).dhcpWire);
    return network && this.driverOf(network).dhcpWire!(network);
  }

  /** The endpoint holding the IPv4 `address` (a plain IP). */
  endpointWithAddress(address: string): EndpointRecord | undefined {
    return this.listEndpoints().find((e) => e.address?.split('/')[0] === address);
  }

  /** The host's links tsnet's networks depend on without having named them (see Driver.borrowedLinks). */
  borrowedLinks(): Set<string> {
    return new Set(this.listNetworks().flatMap((network) => this.driverOf(network).borrowedLinks?.(network) ?? []));
  }

  /** The host's own addresses on the network (see Driver.hostAddresses); none for an unknown network. */
  hostAddresses(networkId: string): string[] {
    const network = this.networks.get(networkId);
    return network ? this.driverOf(network).hostAddresses(network) : [];
  }

  private driverOf(network: { kind: DriverKind }): Driver {
    const driver = this.drivers.get(network.kind);
    if (!driver) throw new RequestError('tsnet.mode', `${network.kind} networks are not supported by this daemon`);
    return driver;
  }

  private endpointsOf(networkId: string): EndpointRecord[] {
    return [...(this.endpointsByNetwork.get(networkId)?.values() ?? [])];
  }

  /** Every network but this one, stored or being created: what a network must not clash with. */
  private othersThan(networkId: string): NetworkRecord[] {
    return [...this.networks.values(), ...this.creating.values()].filter((n) => n.id !== networkId);
  }

  private network(networkId: string): NetworkRecord {
    const network = this.networks.get(networkId);
    if (!network) throw new RequestError('NetworkID', `no such network ${networkId} (tsnet has no record of it)`);
    return network;
  }

  private endpoint(networkId: string, endpointId: string): EndpointRecord {
    const endpoint = this.endpoints.get(endpointId);
    if (!endpoint || endpoint.networkId !== networkId) throw new RequestError('EndpointID', `no such endpoint ${endpointId} in network ${networkId}`);
    return endpoint;
  }

  /** Refuses misspelt tsnet.* options; other unknown keys are logged, as Docker's drivers ignore them. */
  private checkOptionKeys(options: Record<string, string>, driver: Driver): void {
    const known = new Set<string>([...Object.values(COMMON_OPTIONS), ...driver.optionKeys]);
    for (const key of Object.keys(options)) {
      if (known.has(key)) continue;
      if (IPAM_OPTIONS.includes(key)) throw new RequestError(key, `an IPAM option: give it as --ipam-opt ${key}=… with --ipam-driver tsnet, not as -o`);
      if (key.startsWith('tsnet.')) {
        const mine = [...known].filter((k) => k.startsWith('tsnet.')).join(', ');
        throw new RequestError(key, `unknown option for ${driver.kind} networks (tsnet options here: ${mine})`);
      }
      this.log.warn({ option: key }, 'ignoring an option tsnet does not know');
    }
  }

  createNetwork(input: CreateNetworkInput): Promise<void> {
    return this.exclusive(input.networkId, async () => {
      if (this.networks.has(input.networkId)) return; // a retried request: already done
      const { kind, spec } = networkSpec(input, (subnet, gateway) => this.addresses.gatewayChosen?.(subnet, gateway) ?? false);
      const driver = this.driverOf({ kind });
      const onDhcpPool = spec.ipv4.some((s) => this.addresses.isDhcpSubnet?.(s.pool));
      if (!driver.dhcpWire && onDhcpPool) {
        throw new RequestError('tsnet.dhcp', `only macvlan networks take addresses from the LAN's DHCP server (a ${kind} network has no wire of its own to ask on)`);
      }
      const dhcpOption = Object.values(DHCP_NETWORK_OPTIONS).find((key) => spec.options[key] !== undefined);
      if (dhcpOption && !onDhcpPool) throw new RequestError(dhcpOption, `only a network on a DHCP pool (--ipam-driver tsnet --ipam-opt tsnet.dhcp=on) takes it`);
      this.checkOptionKeys(spec.options, driver);
      await this.deletedLinksGone();
      const network = await this.locks.run(TOPOLOGY, async () => {
        const claimed: NetworkRecord = { ...spec, kind, config: await driver.prepareNetwork(spec, this.othersThan(spec.id)) };
        this.creating.set(claimed.id, claimed);
        return claimed;
      });
      try {
        const others = () => this.othersThan(network.id);
        await driver.createNetwork(network, others);
        await this.commitOrUndo([put('networks', network.id, network)], () => driver.deleteNetwork(network, others));
        this.networks.set(network.id, network);
        this.emit({ kind: 'network', action: 'created', networkId: network.id });
      } finally {
        this.creating.delete(network.id);
      }
    });
  }

  deleteNetwork(networkId: string): Promise<void> {
    return this.exclusive(networkId, async () => {
      const network = this.networks.get(networkId);
      if (!network) return;
      const driver = this.driverOf(network);
      // dockerd deletes endpoints first; any left are stale records of a crash.
      const stale = this.endpointsOf(networkId);
      for (const endpoint of stale) await driver.deleteEndpoint(network, endpoint);
      // Its claims (subnets, bridge, parent) hold until it is gone from the kernel.
      await driver.deleteNetwork(network, () => this.othersThan(networkId));
      await this.store.commit([...stale.map((e) => del('endpoints', e.id)), del('networks', networkId)]);
      stale.forEach((e) => this.forget(e));
      this.networks.delete(networkId);
      for (const e of stale) this.emit({ kind: 'endpoint', action: 'deleted', networkId, endpointId: e.id });
      this.emit({ kind: 'network', action: 'deleted', networkId });
    });
  }

  /**
   * Returns the MAC tsnet chose, only when dockerd had none (dockerd refuses
   * fields echoed back) and the kernel lets dockerd set it: an ipvlan link
   * has its parent's MAC, which no request changes.
   */
  createEndpoint(input: CreateEndpointInput): Promise<{ macAddress?: string }> {
    return this.exclusive(input.networkId, async () => {
      const network = this.network(input.networkId);
      const driver = this.driverOf(network);
      const shared = driver.sharedMac?.(network);
      const answer = (mac: string) => (input.macAddress === '' && shared === undefined ? { macAddress: mac } : {});
      const existing = this.endpoints.get(input.endpointId);
      if (existing) return answer(existing.mac);
      const ipv4 = this.interfaceAddress(input.address, 4, 'Interface.Address');
      this.interfaceAddress(input.addressIPv6, 6, 'Interface.AddressIPv6');
      if (input.macAddress !== '' && !MAC_ADDRESS.test(input.macAddress)) {
        throw new RequestError('Interface.MacAddress', `"${input.macAddress}" is not a MAC address`);
      }
      const leased = ipv4 ? input.address.split('/')[0]! : undefined;
      // A --mac-address arrives only now: the lease, taken under tsnet's MAC, becomes the container's own.
      if (leased && input.macAddress !== '') await this.addresses.rekeyLease?.(leased, input.macAddress.toLowerCase());
      const lease = leased ? this.addresses.lease?.(leased) : undefined;
      if (shared !== undefined && input.macAddress !== '' && input.macAddress.toLowerCase() !== shared.toLowerCase()) {
        const theirs = shared ? ` ${shared}` : '';
        throw new RequestError('Interface.MacAddress', `${network.kind} endpoints have their parent's MAC${theirs}; none can be chosen (--mac-address ${input.macAddress})`);
      }
      const spec: EndpointSpec = {
        id: input.endpointId,
        networkId: network.id,
        ...(input.address ? { address: input.address } : {}),
        ...(input.addressIPv6 ? { addressIPv6: input.addressIPv6 } : {}),
        mac: shared ?? (input.macAddress || lease?.mac || macFor(ipv4)),
        portBindings: portBindings(input.options),
      };
      const endpoint: EndpointRecord = { ...spec, state: await driver.createEndpoint(network, spec) };
      await this.commitOrUndo([put('endpoints', endpoint.id, endpoint)], () => driver.deleteEndpoint(network, endpoint));
      this.remember(endpoint);
      this.emit({ kind: 'endpoint', action: 'created', networkId: network.id, endpointId: endpoint.id });
      return answer(endpoint.mac);
    });
  }

  /** Persists what the kernel now has; if the store refuses, takes the kernel change back (best effort). */
  private async commitOrUndo(writes: readonly Write[], undo: () => Promise<unknown>): Promise<void> {
    try {
      await this.store.commit(writes);
    } catch (error) {
      await undo().catch(() => undefined);
      throw error;
    }
  }

  private interfaceAddress(text: string, family: 4 | 6, field: string) {
    if (text === '') return undefined;
    const parsed = parseCidrWithIp(text);
    if (!parsed || parsed.ip.family !== family) throw new RequestError(field, `"${text}" is not an IPv${family} address with a prefix length`);
    return parsed.ip;
  }

  deleteEndpoint(networkId: string, endpointId: string): Promise<void> {
    return this.exclusive(networkId, async () => {
      const endpoint = this.endpoints.get(endpointId);
      const network = this.networks.get(networkId);
      if (!endpoint || !network || endpoint.networkId !== networkId) return;
      await this.driverOf(network).deleteEndpoint(network, endpoint);
      await this.store.commit([del('endpoints', endpointId)]);
      this.forget(endpoint);
      this.emit({ kind: 'endpoint', action: 'deleted', networkId, endpointId });
    });
  }

  /** Answers with the interface to move into the sandbox; remembers the sandbox, which tells later whether the endpoint still lives. */
  join(networkId: string, endpointId: string, sandboxKey: string): Promise<JoinResult> {
    return this.exclusive(networkId, async () => {
      const network = this.network(networkId);
      let endpoint = this.endpoint(networkId, endpointId);
      if (sandboxKey !== '' && endpoint.sandboxKey !== sandboxKey) {
        endpoint = { ...endpoint, sandboxKey };
        await this.store.commit([put('endpoints', endpointId, endpoint)]);
        this.remember(endpoint);
      }
      const info = this.driverOf(network).join(network, endpoint);
      // A DHCP lease's router is the container's gateway: the network's was only a placeholder (docs/dhcp.md).
      const router = info.gateway && endpoint.address ? this.addresses.lease?.(endpoint.address.split('/')[0]!)?.routers[0] : undefined;
      return { ...info, ...(router ? { gateway: router } : {}), dstPrefix: network.ifacePrefix };
    });
  }

  programExternalConnectivity(networkId: string, endpointId: string): Promise<void> {
    return this.retryPastSuspects(() => this.updateEndpointState(networkId, endpointId, (driver, network, endpoint) => driver.programExternalConnectivity(network, endpoint), true));
  }

  revokeExternalConnectivity(networkId: string, endpointId: string): Promise<void> {
    return this.updateEndpointState(networkId, endpointId, (driver, network, endpoint) => driver.revokeExternalConnectivity(network, endpoint), false);
  }

  /** The endpoint's published ports with the host ports they got (none for kinds that publish none). */
  publishedPorts(endpoint: EndpointRecord): readonly PublishedPort[] {
    const network = this.networks.get(endpoint.networkId);
    return network ? (this.driverOf(network).publishedPorts?.(endpoint) ?? []) : [];
  }

  /**
   * Changes the published ports of the live endpoint that has `address`
   * (`tsnet port add/rm`): `change` maps its current ports to the new -p list.
   * Persisted, so the ports survive restarts; they go with the endpoint.
   */
  changePorts(address: string, change: (current: readonly PublishedPort[]) => PortBinding[]): Promise<EndpointRecord> {
    return this.retryPastSuspects(() => this.withLiveEndpoint(address, async (endpoint, network) => {
      const driver = this.driverOf(network);
      if (!driver.changePorts) throw new RequestError('address', `${network.kind} networks publish no ports`);
      const portBindings = change(this.publishedPorts(endpoint));
      const updated: EndpointRecord = { ...endpoint, portBindings, state: await driver.changePorts(network, endpoint, portBindings) };
      await this.commitOrUndo([put('endpoints', endpoint.id, updated)], () => driver.changePorts!(network, updated, endpoint.portBindings));
      this.remember(updated);
      return updated;
    }));
  }

  /**
   * Runs `work` under its network's lock on the endpoint holding `address`
   * whose container still lives; a record whose container looks gone is
   * passed over (start-up's second look drops it, not a port change).
   */
  private async withLiveEndpoint<T>(address: string, work: (endpoint: EndpointRecord, network: NetworkRecord) => Promise<T>): Promise<T> {
    // Looked up by address from outside the plugin API (`tsnet port`), not per plugin request.
    const holders = [...this.endpoints.values()].filter((e) => [e.address, e.addressIPv6].some((a) => a?.slice(0, a.indexOf('/')) === address));
    for (const holder of holders) {
      const done = await this.exclusive(holder.networkId, async () => {
        const current = this.endpoints.get(holder.id);
        const network = this.networks.get(holder.networkId);
        if (!current || !network) return undefined;
        const gone = await this.driverOf(network).goneEndpoints([current]);
        return gone.certain.length + gone.unsure.length === 0 ? { result: await work(current, network) } : undefined;
      });
      if (done) return done.result;
    }
    throw new RequestError('address', `no tsnet endpoint has the address ${address}`);
  }

  private updateEndpointState(
    networkId: string,
    endpointId: string,
    change: (driver: Driver, network: NetworkRecord, endpoint: EndpointRecord) => Promise<unknown>,
    mustExist: boolean,
  ): Promise<void> {
    return this.exclusive(networkId, async () => {
      if (!mustExist && (!this.endpoints.has(endpointId) || !this.networks.has(networkId))) return;
      const network = this.network(networkId);
      const endpoint = this.endpoint(networkId, endpointId);
      const state = await change(this.driverOf(network), network, endpoint);
      // A repeated call (dockerd retries) changes nothing: no commit.
      if (JSON.stringify(state) === JSON.stringify(endpoint.state)) return;
      const updated: EndpointRecord = { ...endpoint, state };
      await this.store.commit([put('endpoints', endpointId, updated)]);
      this.remember(updated);
    });
  }
}
