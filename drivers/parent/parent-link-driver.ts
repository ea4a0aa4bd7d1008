import { RequestError } from '../../src/errors.js';
import type { Segments } from '../../src/overlay/segments.js';
import { addressAnswers, CommandError, type Drift, drift, type Ip, type Runner } from '../../src/sys/index.js';
import type { Driver, DriftView, OtherNetworks } from '../driver.js';
import type { EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, NetworkSpec } from '../model.js';
import { childLinkName } from '../names.js';
import { OptionReader } from '../option-values.js';
import { type GoneEndpoints, lostSandbox, SandboxFiles, sortGone } from '../sandbox.js';
import { refuseSegmentPool } from '../segment-pool.js';
import { HostShim } from './host-shim.js';
import { type ParentConfig, type ParentKind, type ParentLinks, PARENT_OPTIONS, parentNetworks } from './parent-config.js';
import { type ParentName, parseParentName } from './parent-name.js';
import type { SharedParent } from './shared-parent.js';

export interface ParentEndpointState {
  /** The child link, named after the endpoint until dockerd moves it into the sandbox. */
  link: string;
}

/** What a parent-link driver is built on; `shared` is one for both kinds, which share parents' VLANs and PROMISC holds. */
export interface ParentDriverParts {
  ip: Ip;
  /** For the ARP probe (tsnet.arp_probe), which `ip` cannot do. */
  runner: Runner;
  shared: SharedParent;
  /** The cluster's overlay segments (--cluster-store): a network on a segment's pool is refused. */
  segments?: () => Segments | undefined;
  sandboxes?: SandboxFiles;
}

type Network<C> = NetworkRecord<C>;
type Endpoint = EndpointRecord<ParentEndpointState>;

/**
 * Networks whose endpoints are child links of a parent interface (optionally
 * an 802.1Q subinterface tsnet creates), with an optional promiscuous
 * parent and a host shim. No NAT: containers sit on the parent's wire.
 * macvlan and ipvlan differ only in the child link, the modes they check
 * and what Join answers, which each kind's driver supplies.
 */
export abstract class ParentLinkDriver<C extends ParentConfig> implements Driver<C, ParentEndpointState> {
  abstract readonly kind: ParentKind;
  abstract readonly optionKeys: readonly string[];
  protected readonly ip: Ip;
  private readonly runner: Runner;
  private readonly shared: SharedParent;
  protected readonly segments: () => Segments | undefined;
  private readonly sandboxes: SandboxFiles;
  private readonly shim: HostShim;

  constructor(parts: ParentDriverParts) {
    this.ip = parts.ip;
    this.runner = parts.runner;
    this.shared = parts.shared;
    this.segments = parts.segments ?? (() => undefined);
    this.sandboxes = parts.sandboxes ?? new SandboxFiles();
    this.shim = new HostShim(parts.ip, (network, name) => this.childLine(network as Network<C>, name, undefined));
  }

  /** Checks the kind's own options (modes) with the shared ones; changes nothing. */
  protected abstract parseConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): C;

  /** The `ip link add` words of a child link `name` on the network's parent: an endpoint's (with its MAC, where the kind takes one) or the host shim's. */
  protected abstract childLine(network: Network<C>, name: string, endpoint: EndpointSpec | undefined): string[];

  /** The gateway on the wire becomes the container's default route; an internal network has none. */
  join(network: Network<C>, endpoint: Endpoint): JoinInfo {
    if (network.internal) return { srcName: endpoint.state.link, disableGatewayService: true };
    const v4 = network.ipv4[0];
    const v6 = network.ipv6 ? network.ipv6Subnets[0] : undefined;
    return {
      srcName: endpoint.state.link,
      ...(v4?.gateway ? { gateway: v4.gateway } : {}),
      ...(v6?.gateway ? { gatewayIPv6: v6.gateway } : {}),
    };
  }

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<C> {
    // Syntax first, so a malformed name never reaches ip(8).
    const parent = parseParentName(new OptionReader(spec.options), PARENT_OPTIONS.parent, PARENT_OPTIONS.vlan, this.kind);
    const [parentLink, baseLink] = await Promise.all([this.ip.link(parent.name), parent.vlan ? this.ip.link(parent.vlan.base) : undefined]);
    const config = this.parseConfig(spec, others, parent, { parent: parentLink, base: baseLink });
    await refuseSegmentPool(this.segments(), spec);
    return config;
  }

  async createNetwork(network: Network<C>, others: OtherNetworks): Promise<void> {
    try {
      await this.shared.acquire(network);
      await this.shim.ensure(network, []);
    } catch (error) {
      await this.deleteNetwork(network, others).catch(() => undefined);
      throw error;
    }
  }

  async deleteNetwork(network: Network<C>, others: OtherNetworks): Promise<void> {
    await this.shim.remove(network);
    await this.shared.release(network, () => parentNetworks(others()));
  }

  async createEndpoint(network: Network<C>, endpoint: EndpointSpec): Promise<ParentEndpointState> {
    const { parent, hostShim } = network.config;
    // Only another IPAM (Docker's own) can hand out the shim's address; tsnet's skips it.
    if (hostShim && endpoint.address?.split('/')[0] === hostShim.address) {
      throw new RequestError('Address', `${hostShim.address} is the host shim's address (tsnet.host_shim): make it an --aux-address, or keep it out of the --ip-range`);
    }
    const link = childLinkName(endpoint.id);
    const add = this.childLine(network, link, endpoint);
    try {
      await this.ip.batch([add]);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      if (/Cannot find device/.test(error.stderr)) throw new RequestError(PARENT_OPTIONS.parent, `parent interface ${parent} is gone`);
      // A link left over by a crashed attempt of this very endpoint: replace it.
      if (!/File exists/.test(error.stderr)) throw error;
      await this.ip.deleteLinks([link]);
      await this.ip.batch([add]);
    }
    const route = this.shim.routeLine(network, endpoint);
    if (route) {
      try {
        await this.routeThroughShim(network, route);
      } catch (error) {
        await this.ip.deleteLinks([link]);
        throw error;
      }
    }
    return { link };
  }

  private async routeThroughShim(network: Network<C>, route: string[]): Promise<void> {
    try {
      await this.ip.batch([route]);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      throw new RequestError(PARENT_OPTIONS.hostShim, `cannot route ${route[2]} through the host shim ${network.config.hostShim!.name}: ${error.stderr.trim()}`);
    }
  }

  /** With tsnet.arp_probe=on: a printer or DHCP client on the LAN that holds the address answers the probe on the parent. */
  async addressInUse(network: Network<C>, address: string): Promise<boolean> {
    if (network.config.arpProbe !== true) return false;
    try {
      return await addressAnswers(this.runner, network.config.parent, address);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      throw new RequestError(PARENT_OPTIONS.arpProbe, `could not probe ${address} on ${network.config.parent}, so it was not handed out: ${error.message}`);
    }
  }

  hostAddresses(network: Network<C>): string[] {
    return network.config.hostShim ? [network.config.hostShim.address] : [];
  }

  borrowedLinks(network: Network<C>): string[] {
    return [network.config.parent, ...(network.config.vlan ? [network.config.vlan.base] : [])];
  }

  async deleteEndpoint(network: Network<C>, endpoint: Endpoint): Promise<void> {
    await this.shim.removeRoute(network, endpoint);
    // Usually back in the host netns by now (dockerd returns a sandbox's links); gone with the sandbox otherwise.
    await this.ip.deleteLinks([endpoint.state.link]);
  }

  /** Published ports mean nothing here (Docker only warns): containers have addresses of the wire. */
  async programExternalConnectivity(_network: Network<C>, endpoint: Endpoint): Promise<ParentEndpointState> {
    return endpoint.state;
  }

  async revokeExternalConnectivity(_network: Network<C>, endpoint: Endpoint): Promise<ParentEndpointState> {
    return endpoint.state;
  }

  ownedLinks(network: Network<C>, endpoints: readonly Endpoint[]): string[] {
    return [...(network.config.hostShim ? [network.config.hostShim.name] : []), ...endpoints.map((e) => e.state.link)];
  }

  /** Gone: its sandbox is gone (the link came back to the host netns, or died with it); not joined yet, its link vanished. */
  async goneEndpoints(endpoints: readonly Endpoint[]): Promise<GoneEndpoints<Endpoint>> {
    if (endpoints.length === 0) return { certain: [], unsure: [] };
    const links = await this.ip.linkNames();
    return sortGone(endpoints, (e) => (e.sandboxKey ? lostSandbox(e, e.state.link, links, this.sandboxes) : links.has(e.state.link) ? undefined : 'certain'));
  }

  /** After a reboot, a crash, or someone else's change: the subinterface, the PROMISC holds, the shim and its routes. */
  async restore(network: Network<C>, endpoints: readonly Endpoint[], _found?: readonly Drift[]): Promise<void> {
    await this.shared.acquire(network);
    await this.shim.ensure(network, endpoints);
  }

  drift(network: Network<C>, endpoints: readonly Endpoint[], { kernel }: DriftView): Drift[] {
    const { parent, vlan, promisc } = network.config;
    return [
      ...(vlan?.created && !kernel.links.has(parent) ? [drift(network.id, 'link', 'missing', `${parent} (VLAN ${vlan.id} on ${vlan.base})`)] : []),
      ...promisc.filter((hold) => kernel.links.get(hold.iface)?.flags.includes('PROMISC') === false).map((hold) => drift(network.id, 'promisc', 'missing', `promisc on ${hold.iface}`)),
      ...this.shim.drift(network, endpoints, kernel),
    ];
  }

  /** These networks have no rules; their links go with removeLeftoverLinks. */
  async removeLeftovers(): Promise<string[]> {
    return [];
  }
}
