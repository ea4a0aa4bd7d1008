import type { BridgeEndpointState } from '../../drivers/bridge/bridge-driver.js';
import type { BridgeConfig } from '../../drivers/bridge/options.js';
import type { IpvlanConfig } from '../../drivers/ipvlan/options.js';
import type { ParentConfig } from '../../drivers/parent/parent-config.js';
import type { ParentEndpointState } from '../../drivers/parent/parent-link-driver.js';
import type { DriverKind, EndpointRecord, NetworkRecord } from '../../drivers/model.js';
import type { NetworkService } from '../core/network-service.js';
import { RequestError } from '../errors.js';
import type { IpamService, PoolRecord } from '../ipam/ipam-service.js';
import { canonicalCidr, cidrSize, formatIp, parseCidr, parseIp } from '../net/address.js';
import type { SegmentMember } from '../overlay/segment-members.js';
import { deadlines } from '../dhcp/renewer.js';
import type { DockerNames } from './docker-names.js';
import { formatPortSpec } from './port-spec.js';

/** One row of `tsnet ls`. */
export interface NetworkSummary {
  id: string;
  /** Docker's name, when known. */
  name?: string;
  kind: DriverKind;
  subnets: string[];
  gateways: string[];
  /** The bridge, or the macvlan/ipvlan parent (a VLAN subinterface for 802.1Q). */
  link: string;
  vlan?: number;
  /** An ipvlan network's mode and flag, e.g. `l3 bridge`: one per parent. */
  ipvlanMode?: string;
  /**
   * An overlay's segment: its shared pool, VNI, this host's underlay
   * (address:port), and the containers of the other hosts on it (absent
   * until the store was read).
   */
  overlay?: { pool: string; vni: number; underlay: string; remoteContainers?: number; encrypted?: boolean };
  internal: boolean;
  endpoints: number;
}

export interface EndpointView {
  id: string;
  network: string;
  networkName?: string;
  /** The container's name, when known. */
  container?: string;
  addresses: string[];
  mac: string;
  /** The links tsnet made: `host` stays in the host netns (bridge veth end), `container` goes into the sandbox. */
  links: { host?: string; container: string };
  /** Host ports as the container got them (`8080:80/tcp`), each held by a socket while published. */
  ports: string[];
  /** The container's netns (Join's SandboxKey); absent until it joined. */
  sandbox?: string;
  /** The DHCP lease of its address, on a network whose addresses the LAN's server hands out. */
  lease?: LeaseView;
}

/** A DHCP lease as `tsnet inspect` shows it: its server, and when it is renewed, rebound and runs out (ISO times). */
export interface LeaseView {
  server: string;
  routers: string[];
  granted: string;
  renew: string;
  rebind: string;
  expires: string;
  /** `bound`, or `expired`: it ran out with no server to extend it (tsnet keeps asking). */
  state: 'bound' | 'expired';
  hostname?: string;
}

/** A pool of tsnet's IPAM and what it holds. */
export interface PoolView {
  id: string;
  pool: string;
  range?: string;
  size: string;
  held: Array<{ address: string; use: string }>;
}

export interface NetworkView extends NetworkSummary {
  options: Record<string, string>;
  /** The driver's parsed options and the names it generated. */
  config: unknown;
  endpoints: number;
  endpointList: EndpointView[];
  /** Pools of tsnet's IPAM that the network's subnets came from (none with Docker's IPAM). */
  pools: PoolView[];
  /** An overlay's hosts with containers on its segment, as this host last read the store. */
  members?: SegmentMember[];
}

/** An address that is no endpoint's: a gateway, an aux address, or one held for nothing. */
export interface AddressView {
  address: string;
  use: string;
  network?: string;
  networkName?: string;
  pool?: string;
}

export type Inspected = { type: 'network'; network: NetworkView } | { type: 'endpoint'; endpoint: EndpointView } | { type: 'address'; address: AddressView };

const plain = (cidr: string) => cidr.split('/')[0]!;

/**
 * What `tsnet ls` and `tsnet inspect` show: the daemon's networks, endpoints
 * and IPAM holds, with Docker's names where they are known.
 */
export class Inventory {
  constructor(
    private readonly networks: NetworkService,
    private readonly ipam: IpamService,
    private readonly names: DockerNames,
    /** An overlay network's segment members (the cluster's segments); absent without a cluster store. */
    private readonly segmentMembers: (networkId: string) => SegmentMember[] | undefined = () => undefined,
  ) {}

  list(): NetworkSummary[] {
    const endpoints = this.networks.listEndpoints();
    return this.networks.listNetworks().map((n) => this.summary(n, endpoints.filter((e) => e.networkId === n.id).length));
  }

  /** A network (ID prefix or Docker name), an endpoint (ID prefix) or an address; refuses what matches none or several. */
  inspect(query: string): Inspected {
    if (query === '') throw new RequestError('query', 'name a network, an endpoint or an address');
    const ip = parseIp(query);
    if (ip) return this.inspectAddress(formatIp(ip));
    const networks = this.networks.listNetworks().filter((n) => n.id.startsWith(query) || this.names.networkName(n.id) === query);
    const endpoints = this.networks.listEndpoints().filter((e) => e.id.startsWith(query));
    const found = [...networks.map((n) => `network ${n.id.slice(0, 12)}`), ...endpoints.map((e) => `endpoint ${e.id.slice(0, 12)}`)];
    if (found.length === 0) throw new RequestError('query', `no tsnet network or endpoint is named "${query}"`);
    if (found.length > 1) throw new RequestError('query', `"${query}" is ambiguous: ${found.join(', ')}`);
    return networks[0] ? { type: 'network', network: this.networkView(networks[0]) } : { type: 'endpoint', endpoint: this.endpointView(endpoints[0]!) };
  }

  private summary(network: NetworkRecord, endpoints: number): NetworkSummary {
    const subnets = [...network.ipv4, ...(network.ipv6 ? network.ipv6Subnets : [])];
    const name = this.names.networkName(network.id);
    const parent = network.kind === 'bridge' ? undefined : (network.config as ParentConfig);
    const ipvlan = network.kind === 'ipvlan' ? (network.config as IpvlanConfig) : undefined;
    const overlay = network.kind === 'bridge' ? (network.config as BridgeConfig).overlay : undefined;
    return {
      id: network.id,
      ...(name ? { name } : {}),
      kind: network.kind,
      subnets: subnets.map((s) => s.pool),
      gateways: subnets.flatMap((s) => (s.gateway ? [s.gateway] : [])),
      link: parent ? parent.parent : (network.config as BridgeConfig).bridge,
      ...(parent?.vlan ? { vlan: parent.vlan.id } : {}),
      ...(ipvlan ? { ipvlanMode: `${ipvlan.mode} ${ipvlan.flag}` } : {}),
      ...(overlay ? { overlay: { pool: overlay.pool, vni: overlay.vni, underlay: `${overlay.underlay}:${overlay.port}`, ...(overlay.encrypted ? { encrypted: true } : {}), ...this.remoteContainers(network.id) } } : {}),
      internal: network.internal,
      endpoints,
    };
  }

  private remoteContainers(networkId: string): { remoteContainers?: number } {
    const members = this.segmentMembers(networkId);
    return members ? { remoteContainers: members.reduce((n, m) => n + (m.self ? 0 : m.containers), 0) } : {};
  }

  private networkView(network: NetworkRecord): NetworkView {
    const endpointList = this.networks.listEndpoints().filter((e) => e.networkId === network.id).map((e) => this.endpointView(e));
    const subnets = new Set([...network.ipv4, ...network.ipv6Subnets].map((s) => canonicalCidr(s.pool)));
    const pools = this.ipam.list().filter((p) => subnets.has(canonicalCidr(p.pool)));
    const members = this.segmentMembers(network.id);
    return {
      ...this.summary(network, endpointList.length),
      options: network.options,
      config: network.config,
      endpointList,
      pools: pools.map((p) => this.poolView(p, network)),
      ...(members ? { members } : {}),
    };
  }

  private endpointView(endpoint: EndpointRecord): EndpointView {
    const network = this.networks.listNetworks().find((n) => n.id === endpoint.networkId);
    const networkName = this.names.networkName(endpoint.networkId);
    const container = this.names.containerOfEndpoint(endpoint.id);
    const links =
      network?.kind === 'macvlan' || network?.kind === 'ipvlan'
        ? { container: (endpoint.state as ParentEndpointState).link }
        : { host: (endpoint.state as BridgeEndpointState).hostIf, container: (endpoint.state as BridgeEndpointState).containerIf };
    return {
      id: endpoint.id,
      network: endpoint.networkId,
      ...(networkName ? { networkName } : {}),
      ...(container ? { container } : {}),
      addresses: [endpoint.address, endpoint.addressIPv6].filter((a): a is string => a !== undefined),
      mac: endpoint.mac,
      links,
      ports: this.networks.publishedPorts(endpoint).map((p) => formatPortSpec({ ...p.binding, hostIp: p.hostIp, hostPort: p.hostPort, hostPortEnd: p.hostPort })),
      ...(endpoint.sandboxKey ? { sandbox: endpoint.sandboxKey } : {}),
      ...this.leaseOf(endpoint),
    };
  }

  private leaseOf(endpoint: EndpointRecord): { lease?: LeaseView } {
    const lease = endpoint.address ? this.ipam.dhcpLease(endpoint.address.split('/')[0]!) : undefined;
    if (!lease) return {};
    const at = (ms: number) => new Date(ms).toISOString();
    const times = deadlines(lease);
    return {
      lease: {
        server: lease.server,
        routers: lease.routers,
        granted: at(lease.grantedAt),
        renew: at(times.renew),
        rebind: at(times.rebind),
        expires: at(times.expire),
        state: lease.expired ? 'expired' : 'bound',
        ...(lease.hostname ? { hostname: lease.hostname } : {}),
      },
    };
  }

  /** 'gateway' or 'aux address NAME' when the network reserves the address for that. */
  private reservation(address: string, network: NetworkRecord): string | undefined {
    for (const subnet of [...network.ipv4, ...network.ipv6Subnets]) {
      if (subnet.gateway === address) return 'gateway';
      const aux = Object.entries(subnet.aux).find(([, ip]) => ip === address);
      if (aux) return `aux address ${aux[0]}`;
    }
    return undefined;
  }

  /** What an address of the network is used for: gateway, aux address, a container, or nothing tsnet knows. */
  private useOf(address: string, network: NetworkRecord | undefined): string {
    if (!network) return 'held for no network';
    const reserved = this.reservation(address, network);
    if (reserved) return reserved;
    const endpoint = this.networks.listEndpoints().find((e) => e.networkId === network.id && [e.address, e.addressIPv6].some((a) => a && plain(a) === address));
    if (!endpoint) return 'held for no endpoint';
    const container = this.names.containerOfEndpoint(endpoint.id);
    return `endpoint ${endpoint.id.slice(0, 12)}${container ? ` (${container})` : ''}`;
  }

  private poolView(pool: PoolRecord, network: NetworkRecord | undefined): PoolView {
    const range = pool.subPool ?? pool.pool;
    return {
      id: pool.id,
      pool: pool.pool,
      ...(pool.subPool ? { range: pool.subPool } : {}),
      size: String(cidrSize(parseCidr(range)!.cidr)),
      held: this.ipam.addressesOf(pool.id).map((a) => ({ address: a.address, use: this.useOf(a.address, network) })),
    };
  }

  private networkOfSubnet(pool: string): NetworkRecord | undefined {
    return this.networks.listNetworks().find((n) => [...n.ipv4, ...n.ipv6Subnets].some((s) => canonicalCidr(s.pool) === canonicalCidr(pool)));
  }

  private inspectAddress(address: string): Inspected {
    const endpoint = this.networks.listEndpoints().find((e) => [e.address, e.addressIPv6].some((a) => a && plain(a) === address));
    if (endpoint) return { type: 'endpoint', endpoint: this.endpointView(endpoint) };
    const reservedBy = this.networks.listNetworks().find((n) => this.reservation(address, n) !== undefined);
    const pool = this.ipam.list().find((p) => this.ipam.addressesOf(p.id).some((a) => a.address === address));
    const network = reservedBy ?? (pool && this.networkOfSubnet(pool.pool));
    if (!network && !pool) throw new RequestError('query', `no tsnet network, endpoint or IPAM pool holds the address ${address}`);
    const networkName = network && this.names.networkName(network.id);
    return {
      type: 'address',
      address: {
        address,
        use: this.useOf(address, network),
        ...(network ? { network: network.id } : {}),
        ...(networkName ? { networkName } : {}),
        ...(pool ? { pool: pool.pool } : {}),
      },
    };
  }
}
