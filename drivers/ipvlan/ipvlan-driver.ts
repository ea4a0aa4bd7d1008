import { drift, type Drift } from '../../src/sys/index.js';
import type { DriftView, OtherNetworks } from '../driver.js';
import type { EndpointRecord, JoinInfo, NetworkRecord, NetworkSpec } from '../model.js';
import type { ParentLinks } from '../parent/parent-config.js';
import { type ParentEndpointState, ParentLinkDriver } from '../parent/parent-link-driver.js';
import type { ParentName } from '../parent/parent-name.js';
import { IPVLAN_OPTIONS, type IpvlanConfig, isRouted, parseIpvlanConfig } from './options.js';
import { PeerRoutes } from './peer-routes.js';

type IpvlanNetwork = NetworkRecord<IpvlanConfig>;
type IpvlanEndpoint = EndpointRecord<ParentEndpointState>;

/**
 * ipvlan networks: one ipvlan link per endpoint on the parent, all with the
 * parent's MAC, so a switch port or a cloud that allows one MAC carries them.
 * l2 puts the containers on the wire as macvlan does; l3 and l3s route them
 * through the host with no ARP or broadcast on the wire, and with
 * tsnet.routes the hosts of a shared pool route to each other's containers.
 */
export class IpvlanDriver extends ParentLinkDriver<IpvlanConfig> {
  readonly kind = 'ipvlan' as const;
  readonly optionKeys = Object.values(IPVLAN_OPTIONS);

  protected parseConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): IpvlanConfig {
    return parseIpvlanConfig(spec, others, parent, links, this.segments());
  }

  /** The shim and the endpoints alike: an ipvlan link takes no MAC of its own. */
  protected childLine(network: IpvlanNetwork, name: string): string[] {
    const { parent, mtu, mode, flag } = network.config;
    return ['link', 'add', name, 'link', parent, ...(mtu ? ['mtu', String(mtu)] : []), 'type', 'ipvlan', 'mode', mode, flag];
  }

  sharedMac(network: IpvlanNetwork): string {
    return network.config.parentMac ?? '';
  }

  override async createNetwork(network: IpvlanNetwork, others: OtherNetworks): Promise<void> {
    await super.createNetwork(network, others);
    try {
      await this.followPeers(network);
    } catch (error) {
      await this.deleteNetwork(network, others).catch(() => undefined);
      throw error;
    }
  }

  override async deleteNetwork(network: IpvlanNetwork, others: OtherNetworks): Promise<void> {
    if (network.config.routes) {
      await this.segments()?.unfollow(network.id);
      const routes = new PeerRoutes(this.ip, network.config.parent, network.ipv4[0]!.pool);
      await routes.adoptKernel();
      await routes.set([]);
    }
    await super.deleteNetwork(network, others);
  }

  override async restore(network: IpvlanNetwork, endpoints: readonly IpvlanEndpoint[], found?: readonly Drift[]): Promise<void> {
    await super.restore(network, endpoints, found);
    await this.followPeers(network);
  }

  /** With tsnet.routes: the routes the kernel holds are adopted (a restart, a repair), then kept equal to the store's. */
  private async followPeers(network: IpvlanNetwork): Promise<void> {
    const { routes, parent } = network.config;
    if (!routes) return;
    const table = new PeerRoutes(this.ip, parent, network.ipv4[0]!.pool);
    await table.adoptKernel();
    await this.segments()?.follow(network.id, routes.pool, table);
  }

  /**
   * l3/l3s: no gateway to ARP for; the default route is the interface itself
   * (a CONNECTED route, as Docker's ipvlan answers), and dockerd is told not
   * to add a gateway network of its own. An internal network gets neither.
   */
  override join(network: IpvlanNetwork, endpoint: IpvlanEndpoint): JoinInfo {
    if (!isRouted(network.config) || network.internal) return super.join(network, endpoint);
    return {
      srcName: endpoint.state.link,
      staticRoutes: [{ destination: '0.0.0.0/0', routeType: 1 }, ...(network.ipv6 ? [{ destination: '::/0', routeType: 1 as const }] : [])],
      disableGatewayService: true,
    };
  }

  /** Besides the parent's pieces: a peer route the store asks for and the kernel lacks (its next hop is not compared). */
  override drift(network: IpvlanNetwork, endpoints: readonly IpvlanEndpoint[], view: DriftView): Drift[] {
    const wanted = network.config.routes ? this.segments()?.wanted(network.id) : undefined;
    const parent = network.config.parent;
    const missing = (wanted ?? []).filter((peer) => !view.kernel.routes.has(`${peer.ip} dev ${parent}`));
    return [...super.drift(network, endpoints, view), ...missing.map((peer) => drift(network.id, 'route', 'missing', `${peer.ip} via ${peer.host} dev ${parent}`))];
  }
}
