/** The records tsnet persists for networks and endpoints, shared by core and drivers. */

export type DriverKind = 'bridge' | 'macvlan' | 'ipvlan';

/** One subnet of a network as the IPAM gave it: the pool, its gateway and aux addresses (plain IPs). */
export interface SubnetRecord {
  pool: string;
  gateway?: string;
  /** The user chose the gateway (--gateway), as tsnet's IPAM saw it; absent: the IPAM picked it, or another IPAM gave it. */
  gatewayChosen?: true;
  aux: Record<string, string>;
}

/** Everything about a network that does not depend on its kind. */
export interface NetworkSpec {
  id: string;
  internal: boolean;
  ipv6: boolean;
  ipv4: SubnetRecord[];
  ipv6Subnets: SubnetRecord[];
  /** com.docker.network.driver.mtu; undefined = the driver's default. */
  mtu?: number;
  /** com.docker.network.container_iface_prefix, default eth. */
  ifacePrefix: string;
  /** tsnet.dns (default on): the host answers DNS for the network on its own address in it. */
  dns: boolean;
  /** The user's -o options verbatim, kept for inspection. */
  options: Record<string, string>;
}

export interface NetworkRecord<C = unknown> extends NetworkSpec {
  kind: DriverKind;
  /** The driver's parsed options and the names it generated. */
  config: C;
}

export type Protocol = 'tcp' | 'udp' | 'sctp';

/** The endpoint option that carries dockerd's -p list (CreateEndpoint, Join, ProgramExternalConnectivity). */
export const PORTMAP = 'com.docker.network.portmap';

/**
 * One -p mapping as dockerd sends it: one container port, published on one
 * host port picked from [hostPort, hostPortEnd] (0 = any free port).
 */
export interface PortBinding {
  proto: Protocol;
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
  port: number;
}

/** A -p binding with its host port chosen; kept in the endpoint's state so the port stays the same. */
export interface PublishedPort {
  binding: PortBinding;
  /** The address it is published on: '' every address of both families, 0.0.0.0 or :: every address of one. */
  hostIp: string;
  hostPort: number;
}

/** What an endpoint is before a driver builds it. */
export interface EndpointSpec {
  id: string;
  networkId: string;
  /** CIDR strings as the IPAM gave them; undefined when absent. */
  address?: string;
  addressIPv6?: string;
  mac: string;
  portBindings: PortBinding[];
}

export interface EndpointRecord<S = unknown> extends EndpointSpec {
  /** The driver's own state: link names, published ports. */
  state: S;
  /** The container's network namespace (Join's SandboxKey): it outlives tsnet, so it tells a live endpoint from a stale one. */
  sandboxKey?: string;
}

/** What Join answers, independent of the wire format. */
export interface JoinInfo {
  srcName: string;
  gateway?: string;
  gatewayIPv6?: string;
  staticRoutes?: Array<{ destination: string; routeType: 0 | 1; nextHop?: string }>;
  disableGatewayService?: boolean;
}
