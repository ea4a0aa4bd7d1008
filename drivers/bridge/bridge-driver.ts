import { RequestError } from '../../src/errors.js';
import { parseCidr } from '../../src/net/address.js';
import { type Ip, CommandError } from '../../src/sys/index.js';
import type { Driver } from '../driver.js';
import type { EndpointRecord, EndpointSpec, JoinInfo, NetworkRecord, NetworkSpec, SubnetRecord } from '../model.js';
import { vethContainerName, vethHostName } from '../names.js';
import { BRIDGE_OPTIONS, type BridgeConfig, parseBridgeConfig } from './options.js';

export interface BridgeEndpointState {
  hostIf: string;
  containerIf: string;
}

type BridgeNetwork = NetworkRecord<BridgeConfig>;
type BridgeEndpoint = EndpointRecord<BridgeEndpointState>;

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

/**
 * Bridge networks: a Linux bridge carrying the gateway, one veth pair per
 * endpoint. Links go through one `ip` process per call.
 */
export class BridgeDriver implements Driver<BridgeConfig, BridgeEndpointState> {
  readonly kind = 'bridge' as const;
  readonly optionKeys = Object.values(BRIDGE_OPTIONS);

  constructor(private readonly ip: Ip) {}

  async prepareNetwork(spec: NetworkSpec, others: readonly NetworkRecord[]): Promise<BridgeConfig> {
    const name = spec.options[BRIDGE_OPTIONS.name];
    const existing = name ? await this.ip.link(name) : undefined;
    return parseBridgeConfig(spec, others, existing && { isBridge: existing.linkinfo?.info_kind === 'bridge' });
  }

  async createNetwork(network: BridgeNetwork): Promise<void> {
    await this.ensureBridge(network);
  }

  /** Creates the bridge if needed and puts the missing gateway addresses on it. */
  private async ensureBridge(network: BridgeNetwork): Promise<void> {
    const { bridge, mtu } = network.config;
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
      ['link', 'set', 'dev', bridge, 'up'],
    ];
    await this.ip.batch(lines);
  }

  async deleteNetwork(network: BridgeNetwork): Promise<void> {
    if (network.config.createdBridge) {
      await this.ip.deleteLinks([network.config.bridge]);
      return;
    }
    // An adopted bridge stays; only the addresses tsnet put on it go.
    for (const words of gatewayAddresses(network)) {
      try {
        await this.ip.exec(['address', 'del', ...words.slice(2, 5)]);
      } catch (error) {
        if (!(error instanceof CommandError)) throw error;
      }
    }
  }

  async createEndpoint(network: BridgeNetwork, endpoint: EndpointSpec): Promise<BridgeEndpointState> {
    if (!endpoint.address) throw new RequestError('Interface.Address', 'a bridge endpoint needs an IPv4 address from the IPAM');
    const state = { hostIf: vethHostName(endpoint.id), containerIf: vethContainerName(endpoint.id) };
    const { bridge, mtu } = network.config;
    // One process: the pair, its MTU, the host end on the bridge and up.
    const words = ['link', 'add', state.hostIf, 'mtu', String(mtu), 'master', bridge, 'up', 'type', 'veth', 'peer', 'name', state.containerIf, 'mtu', String(mtu)];
    try {
      await this.ip.exec(words);
    } catch (error) {
      // A pair left over by a crashed attempt of this very endpoint: replace it.
      if (!(error instanceof CommandError) || !/File exists/.test(error.stderr)) throw error;
      await this.ip.deleteLinks([state.hostIf]);
      await this.ip.exec(words);
    }
    return state;
  }

  async deleteEndpoint(_network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<void> {
    // Deleting one end of a veth pair deletes both; the other end may be in a sandbox still.
    await this.ip.deleteLinks([endpoint.state.hostIf]);
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

  async programExternalConnectivity(_network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    return endpoint.state;
  }

  async revokeExternalConnectivity(_network: BridgeNetwork, endpoint: BridgeEndpoint): Promise<BridgeEndpointState> {
    return endpoint.state;
  }

  async restore(network: BridgeNetwork): Promise<void> {
    await this.ensureBridge(network);
  }
}

