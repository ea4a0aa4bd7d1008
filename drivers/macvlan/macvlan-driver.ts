import { parseIp } from '../../src/net/address.js';
import { macFor } from '../../src/net/mac.js';
import type { EndpointSpec, NetworkRecord, NetworkSpec } from '../model.js';
import type { ParentLinks } from '../parent/parent-config.js';
import { ParentLinkDriver } from '../parent/parent-link-driver.js';
import type { ParentName } from '../parent/parent-name.js';
import { DEFAULT_DHCP_HOLD_SECONDS, DEFAULT_DHCP_TIMEOUT_SECONDS, MACVLAN_OPTIONS, type MacvlanConfig, parseMacvlanConfig } from './options.js';

type MacvlanNetwork = NetworkRecord<MacvlanConfig>;

/** macvlan networks: one macvlan link per endpoint, with its own MAC, on the parent. */
export class MacvlanDriver extends ParentLinkDriver<MacvlanConfig> {
  readonly kind = 'macvlan' as const;
  readonly optionKeys = Object.values(MACVLAN_OPTIONS);

  protected parseConfig(spec: NetworkSpec, others: readonly NetworkRecord[], parent: ParentName, links: ParentLinks): MacvlanConfig {
    return parseMacvlanConfig(spec, others, parent, links);
  }

  /** The probe of a DHCP lease hangs on the parent, as the container's link will. */
  dhcpWire(network: MacvlanNetwork): { parent: string; timeoutMs: number; holdMs: number } {
    const { parent, dhcpTimeoutSeconds, dhcpHoldSeconds } = network.config;
    return { parent, timeoutMs: (dhcpTimeoutSeconds ?? DEFAULT_DHCP_TIMEOUT_SECONDS) * 1000, holdMs: (dhcpHoldSeconds ?? DEFAULT_DHCP_HOLD_SECONDS) * 1000 };
  }

  /**
   * An endpoint's link gets the MAC core chose (or dockerd sent), so the
   * kernel and dockerd agree on it. The shim's follows from its address, so
   * a shim made again (after a reboot, or someone deleted it) keeps it:
   * containers and LAN hosts need not learn it anew.
   */
  protected childLine(network: MacvlanNetwork, name: string, endpoint: EndpointSpec | undefined): string[] {
    const { parent, mtu, mode, hostShim } = network.config;
    const mac = endpoint ? endpoint.mac : macFor(parseIp(hostShim!.address));
    return ['link', 'add', name, 'link', parent, 'address', mac, ...(mtu ? ['mtu', String(mtu)] : []), 'type', 'macvlan', 'mode', mode];
  }
}
