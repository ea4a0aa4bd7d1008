import type { Drift, KernelView, RuleSnapshot } from '../src/sys/index.js';
import type { DriverKind, EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, NetworkSpec, PortBinding, PublishedPort } from './model.js';
import type { GoneEndpoints } from './sandbox.js';

/**
 * The other networks (stored or being created), read when called: a driver
 * that shares kernel objects between networks (a macvlan parent) reads it
 * under its own lock for those objects, so it sees a network that came or
 * went meanwhile.
 */
export type OtherNetworks = () => readonly NetworkRecord[];

/** The kernel as one check of every network saw it: links, addresses, routes, and tsnet's rules. */
export interface DriftView {
  kernel: KernelView;
  rules: RuleSnapshot;
}

/**
 * What every network kind implements. Core validates the common fields,
 * then calls `prepareNetwork` (which refuses bad options and changes
 * nothing), and only then the methods that program the kernel.
 */
export interface Driver<C = unknown, S = unknown> {
  readonly kind: DriverKind;
  /** The -o keys this driver understands (core refuses unknown tsnet.* keys). */
  readonly optionKeys: readonly string[];

  /**
   * Parses and checks the driver's options against the kernel and the other
   * networks. Runs in core's short cross-network section: only reads of the
   * network's own links here, no kernel writes.
   */
  prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<C>;
  /** Runs concurrently with work on other networks. */
  createNetwork(network: NetworkRecord<C>, others: OtherNetworks): Promise<void>;
  /** Idempotent: what is already gone is success. */
  deleteNetwork(network: NetworkRecord<C>, others: OtherNetworks): Promise<void>;

  createEndpoint(network: NetworkRecord<C>, endpoint: EndpointSpec): Promise<S>;
  deleteEndpoint(network: NetworkRecord<C>, endpoint: EndpointRecord<S>): Promise<void>;
  join(network: NetworkRecord<C>, endpoint: EndpointRecord<S>): JoinInfo;

  /** Published ports and outbound access for the sandbox's gateway endpoint; returns the new state. */
  programExternalConnectivity(network: NetworkRecord<C>, endpoint: EndpointRecord<S>): Promise<S>;
  revokeExternalConnectivity(network: NetworkRecord<C>, endpoint: EndpointRecord<S>): Promise<S>;

  /** The endpoint's -p bindings with the host ports they got. Absent (as changePorts): the kind publishes no ports. */
  publishedPorts?(endpoint: EndpointRecord<S>): readonly PublishedPort[];
  /** `tsnet port add/rm` on a live endpoint: its -p list becomes `bindings`; returns the new state. */
  changePorts?(network: NetworkRecord<C>, endpoint: EndpointRecord<S>, bindings: readonly PortBinding[]): Promise<S>;

  /**
   * The endpoints whose container went away while tsnet was not there to
   * hear DeleteEndpoint: their kernel side (veth, sandbox) is gone, for
   * certain or as far as a look can tell (see lostSandbox). One call may
   * span the endpoints of many networks of the kind (start-up asks once).
   */
  goneEndpoints(endpoints: readonly EndpointRecord<S>[]): Promise<GoneEndpoints<EndpointRecord<S>>>;

  /**
   * Where the network's DHCP server is heard (`--ipam-opt tsnet.dhcp=on`):
   * the link a probe with a container's MAC hangs on, and how long a server
   * may take. Absent: the kind has no wire of its own to ask on.
   */
  dhcpWire?(network: NetworkRecord<C>): { parent: string; timeoutMs: number; holdMs: number };

  /**
   * The MAC the kernel gives every endpoint of the network, which no request
   * can change (ipvlan children have their parent's); '' when not known.
   * Absent: core picks each endpoint's MAC, or takes dockerd's, and the
   * driver puts it on the link.
   */
  sharedMac?(network: NetworkRecord<C>): string;

  /** The links of the host netns with generated names (names.ts) that the network and its endpoints own. */
  ownedLinks(network: NetworkRecord<C>, endpoints: readonly EndpointRecord<S>[]): string[];

  /**
   * The host's own IPv4 addresses on the network (a bridge's gateway, a
   * macvlan's host shim): where it serves the network's containers, e.g. DNS.
   */
  hostAddresses(network: NetworkRecord<C>): string[];

  /**
   * Links of the host the network depends on whose names tsnet did not
   * generate (a macvlan parent, its VLAN base): the drift watcher looks when
   * someone else changes them. Absent: none.
   */
  borrowedLinks?(network: NetworkRecord<C>): string[];

  /**
   * Whether a device outside tsnet already answers for `address` (a plain
   * IP) on the network's wire; absent, or false: the kind does not look.
   */
  addressInUse?(network: NetworkRecord<C>, address: string): Promise<boolean>;

  /**
   * Makes the kernel match the stored network again: at start-up (after a
   * reboot or a crash) and whenever drift() finds a difference, given as
   * `found` (a driver may then restore only what it touches). Idempotent.
   */
  restore(network: NetworkRecord<C>, endpoints: readonly EndpointRecord<S>[], found?: readonly Drift[]): Promise<void>;

  /**
   * How `view` differs from what the network and its live endpoints need in
   * the kernel; none when in sync. Pure. An endpoint whose kernel side is
   * gone with its container is not drift (its DeleteEndpoint is coming, or
   * start-up drops it).
   */
  drift(network: NetworkRecord<C>, endpoints: readonly EndpointRecord<S>[], view: DriftView): Drift[];

  /**
   * Start-up, once for all networks of the kind: removes what a crash left
   * of networks without a record beyond their links (rules, set elements);
   * returns what went, in words for the log.
   */
  removeLeftovers(networks: readonly NetworkRecord<C>[]): Promise<string[]>;
}
