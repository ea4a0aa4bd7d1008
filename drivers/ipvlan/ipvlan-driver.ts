import type { EndpointRecord, JoinInfo, NetworkRecord, NetworkSpec } from '../model.js';
import type { ParentLinks } from '../parent/parent-config.js';
import { type ParentEndpointState, ParentLinkDriver } from '../parent/parent-link-driver.js';
import type { ParentName } from '../parent/parent-name.js';
import { IPVLAN_OPTIONS, type IpvlanConfig, isRouted, parseIpvlanConfig } from './options.js';

type IpvlanNetwork = NetworkRecord<IpvlanConfig>;

/**
 * ipvlan networks: one ipvlan link per endpoint on the parent, all with the
 * parent's MAC, so a switch port or a cloud that allows one MAC carries them.
 * l2 puts the containers on the wire as macvlan does; l3 and l3s route them
 * through the host with no ARP or broadcast on the wire.
 */
export class IpvlanDriver extends ParentLinkDriver<IpvlanConfig> {
  readonly kind = 'ipvlan' as const;
  readonly optionKeys = Object.values(IPVLAN_OPTIONS);

  protected parseConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): IpvlanConfig {
    return parseIpvlanConfig(spec, others, parent, links);
  }

  /** The shim and the endpoints alike: an ipvlan link takes no MAC of its own. */
  protected childLine(network: IpvlanNetwork, name: string): string[] {
    const { parent, mtu, mode, flag } = network.config;
    return ['link', 'add', name, 'link', parent, ...(mtu ? ['mtu', String(mtu)] : []), 'type', 'ipvlan', 'mode', mode, flag];
  }

  sharedMac(network: IpvlanNetwork): string {
    return network.config.parentMac ?? '';
  }

  /**
   * l3/l3s: no gateway to ARP for; the default route is the interface itself
   * (a CONNECTED route, as Docker's ipvlan answers), and dockerd is told not
   * to add a gateway network of its own. An internal network gets neither.
   */
  override join(network: IpvlanNetwork, endpoint: EndpointRecord<ParentEndpointState>): JoinInfo {
    if (!isRouted(network.config) || network.internal) return super.join(network, endpoint);
    return {
      srcName: endpoint.state.link,
      staticRoutes: [{ destination: '0.0.0.0/0', routeType: 1 }, ...(network.ipv6 ? [{ destination: '::/0', routeType: 1 as const }] : [])],
      disableGatewayService: true,
    };
  }
}
