import { RequestError } from '../../src/errors.js';
import { KeyedMutex } from '../../src/mutex.js';
import { parseCidr } from '../../src/net/address.js';
import type { Logger } from 'pino';
import { type Drift, drift, type Firewall, isRuleDrift, type FirewallNetwork, type HostPorts, type Ip, type LinkReaper, type PortForward, type Sysctl, CommandError } from '../../src/sys/index.js';
import type { Driver, DriftView } from '../driver.js';
import { type EndpointRecord, type EndpointSpec, type JoinInfo, type NetworkRecord, type NetworkSpec, PORTMAP, type PortBinding, type PublishedPort, type SubnetRecord } from '../model.js';
import { bridgeMac, bridgeName, vethContainerName, vethHostName } from '../names.js';
import { type GoneEndpoints, lostSandbox, SandboxFiles, sortGone } from '../sandbox.js';
import { OptionReader } from '../option-values.js';
import { BRIDGE_OPTIONS, type BridgeConfig, parseBridgeConfig } from './options.js';
import { OVERLAY_OPTIONS, type OverlayPart, refuseOverlayOptions, wantsOverlay } from './overlay.js';
import { allocatePorts, PortTable, portForwards, takenMessage } from './ports.js';

export interface BridgeEndpointState {
  hostIf: string;
  containerIf: string;
  /** The -p bindings with their host ports while the endpoint is its container's gateway (published); empty otherwise. */
  ports: PublishedPort[];
  /** Between ProgramExternalConnectivity and Revoke: the ports are forwarded. */
  published: boolean;
}

type BridgeNetwork = NetworkRecord<BridgeConfig>;
type BridgeEndpoint = EndpointRecord<BridgeEndpointState>;

/** The key of the host-port lock: port choices of all networks are checked against each other. */
const HOST_PORTS = 'host ports';

/** The gateways the bridge carries, as `address/prefix`, and the extra `ip address add` words (IPv6 without DAD: it is ours). */
function gatewayAddresses(network: BridgeNetwork): Array<{ address: string; extra: string[] }> {
  const gateways = (subnets: readonly SubnetRecord[], extra: string[]) =>
    subnets.filter((s) => s.gateway).map((s) => ({ address: `${s.gateway}/${parseCidr(s.pool)!.cidr.prefix}`, extra }));
  return [...(network.config.inhibitIpv4 ? [] : gateways(network.ipv4, [])), ...(network.ipv6 ? gateways(network.ipv6Subnets, ['nodad']) : [])];
}

/** The IPv4 gateway on the bridge, if the bridge carries one. */
const bridgeGateway = (network: BridgeNetwork) => (network.config.inhibitIpv4 ? undefined : network.ipv4[0]?.gateway);

/** What the firewall needs to know of a network. */
function firewallNetwork(network: BridgeNetwork): FirewallNetwork {
  const { config } = network;
  const v6 = network.ipv6 ? network.ipv6Subnets[0]?.pool : undefined;
  const dnsServer = network.dns ? bridgeGateway(network) : undefined;
  return {
    id: network.id,
    bridge: config.bridge,
    subnets: { 4: network.ipv4[0]!.pool, ...(v6 ? { 6: v6 } : {}) },
    internal: network.internal,
    icc: config.icc,
    isolate: config.isolate,
    ...(dnsServer ? { dnsServer } : {}),
    outboundNat: {
      ...(config.masquerade ? { 4: config.hostIpv4 ? { kind: 'snat', source: config.hostIpv4 } : { kind: 'masquerade' } } : {}),
      ...(config.masquerade6 ? { 6: { kind: 'masquerade' } } : {}),
    },
    routeLocalnetBefore: config.adopted?.routeLocalnet ?? false,
    // A bridge tsnet made goes, its group with it.
    ...(config.createdBridge ? {} : { groupBefore: config.adopted?.group ?? 'default' }),
  };
}

const plainIp = (cidr: string | undefined) => cidr?.slice(0, cidr.indexOf('/'));
const addressesOf = (endpoint: EndpointSpec) => ({
  ...(endpoint.address ? { 4: plainIp(endpoint.address)! } : {}),
  ...(endpoint.addressIPv6 ? { 6: plainIp(endpoint.addressIPv6)! } : {}),
});

/** The bridge (unless it `exists`), the gateway addresses it lacks, its MAC (if tsnet made it) and up. */
function bridgeLines(network: BridgeNetwork, exists: boolean, present: ReadonlySet<string>): string[][] {
  const { bridge, mtu, createdBridge } = network.config;
  return [
    ...(exists ? [] : [['link', 'add', 'name', bridge, 'mtu', String(mtu), 'type', 'bridge']]),
    ...gatewayAddresses(network)
      .filter((g) => !present.has(g.address))
      .map((g) => ['address', 'add', g.address, 'dev', bridge, ...g.extra]),
    ['link', 'set', 'dev', bridge, ...(createdBridge ? ['address', bridgeMac(network.id)] : []), 'up'],
  ];
}

/**
 * Bridge networks: a Linux bridge carrying the gateway, one veth pair per
 * endpoint, and the firewall for isolation, NAT and published ports. Links
 * go through one `ip` process per call, rules through one firewall
 * transaction per call (none at all for an endpoint without ports).
 */
export class BridgeDriver implements Driver<BridgeConfig, BridgeEndpointState> {
  readonly kind = 'bridge' as const;
  readonly optionKeys = [...Object.values(BRIDGE_OPTIONS), ...Object.values(OVERLAY_OPTIONS)];
  private readonly ports: PortTable;
  /** Choosing and holding host ports is one step for one endpoint at a time, whatever its network: it is short (no firewall work). */
  private readonly portLock = new KeyedMutex();
  /** Published ports a host service took while tsnet was down: kept in the record, never forwarded (see restore). */
  private readonly notForwarded = new Map<string, readonly PublishedPort[]>();

  constructor(
    private readonly ip: Ip,
    private readonly firewall: Firewall,
    private readonly sysctl: Sysctl,
    hostPorts: HostPorts,
    private readonly reaper: LinkReaper,
    private readonly log: Logger,
    private readonly overlay: OverlayPart,
    private readonly sandboxes = new SandboxFiles(),
  ) {
    this.ports = new PortTable(hostPorts);
  }

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<BridgeConfig> {
    const config = await this.prepareBridge(spec, others);
    if (!wantsOverlay(spec)) {
      refuseOverlayOptions(spec);
      await this.overlay.refuseSegmentPool(spec);
      return config;
    }
    const { overlay, mtu } = await this.overlay.prepare(spec);
    return { ...config, overlay, mtu };
  }

  private async prepareBridge(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<BridgeConfig> {
    const name = new OptionReader(spec.options).linkName(BRIDGE_OPTIONS.name);
    const existing = name ? await this.ip.link(name) : undefined;
    if (!existing || existing.linkinfo?.info_kind !== 'bridge') return parseBridgeConfig(spec, others, existing && { isBridge: false, addresses: [], routeLocalnet: false });
    const [addresses, routeLocalnet] = await Promise.all([this.ip.addressesOf(existing.ifname), this.sysctl.get(`net/ipv4/conf/${existing.ifname}/route_localnet`)]);
    return parseBridgeConfig(spec, others, { isBridge: true, addresses, routeLocalnet: routeLocalnet === '1', ...(existing.group ? { group: existing.group } : {}) });
  }

  async createNetwork(network: BridgeNetwork): Promise<void> {
    await this.makeBridge(network);
    try {
      await this.overlay.create(network);
      await this.firewall.setupNetwork(firewallNetwork(network), new Map());
    } catch (error) {
      await this.deleteNetwork(network).catch(() => undefined);
      throw error;
    }
  }

  /**
   * A bridge tsnet makes is new (prepareNetwork found no link of the name
   * asked; a default name is the network's own), so it is made without
   * reading the kernel first: one batch on the ip session, no program
   * start. Only when the name is taken after all (a bridge a crash left
   * behind, or made meanwhile) is the kernel read.
   */
  private async makeBridge(network: BridgeNetwork): Promise<void> {
    if (!network.config.createdBridge) return this.ensureBridge(network);
    try {
      await this.ip.batch(bridgeLines(network, false, new Set()));
    } catch (error) {
      if (!(error instanceof CommandError) || !/File exists/.test(error.stderr)) throw error;
      await this.ensureBridge(network);
    }
  }

  /** Creates the bridge if needed, fixes its MAC (if tsnet made it) and puts the missing gateway addresses on it. */
  private async ensureBridge(network: BridgeNetwork): Promise<void> {
    const existing = await this.ip.link(network.config.bridge);
    const present = new Set(existing ? await this.ip.addressesOf(network.config.bridge) : []);
    await this.ip.batch(bridgeLines(network, existing !== undefined, present));
  }

  async deleteNetwork(network: BridgeNetwork): Promise<void> {
    await this.overlay.delete(network);
    await this.firewall.teardownNetwork(firewallNetwork(network));
    if (network.config.createdBridge) {
      // A bridge named after the network is never made again: it goes in the background. One the
      // user named goes now, so that a network made next with the same name gets a bridge of its own.
      if (network.config.bridge === bridgeName(network.id)) this.reaper.retire([network.config.bridge]);
      else await this.ip.deleteLinks([network.config.bridge]);
      return;
    }
    // An adopted bridge stays; only the addresses tsnet put on it go.
    const own = gatewayAddresses(network).filter((g) => !network.config.adopted?.addresses.includes(g.address));
    for (const { address } of own) await this.ip.undo(['address', 'del', address, 'dev', network.config.bridge]);
  }

  /** Host ports for the bindings, checked against the host and every tsnet endpoint; changes nothing. */
  private allocate(network: BridgeNetwork, endpoint: EndpointSpec, bindings: readonly PortBinding[], previous: readonly PublishedPort[], field: (i: number) => string) {
    return allocatePorts(bindings, {
      table: this.ports,
      endpointId: endpoint.id,
      defaultHostIp: network.config.hostBindingIpv4,
      hasIPv6: endpoint.addressIPv6 !== undefined,
      isHostAddress: (address) => this.ip.hasAddress(address),
      ephemeralRange: async () => {
        const [low, high] = (await this.sysctl.get('net/ipv4/ip_local_port_range')).split(/\s+/).map(Number);
        return [low!, high!];
      },
      previous,
      field,
    });
  }

  /** Whether the endpoint's bridge port has hairpin on: it has (or had) ports to publish, and may publish them. */
  private hairpin(network: BridgeNetwork, endpoint: BridgeEndpoint): boolean {
    return !network.internal && (endpoint.portBindings.length > 0 || endpoint.state.ports.length > 0);
  }

  /** Bridge port flags: hairpin lets a container reach its own published port, isolation enforces ICC off on the bridge itself. */
  private portFlags(network: BridgeNetwork, state: BridgeEndpointState, hairpin: boolean): string[][] {
    const flags = [...(hairpin ? ['hairpin', 'on'] : []), ...(network.config.icc ? [] : ['isolated', 'on'])];
    return flags.length > 0 ? [['link', 'set', 'dev', state.hostIf, 'type', 'bridge_slave', ...flags]] : [];
  }

  async createEndpoint(network: BridgeNetwork, endpoint: EndpointSpec): Promise<BridgeEndpointState> {
    if (!endpoint.address) throw new RequestError('Interface.Address', 'a bridge endpoint needs an IPv4 address from the IPAM');
    // Host ports wait for ProgramExternalConnectivity: dockerd sends a remote driver the -p list on
    // every network a container joins, and only its gateway endpoint may publish them.
    const state: BridgeEndpointState = { hostIf: vethHostName(endpoint.id), containerIf: vethContainerName(endpoint.id), ports: [], published: false };
    const { bridge, mtu } = network.config;
    // One batch (the daemon's long-lived ip session: no program start): the
    // pair, its MTU, the host end on the bridge and up, then its bridge port
    // flags, which `ip link add` cannot set (only endpoints with ports or ICC off need them).
    const lines = [
      ['link', 'add', state.hostIf, 'mtu', String(mtu), 'master', bridge, 'up', 'type', 'veth', 'peer', 'name', state.containerIf, 'mtu', String(mtu)],
      ...this.portFlags(network, state, endpoint.portBindings.length > 0 && !network.internal),
    ];
    // The same endpoint made again right after its delete (dockerd retrying): its old pair goes first.
    if (this.reaper.has(state.hostIf)) await this.reaper.settled();
    await this.addPair(lines, state.hostIf);
    return state;
  }

  private async addPair(lines: string[][], hostIf: string): Promise<void> {
    try {
      await this.ip.batch(lines);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      // The pair may exist: left over by a crashed attempt of this very endpoint (then it is replaced), or made before its flags failed.
      await this.ip.deleteLinks([hostIf]);
      if (!/File exists/.test(error.stderr)) throw error;
      await this.ip.batch(lines);
    }
  }

  /**
   * Chooses the bindings' host ports and holds them on the host, as one step
   * under the host-port lock, so two endpoints never get the same port. One
   * a host process has meanwhile puts `previous` back and refuses the request.
   */
  private claimPorts(network: BridgeNetwork, endpoint: EndpointSpec, bindings: readonly PortBinding[], previous: readonly PublishedPort[], field: (i: number) => string): Promise<PublishedPort[]> {
    return this.portLock.run(HOST_PORTS, async () => {
      const ports = await this.allocate(network, endpoint, bindings, previous, field);
      const [lost] = await this.ports.hold(endpoint.id, ports);
      if (!lost) return ports;
      await this.ports.hold(endpoint.id, previous);
      throw new RequestError(`${field(ports.indexOf(lost))}.HostPort`, takenMessage(lost));
    });
  }

  /** Makes `ports` what the endpoint holds; returns those a host process has. */
  private holdOnly(endpointId: string, ports: readonly PublishedPort[]): Promise<PublishedPort[]> {
    return this.portLock.run(HOST_PORTS, () => this.ports.hold(endpointId, ports));
  }

  async deleteEndpoint(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<void> {
    this.notForwarded.delete(endpoint.id);
    await this.unpublish(network, endpoint);
    await this.holdOnly(endpoint.id, []);
    // Deleting one end of a veth pair deletes both; the other end may be in a sandbox still. The kernel
    // takes ~20 ms for it, which `docker run --rm` would wait for: it goes in the background (see LinkReaper).
    this.reaper.retire([endpoint.state.hostIf]);
  }

  join(network: BridgeNetwork, endpoint: BridgeEndpoint): JoinInfo {
    const v4 = network.ipv4[0];
    const v6 = network.ipv6 ? network.ipv6Subnets[0] : undefined;
    if (network.internal) return { srcName: endpoint.state.containerIf, disableGatewayService: true };
    return {
      srcName: endpoint.state.containerIf,
      // Docker's aux addresses DefaultGatewayIPv4/6 point containers at another router.
      ...(v4?.gateway ? { gateway: v4.aux.DefaultGatewayIPv4 ?? v4.gateway } : {}),
      ...(v6?.gateway ? { gatewayIPv6: v6.aux.DefaultGatewayIPv6 ?? v6.gateway } : {}),
    };
  }

  private publish(network: BridgeNetwork, endpoint: EndpointSpec, ports: readonly PublishedPort[]): Promise<void> {
    return this.firewall.setPortForwards(firewallNetwork(network), endpoint.id, portForwards(ports, addressesOf(endpoint)));
  }

  private unpublish(network: BridgeNetwork, endpoint: EndpointSpec): Promise<void> {
    return this.firewall.setPortForwards(firewallNetwork(network), endpoint.id, []);
  }

  /** The sandbox's gateway endpoint: its -p list gets host ports, held on the host and forwarded. */
  async programExternalConnectivity(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    // An internal network publishes no ports, whatever it is sent.
    const bindings = network.internal ? [] : endpoint.portBindings;
    const ports = await this.claimPorts(network, endpoint, bindings, endpoint.state.ports, (i) => `${PORTMAP}.${i}`);
    this.notForwarded.delete(endpoint.id);
    try {
      await this.publish(network, endpoint, ports);
    } catch (error) {
      await this.holdOnly(endpoint.id, endpoint.state.ports);
      throw error;
    }
    return { ...endpoint.state, ports, published: true };
  }

  /** Another endpoint becomes the gateway, or the container stops: its host ports are free again. */
  async revokeExternalConnectivity(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    this.notForwarded.delete(endpoint.id);
    await this.unpublish(network, endpoint);
    await this.holdOnly(endpoint.id, []);
    return { ...endpoint.state, ports: [], published: false };
  }

  publishedPorts(endpoint: BridgeEndpoint): readonly PublishedPort[] {
    return endpoint.state.ports;
  }

  /**
   * `tsnet port add/rm`: the endpoint's bindings become `bindings`; unchanged
   * ones keep their host ports. An endpoint that is not its container's
   * gateway publishes them once it becomes one.
   */
  async changePorts(network: BridgeNetwork, endpoint: BridgeEndpoint, bindings: readonly PortBinding[]): Promise<BridgeEndpointState> {
    if (network.internal && bindings.length > 0) throw new RequestError('ports', `network ${network.id.slice(0, 12)} is internal: it publishes no ports`);
    if (!endpoint.state.published) return endpoint.state;
    const field = (i: number) => `ports.${i}`;
    const ports = await this.claimPorts(network, endpoint, bindings, endpoint.state.ports, field);
    const state = { ...endpoint.state, ports };
    try {
      if (ports.length > 0 && endpoint.state.ports.length === 0) await this.ip.batch(this.portFlags(network, state, true));
      await this.publish(network, endpoint, ports);
    } catch (error) {
      await this.holdOnly(endpoint.id, endpoint.state.ports);
      throw error;
    }
    return state;
  }

  /** Gone: its sandbox let go of the container end, or the whole pair vanished with it. */
  async goneEndpoints(endpoints: readonly BridgeEndpoint[]): Promise<GoneEndpoints<BridgeEndpoint>> {
    if (endpoints.length === 0) return { certain: [], unsure: [] };
    const links = await this.ip.linkNames();
    return sortGone(endpoints, (e) => (links.has(e.state.hostIf) ? lostSandbox(e, e.state.containerIf, links, this.sandboxes) : 'certain'));
  }

  ownedLinks(network: BridgeNetwork, endpoints: readonly BridgeEndpoint[]): string[] {
    return [network.config.bridge, ...this.overlay.links(network), ...endpoints.flatMap((e) => [e.state.hostIf, e.state.containerIf])];
  }

  hostAddresses(network: BridgeNetwork): string[] {
    const gateway = bridgeGateway(network);
    return gateway ? [gateway] : [];
  }

  /** The forwards of the endpoints that publish: their ports but those a host service holds (notForwarded). */
  private forwardsOf(endpoints: readonly BridgeEndpoint[]): Map<string, PortForward[]> {
    const forwards = new Map<string, PortForward[]>();
    for (const endpoint of endpoints) {
      const lost = this.notForwarded.get(endpoint.id) ?? [];
      const ports = endpoint.state.ports.filter((p) => !lost.includes(p));
      if (endpoint.state.published && ports.length > 0) forwards.set(endpoint.id, portForwards(ports, addressesOf(endpoint)));
    }
    return forwards;
  }

  /**
   * The bridge with its gateways, the host ends of the endpoints on it with
   * their port flags (a bridge deleted and made again has no ports), the
   * published ports held on the host, and the network's rules.
   */
  async restore(network: BridgeNetwork, endpoints: readonly BridgeEndpoint[], found?: readonly Drift[]): Promise<void> {
    // Only rules lost (a flushed ruleset touches every network): the links and held ports are as they were.
    if (found && found.length > 0 && found.every(isRuleDrift)) {
      await this.firewall.setupNetwork(firewallNetwork(network), this.forwardsOf(endpoints));
      return;
    }
    await this.ensureBridge(network);
    await this.overlay.restore(network);
    const links = endpoints.length > 0 ? await this.ip.linkNames() : new Set<string>();
    const present = endpoints.filter((e) => links.has(e.state.hostIf));
    await this.ip.batch(
      present.flatMap((e) => [['link', 'set', 'dev', e.state.hostIf, 'master', network.config.bridge, 'up'], ...this.portFlags(network, e.state, this.hairpin(network, e))]),
    );
    for (const endpoint of endpoints) {
      // A host service that took a port while tsnet was down keeps it: forwarding it would steal its traffic.
      const lost = await this.holdOnly(endpoint.id, endpoint.state.ports);
      for (const port of lost) this.log.error({ endpoint: endpoint.id, network: network.id }, `not forwarding ${takenMessage(port)} since tsnet was down`);
      if (lost.length > 0) this.notForwarded.set(endpoint.id, lost);
    }
    await this.firewall.setupNetwork(firewallNetwork(network), this.forwardsOf(endpoints));
  }

  drift(network: BridgeNetwork, endpoints: readonly BridgeEndpoint[], { kernel, rules }: DriftView): Drift[] {
    const { bridge } = network.config;
    const link = kernel.links.get(bridge);
    if (!link) return [drift(network.id, 'link', 'missing', bridge), ...this.firewall.drift(rules, firewallNetwork(network), this.forwardsOf(endpoints))];
    const ports = endpoints.flatMap((endpoint): Drift[] => {
      const { hostIf } = endpoint.state;
      const port = kernel.links.get(hostIf);
      if (!port) return []; // gone with its container
      if (port.master !== bridge) return [drift(network.id, 'link', 'changed', `${hostIf} is not a port of ${bridge}${port.master ? ` (of ${port.master})` : ''}`)];
      const flags = port.linkinfo?.info_slave_data ?? {};
      return [
        ...(port.flags.includes('UP') ? [] : [drift(network.id, 'link', 'changed', `${hostIf} is down`)]),
        ...(this.hairpin(network, endpoint) && !flags.hairpin ? [drift(network.id, 'port-flag', 'missing', `hairpin on ${hostIf}`)] : []),
        ...(!network.config.icc && !flags.isolated ? [drift(network.id, 'port-flag', 'missing', `isolated on ${hostIf}`)] : []),
      ];
    });
    return [
      ...(link.flags.includes('UP') ? [] : [drift(network.id, 'link', 'changed', `${bridge} is down`)]),
      ...this.overlay.drift(network, kernel),
      ...gatewayAddresses(network)
        .filter((g) => !link.addresses.includes(g.address))
        .map((g) => drift(network.id, 'address', 'missing', `${g.address} on ${bridge}`)),
      ...ports,
      ...this.firewall.drift(rules, firewallNetwork(network), this.forwardsOf(endpoints)),
    ];
  }

  /** Rules and set elements of bridge networks that have no record (the links go with removeLeftoverLinks). */
  removeLeftovers(networks: readonly BridgeNetwork[]): Promise<string[]> {
    return this.firewall.removeUnknown(networks.map(firewallNetwork));
  }
}
