import type { Drift } from './drift.js';

/**
 * What drivers ask of the packet filter, in their own terms: a network with
 * its isolation and NAT wishes, and its port forwards. The backend that turns
 * this into rules is chosen by the daemon (--firewall: ./nftables/ or
 * ./iptables/); drivers never see rules, tables or commands.
 */

export type Family = 4 | 6;
export type TransportProtocol = 'tcp' | 'udp' | 'sctp';

/** How traffic from a network's subnet leaving through another interface gets its source address. */
export type OutboundNat = { kind: 'masquerade' } | { kind: 'snat'; source: string };

export interface FirewallNetwork {
  id: string;
  bridge: string;
  /** The network's subnet (CIDR) per family; a family without one gets no rules. */
  subnets: Partial<Record<Family, string>>;
  /** No way out and none in: no forwarding past the bridge, no NAT, no ports. */
  internal: boolean;
  /** Inter-container traffic on the bridge. */
  icc: boolean;
  /** false: the network exchanges traffic with the other non-isolated tsnet networks. */
  isolate: boolean;
  /**
   * The host's IPv4 address on the bridge where it answers DNS (port 53) for
   * this network alone: let in from the bridge and the host itself, kept
   * from everywhere else (other networks would learn this one's names).
   */
  dnsServer?: string;
  /** Per family; a missing family leaves the source address as it is. */
  outboundNat: Partial<Record<Family, OutboundNat>>;
  /**
   * The bridge's route_localnet before tsnet turned it on (ports published
   * on 127.0.0.1 need it): an adopted bridge gets it back at teardown.
   */
  routeLocalnetBefore: boolean;
  /**
   * The bridge's interface group before tsnet (the nftables backend puts its
   * bridges into a group of its own, see ./nftables/): an adopted bridge gets
   * it back at teardown. Absent for a bridge tsnet made, which is deleted.
   */
  groupBefore?: string;
}

/** One published port: hostIp:hostPort on the host reaches containerIp:containerPort. */
export interface PortForward {
  family: Family;
  proto: TransportProtocol;
  /** undefined: every local address of the family. */
  hostIp?: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

/** The port forwards of a network's endpoints, by endpoint ID. */
export type EndpointForwards = ReadonlyMap<string, readonly PortForward[]>;

export interface Firewall {
  /** Creates or replaces everything of the network (isolation, NAT, its endpoints' forwards) in one transaction per family. */
  setupNetwork(network: FirewallNetwork, forwards: EndpointForwards): Promise<void>;
  /**
   * Makes `forwards` the endpoint's port forwards (none: revoked), in one
   * transaction (per family with iptables) that writes only what changed for
   * this endpoint: the cost does not depend on the other endpoints' ports.
   */
  setPortForwards(network: FirewallNetwork, endpointId: string, forwards: readonly PortForward[]): Promise<void>;
  /**
   * The bridges of Docker's own networks (another manager's): no tsnet
   * network opens a connection into them, as Docker's networks open none
   * into each other; replies to connections they opened pass. Replaces the
   * list it had; kept for networks set up later.
   */
  setDockerBridges(names: readonly string[]): Promise<void>;
  /** Removes whatever of the network's rules exists. */
  teardownNetwork(network: FirewallNetwork): Promise<void>;

  /** Reads what the kernel holds of tsnet's rules: once for a check of every network. */
  snapshot(): Promise<RuleSnapshot>;
  /**
   * How `snapshot` differs from what the network needs with these forwards,
   * the shared pieces it relies on included (so each network that needs a
   * flushed hook reports it). Pure: no I/O.
   */
  drift(snapshot: RuleSnapshot, network: FirewallNetwork, forwards: EndpointForwards): Drift[];
  /**
   * Forgets what the backend believes the kernel holds (someone else changed
   * it): the next setupNetwork reads the kernel again and writes it whole.
   */
  forgetKernel(): void;
  /**
   * Start-up: removes the rules of networks tsnet has no record of (left by a
   * crash between a rule change and its commit); returns what went. Only what
   * tsnet's own names and comments mark as its own is touched.
   */
  removeUnknown(known: readonly FirewallNetwork[]): Promise<string[]>;
}

/** What a backend read of the kernel's rules; only that backend looks inside. */
export interface RuleSnapshot {
  readonly backend: 'iptables' | 'nftables';
}
