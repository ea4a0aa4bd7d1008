import { RequestError } from '../../src/errors.js';
import type { Segments } from '../../src/overlay/segments.js';
import { addressAnswers, CommandError, type Drift, drift, type Ip, type Runner } from '../../src/sys/index.js';
import type { Driver, DriftView, OtherNetworks } from '../driver.js';
import type { EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, NetworkSpec } from '../model.js';
import { macvlanName } from '../names.js';
import { type GoneEndpoints, lostSandbox, SandboxFiles, sortGone } from '../sandbox.js';
import { OptionReader } from '../option-values.js';
import { refuseSegmentPool } from '../segment-pool.js';
import { HostShim } from './host-shim.js';
import { MACVLAN_OPTIONS, type MacvlanConfig, macvlanNetworks, parseMacvlanConfig } from './options.js';
import { parseParentName } from './parent.js';
import { SharedParent } from './shared-parent.js';

export interface MacvlanEndpointState {
  /** The macvlan link, named after the endpoint until dockerd moves it into the sandbox. */
  link: string;
}

type MacvlanNetwork = NetworkRecord<MacvlanConfig>;
type MacvlanEndpoint = EndpointRecord<MacvlanEndpointState>;

/**
 * macvlan networks: one macvlan link per endpoint on a parent interface
 * (optionally an 802.1Q subinterface tsnet creates), with an optional
 * promiscuous parent and a host shim. No NAT: containers sit on the parent's LAN.
 */
export class MacvlanDriver implements Driver<MacvlanConfig, MacvlanEndpointState> {
  readonly kind = 'macvlan' as const;
  readonly optionKeys = Object.values(MACVLAN_OPTIONS);
  private readonly shared: SharedParent;
  private readonly shim: HostShim;

  constructor(
    private readonly ip: Ip,
    /** For the ARP probe (tsnet.arp_probe), which `ip` cannot do. */
    private readonly runner: Runner,
    /** The cluster's overlay segments (--cluster-store): a macvlan network on a segment's pool is refused. */
    private readonly segments: () => Segments | undefined = () => undefined,
    private readonly sandboxes = new SandboxFiles(),
  ) {
    this.shared = new SharedParent(ip);
    this.shim = new HostShim(ip);
  }

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<MacvlanConfig> {
    // Syntax first, so a malformed name never reaches ip(8).
    const parent = parseParentName(new OptionReader(spec.options), MACVLAN_OPTIONS.parent, MACVLAN_OPTIONS.vlan);
    const [parentLink, baseLink] = await Promise.all([this.ip.link(parent.name), parent.vlan ? this.ip.link(parent.vlan.base) : undefined]);
    const config = parseMacvlanConfig(spec, others, parent, { parent: parentLink, base: baseLink });
    await refuseSegmentPool(this.segments(), spec);
    return config;
  }

  async createNetwork(network: MacvlanNetwork, others: OtherNetworks): Promise<void> {
    try {
      await this.shared.acquire(network);
      await this.shim.ensure(network, []);
    } catch (error) {
      await this.deleteNetwork(network, others).catch(() => undefined);
      throw error;
    }
  }

  async deleteNetwork(network: MacvlanNetwork, others: OtherNetworks): Promise<void> {
    await this.shim.remove(network);
    await this.shared.release(network, () => macvlanNetworks(others()));
  }

  async createEndpoint(network: MacvlanNetwork, endpoint: EndpointSpec): Promise<MacvlanEndpointState> {
    const { parent, mode, mtu, hostShim } = network.config;
    // Only another IPAM (Docker's own) can hand out the shim's address; tsnet's skips it.
    if (hostShim && endpoint.address?.split('/')[0] === hostShim.address) {
      throw new RequestError('Address', `${hostShim.address} is the host shim's address (tsnet.host_shim): make it an --aux-address, or keep it out of the --ip-range`);
    }
    const link = macvlanName(endpoint.id);
    // The MAC core chose (or dockerd sent) goes on the link, so the kernel and dockerd agree on it.
    const add = ['link', 'add', link, 'link', parent, 'address', endpoint.mac, ...(mtu ? ['mtu', String(mtu)] : []), 'type', 'macvlan', 'mode', mode];
    try {
      await this.ip.batch([add]);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      if (/Cannot find device/.test(error.stderr)) throw new RequestError(MACVLAN_OPTIONS.parent, `parent interface ${parent} is gone`);
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

  private async routeThroughShim(network: MacvlanNetwork, route: string[]): Promise<void> {
    try {
      await this.ip.batch([route]);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      throw new RequestError(MACVLAN_OPTIONS.hostShim, `cannot route ${route[2]} through the host shim ${network.config.hostShim!.name}: ${error.stderr.trim()}`);
    }
  }

  /** With tsnet.arp_probe=on: a printer or DHCP client on the LAN that holds the address answers the probe on the parent. */
  async addressInUse(network: MacvlanNetwork, address: string): Promise<boolean> {
    if (network.config.arpProbe !== true) return false;
    try {
      return await addressAnswers(this.runner, network.config.parent, address);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      throw new RequestError(MACVLAN_OPTIONS.arpProbe, `could not probe ${address} on ${network.config.parent}, so it was not handed out: ${error.message}`);
    }
  }

  hostAddresses(network: MacvlanNetwork): string[] {
    return network.config.hostShim ? [network.config.hostShim.address] : [];
  }

  borrowedLinks(network: MacvlanNetwork): string[] {
    return [network.config.parent, ...(network.config.vlan ? [network.config.vlan.base] : [])];
  }

  async deleteEndpoint(network: MacvlanNetwork, endpoint: MacvlanEndpoint): Promise<void> {
    await this.shim.removeRoute(network, endpoint);
    // Usually back in the host netns by now (dockerd returns a sandbox's links); gone with the sandbox otherwise.
    await this.ip.deleteLinks([endpoint.state.link]);
  }

  join(network: MacvlanNetwork, endpoint: MacvlanEndpoint): JoinInfo {
    if (network.internal) return { srcName: endpoint.state.link, disableGatewayService: true };
    const v4 = network.ipv4[0];
    const v6 = network.ipv6 ? network.ipv6Subnets[0] : undefined;
    return {
      srcName: endpoint.state.link,
      ...(v4?.gateway ? { gateway: v4.gateway } : {}),
      ...(v6?.gateway ? { gatewayIPv6: v6.gateway } : {}),
    };
  }

  /** Published ports mean nothing on macvlan (Docker only warns): containers have LAN addresses. */
  async programExternalConnectivity(_network: MacvlanNetwork, endpoint: MacvlanEndpoint): Promise<MacvlanEndpointState> {
    return endpoint.state;
  }

  async revokeExternalConnectivity(_network: MacvlanNetwork, endpoint: MacvlanEndpoint): Promise<MacvlanEndpointState> {
    return endpoint.state;
  }

  ownedLinks(network: MacvlanNetwork, endpoints: readonly MacvlanEndpoint[]): string[] {
    return [...(network.config.hostShim ? [network.config.hostShim.name] : []), ...endpoints.map((e) => e.state.link)];
  }

  /** Gone: its sandbox is gone (the link came back to the host netns, or died with it); not joined yet, its link vanished. */
  async goneEndpoints(endpoints: readonly MacvlanEndpoint[]): Promise<GoneEndpoints<MacvlanEndpoint>> {
    if (endpoints.length === 0) return { certain: [], unsure: [] };
    const links = await this.ip.linkNames();
    return sortGone(endpoints, (e) => (e.sandboxKey ? lostSandbox(e, e.state.link, links, this.sandboxes) : links.has(e.state.link) ? undefined : 'certain'));
  }

  /** After a reboot, a crash, or someone else's change: the subinterface, the PROMISC holds, the shim and its routes. */
  async restore(network: MacvlanNetwork, endpoints: readonly MacvlanEndpoint[]): Promise<void> {
    await this.shared.acquire(network);
    await this.shim.ensure(network, endpoints);
  }

  drift(network: MacvlanNetwork, endpoints: readonly MacvlanEndpoint[], { kernel }: DriftView): Drift[] {
    const { parent, vlan, promisc } = network.config;
    return [
      ...(vlan?.created && !kernel.links.has(parent) ? [drift(network.id, 'link', 'missing', `${parent} (VLAN ${vlan.id} on ${vlan.base})`)] : []),
      ...promisc.filter((hold) => kernel.links.get(hold.iface)?.flags.includes('PROMISC') === false).map((hold) => drift(network.id, 'promisc', 'missing', `promisc on ${hold.iface}`)),
      ...this.shim.drift(network, endpoints, kernel),
    ];
  }

  /** macvlan networks have no rules; their links go with removeLeftoverLinks. */
  async removeLeftovers(): Promise<string[]> {
    return [];
  }
}
