import { RequestError } from '../../src/errors.js';
import { parseCidr } from '../../src/net/address.js';
import { type Firewall, type FirewallNetwork, type Ip, type PortForward, type Sysctl, CommandError } from '../../src/sys/index.js';
import type { Driver } from '../driver.js';
import type { EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, NetworkSpec, PortBinding, SubnetRecord } from '../model.js';
import { bridgeMac, vethContainerName, vethHostName } from '../names.js';
import { BRIDGE_OPTIONS, type BridgeConfig, parseBridgeConfig } from './options.js';
import { type AllocatedPort, allocatePorts, PortTable, portForwards } from './ports.js';

export interface BridgeEndpointState {
  hostIf: string;
  containerIf: string;
  /** The -p bindings with their host ports, chosen at CreateEndpoint and kept for the endpoint's life. */
  ports: AllocatedPort[];
  /** Between ProgramExternalConnectivity and Revoke: the ports are forwarded. */
  published: boolean;
}

type BridgeNetwork = NetworkRecord<BridgeConfig>;
type BridgeEndpoint = EndpointRecord<BridgeEndpointState>;

const PORTMAP = 'com.docker.network.portmap';

/** `ip address add` words for the gateways the bridge carries (IPv6 without DAD: it is ours). */
function gatewayAddresses(network: BridgeNetwork): string[][] {
  const lines: string[][] = [];
  const add = (subnet: SubnetRecord, extra: string[]) => {
    const prefix = parseCidr(subnet.pool)!.cidr.prefix;
    if (subnet.gateway) lines.push(['address', 'add', `${subnet.gateway}/${prefix}`, 'dev', network.config.bridge, ...extra]);
  };
  if (!network.config.inhibitIpv4) network.ipv4.forEach((s) => add(s, []));
  if (network.ipv6) network.ipv6Subnets.forEach((s) => add(s, ['nodad']));
  return lines;
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
  };
}

const plainIp = (cidr: string | undefined) => cidr?.slice(0, cidr.indexOf('/'));
const addressesOf = (endpoint: EndpointSpec) => ({
  ...(endpoint.address ? { 4: plainIp(endpoint.address)! } : {}),
  ...(endpoint.addressIPv6 ? { 6: plainIp(endpoint.addressIPv6)! } : {}),
});

/**
 * Bridge networks: a Linux bridge carrying the gateway, one veth pair per
 * endpoint, and the firewall for isolation, NAT and published ports. Links
 * go through one `ip` process per call, rules through one firewall
 * transaction per call (none at all for an endpoint without ports).
 */
export class BridgeDriver implements Driver<BridgeConfig, BridgeEndpointState> {
  readonly kind = 'bridge' as const;
  readonly optionKeys = Object.values(BRIDGE_OPTIONS);
  private readonly ports = new PortTable();
  /** Forwards of the published endpoints, per network then endpoint: a network's DNAT chain is rebuilt from it. */
  private readonly forwards = new Map<string, Map<string, PortForward[]>>();

  constructor(
    private readonly ip: Ip,
    private readonly firewall: Firewall,
    private readonly sysctl: Sysctl,
  ) {}

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<BridgeConfig> {
    const name = spec.options[BRIDGE_OPTIONS.name];
    const existing = name ? await this.ip.link(name) : undefined;
    return parseBridgeConfig(spec, others, existing && { isBridge: existing.linkinfo?.info_kind === 'bridge' });
  }

  async createNetwork(network: BridgeNetwork): Promise<void> {
    await this.ensureBridge(network);
    try {
      await this.firewall.setupNetwork(firewallNetwork(network), []);
    } catch (error) {
      await this.deleteNetwork(network).catch(() => undefined);
      throw error;
    }
  }

  /** Creates the bridge if needed, fixes its MAC (if tsnet made it) and puts the missing gateway addresses on it. */
  private async ensureBridge(network: BridgeNetwork): Promise<void> {
    const { bridge, mtu, createdBridge } = network.config;
    const existing = await this.ip.link(bridge);
    const present = new Set<string>();
    if (existing) {
      for (const entry of await this.ip.addresses()) {
        if (entry.ifname === bridge) entry.addr_info.forEach((a) => present.add(`${a.local}/${a.prefixlen}`));
      }
    }
    const lines = [
      ...(existing ? [] : [['link', 'add', 'name', bridge, 'mtu', String(mtu), 'type', 'bridge']]),
      ...gatewayAddresses(network).filter((words) => !present.has(words[2]!)),
      ['link', 'set', 'dev', bridge, ...(createdBridge ? ['address', bridgeMac(network.id)] : []), 'up'],
    ];
    await this.ip.batch(lines);
  }

  async deleteNetwork(network: BridgeNetwork): Promise<void> {
    await this.firewall.teardownNetwork(firewallNetwork(network));
    this.forwards.delete(network.id);
    if (network.config.createdBridge) {
      await this.ip.deleteLinks([network.config.bridge]);
      return;
    }
    // An adopted bridge stays; only the addresses tsnet put on it go.
    for (const words of gatewayAddresses(network)) await this.ip.execTeardown(['address', 'del', ...words.slice(2, 5)]);
  }

  /** Host ports for the bindings, checked against the host and every tsnet endpoint; changes nothing. */
  private allocate(network: BridgeNetwork, endpoint: EndpointSpec, bindings: readonly PortBinding[], previous: readonly AllocatedPort[], field: (i: number) => string) {
    return allocatePorts(bindings, {
      table: this.ports,
      endpointId: endpoint.id,
      defaultHostIp: network.config.hostBindingIpv4,
      hasIPv6: endpoint.addressIPv6 !== undefined,
      hostAddresses: async () => new Set((await this.ip.addresses()).flatMap((link) => link.addr_info.map((a) => a.local))),
      ephemeralRange: async () => {
        const [low, high] = (await this.sysctl.get('net/ipv4/ip_local_port_range')).split(/\s+/).map(Number);
        return [low!, high!];
      },
      previous,
      field,
    });
  }

  /** Bridge port flags: hairpin lets a container reach its own published port, isolation enforces ICC off on the bridge itself. */
  private portFlags(network: BridgeNetwork, state: BridgeEndpointState): string[][] {
    const flags = [...(state.ports.length > 0 ? ['hairpin', 'on'] : []), ...(network.config.icc ? [] : ['isolated', 'on'])];
    return flags.length > 0 ? [['link', 'set', 'dev', state.hostIf, 'type', 'bridge_slave', ...flags]] : [];
  }

  async createEndpoint(network: BridgeNetwork, endpoint: EndpointSpec): Promise<BridgeEndpointState> {
    if (!endpoint.address) throw new RequestError('Interface.Address', 'a bridge endpoint needs an IPv4 address from the IPAM');
    // dockerd sends no ports for internal networks; an internal network publishes none whatever it is sent.
    const bindings = network.internal ? [] : endpoint.portBindings;
    const ports = await this.allocate(network, endpoint, bindings, [], (i) => `${PORTMAP}.${i}`);
    const state: BridgeEndpointState = { hostIf: vethHostName(endpoint.id), containerIf: vethContainerName(endpoint.id), ports, published: false };
    const { bridge, mtu } = network.config;
    // One batch (the daemon's long-lived ip session: no program start): the
    // pair, its MTU, the host end on the bridge and up, then its bridge port
    // flags, which `ip link add` cannot set (only endpoints with ports or ICC off need them).
    const lines = [
      ['link', 'add', state.hostIf, 'mtu', String(mtu), 'master', bridge, 'up', 'type', 'veth', 'peer', 'name', state.containerIf, 'mtu', String(mtu)],
      ...this.portFlags(network, state),
    ];
    try {
      await this.ip.batch(lines);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      // The pair may exist: left over by a crashed attempt of this very endpoint (then it is replaced), or made before its flags failed.
      await this.ip.deleteLinks([state.hostIf]);
      if (!/File exists/.test(error.stderr)) throw error;
      await this.ip.batch(lines);
    }
    this.ports.hold(endpoint.id, ports);
    return state;
  }

  async deleteEndpoint(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<void> {
    await this.unpublish(network, endpoint);
    this.ports.release(endpoint.id);
    // Deleting one end of a veth pair deletes both; the other end may be in a sandbox still.
    await this.ip.deleteLinks([endpoint.state.hostIf]);
  }

  hostAddresses(network: BridgeNetwork): string[] {
    const gateway = bridgeGateway(network);
    return gateway ? [gateway] : [];
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

  private networkForwards(networkId: string): Map<string, PortForward[]> {
    let forwards = this.forwards.get(networkId);
    if (!forwards) this.forwards.set(networkId, (forwards = new Map()));
    return forwards;
  }

  /** Rewrites the network's DNAT rules from the forwards of its published endpoints. */
  private async syncForwards(network: BridgeNetwork): Promise<void> {
    await this.firewall.setPortForwards(firewallNetwork(network), [...this.networkForwards(network.id).values()].flat());
  }

  private async publish(network: BridgeNetwork, endpoint: EndpointSpec, ports: readonly AllocatedPort[]): Promise<void> {
    const forwards = this.networkForwards(network.id);
    const before = forwards.get(endpoint.id);
    if (ports.length === 0 && !before) return;
    forwards.set(endpoint.id, portForwards(ports, addressesOf(endpoint)));
    await this.syncForwards(network);
  }

  private async unpublish(network: BridgeNetwork, endpoint: EndpointSpec): Promise<void> {
    if (!this.networkForwards(network.id).delete(endpoint.id)) return;
    await this.syncForwards(network);
  }

  async programExternalConnectivity(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    await this.publish(network, endpoint, endpoint.state.ports);
    return { ...endpoint.state, published: true };
  }

  async revokeExternalConnectivity(network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    await this.unpublish(network, endpoint);
    return { ...endpoint.state, published: false };
  }

  /** `tsnet port add/rm`: the endpoint's bindings become `bindings`; unchanged ones keep their host ports. */
  async changePorts(network: BridgeNetwork, endpoint: BridgeEndpoint, bindings: readonly PortBinding[]): Promise<BridgeEndpointState> {
    if (network.internal && bindings.length > 0) throw new RequestError('ports', `network ${network.id.slice(0, 12)} is internal: it publishes no ports`);
    const ports = await this.allocate(network, endpoint, bindings, endpoint.state.ports, (i) => `ports.${i}`);
    const state = { ...endpoint.state, ports };
    if (ports.length > 0 && endpoint.state.ports.length === 0) await this.ip.batch(this.portFlags(network, state));
    if (state.published) await this.publish(network, endpoint, ports);
    this.ports.hold(endpoint.id, ports);
    return state;
  }

  async restore(network: BridgeNetwork, endpoints: readonly BridgeEndpoint[]): Promise<void> {
    await this.ensureBridge(network);
    const forwards = this.networkForwards(network.id);
    for (const endpoint of endpoints) {
      this.ports.hold(endpoint.id, endpoint.state.ports);
      if (endpoint.state.published && endpoint.state.ports.length > 0) forwards.set(endpoint.id, portForwards(endpoint.state.ports, addressesOf(endpoint)));
    }
    await this.firewall.setupNetwork(firewallNetwork(network), [...forwards.values()].flat());
  }
}
