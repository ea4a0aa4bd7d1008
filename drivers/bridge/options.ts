import { RequestError } from '../../src/errors.js';
import { parseCidr } from '../../src/net/address.js';
import type { NetworkRecord, NetworkSpec } from '../model.js';
import { bridgeName } from '../names.js';
import { firstOverlap } from '../subnets.js';
import { OptionReader } from '../option-values.js';
import type { OverlayConfig } from './overlay.js';

/** Docker's bridge option keys; they mean the same with tsnet. */
export const BRIDGE_OPTIONS = {
  name: 'com.docker.network.bridge.name',
  icc: 'com.docker.network.bridge.enable_icc',
  masquerade: 'com.docker.network.bridge.enable_ip_masquerade',
  hostBinding: 'com.docker.network.bridge.host_binding_ipv4',
  inhibitIpv4: 'com.docker.network.bridge.inhibit_ipv4',
  defaultBridge: 'com.docker.network.bridge.default_bridge',
  hostIpv4: 'com.docker.network.host_ipv4',
  /** tsnet's own: off lets the network exchange traffic with the other tsnet networks that have it off. */
  isolate: 'tsnet.isolate',
  /** tsnet's own: masquerade IPv6 traffic leaving the host too (IPv4 follows enable_ip_masquerade). */
  masquerade6: 'tsnet.masquerade6',
} as const;

/** What a bridge the user named already had when tsnet adopted it; tsnet leaves it so. */
export interface AdoptedBridge {
  /** Its addresses (`address/prefix`): a gateway among them is the host's, never removed. */
  addresses: string[];
  routeLocalnet: boolean;
  /** Its interface group (absent in records from before tsnet kept it: `default`). */
  group?: string;
}

export interface BridgeConfig {
  bridge: string;
  /** False when the user named a bridge that already existed: tsnet then never deletes it. */
  createdBridge: boolean;
  /** Set when createdBridge is false (absent in records written before tsnet kept it: nothing to give back). */
  adopted?: AdoptedBridge;
  mtu: number;
  icc: boolean;
  masquerade: boolean;
  hostBindingIpv4: string;
  inhibitIpv4: boolean;
  /** SNAT source instead of masquerade. */
  hostIpv4?: string;
  /** tsnet.isolate (default on). */
  isolate: boolean;
  /** tsnet.masquerade6 (default off). */
  masquerade6: boolean;
  /** tsnet.mode=overlay: the network is one segment across hosts (drivers/bridge/overlay.ts). */
  overlay?: OverlayConfig;
}

export const DEFAULT_MTU = 1500;

/**
 * Parses a bridge network's options and checks it against the other tsnet
 * networks: one IPv4 subnet with a gateway, no overlap with another bridge
 * network, no bridge used twice.
 */
export function parseBridgeConfig(
  spec: NetworkSpec,
  others: readonly NetworkRecord[],
  existing: (AdoptedBridge & { isBridge: boolean }) | undefined,
): BridgeConfig {
  const options = new OptionReader(spec.options);
  const bridge = options.linkName(BRIDGE_OPTIONS.name) ?? bridgeName(spec.id);
  if (existing && !existing.isBridge) throw new RequestError(BRIDGE_OPTIONS.name, `${bridge} exists and is not a bridge`);

  if (spec.ipv4.length !== 1) throw new RequestError('IPv4Data', `a bridge network needs exactly one IPv4 subnet, got ${spec.ipv4.length}`);
  const subnet = spec.ipv4[0]!;
  const pool = parseCidr(subnet.pool)?.cidr;
  if (!pool || pool.prefix === 0) throw new RequestError('IPv4Data.0.Pool', `"${subnet.pool}" cannot be a bridge subnet (the null IPAM is not supported)`);
  if (!subnet.gateway) throw new RequestError('IPv4Data.0.Gateway', 'a bridge network needs a gateway address');

  const bridges = others.filter((other) => other.kind === 'bridge');
  const sameBridge = bridges.find((other) => (other.config as BridgeConfig).bridge === bridge);
  if (sameBridge) throw new RequestError(BRIDGE_OPTIONS.name, `bridge ${bridge} is already used by network ${sameBridge.id.slice(0, 12)}`);
  const overlap = firstOverlap(spec, bridges);
  if (overlap) throw new RequestError('Pool', `${overlap.mine} overlaps with ${overlap.theirs} of bridge network ${overlap.other.id.slice(0, 12)}`);

  const hostIpv4 = options.ipv4(BRIDGE_OPTIONS.hostIpv4);
  options.bool(BRIDGE_OPTIONS.defaultBridge, false);
  return {
    bridge,
    createdBridge: existing === undefined,
    ...(existing ? { adopted: { addresses: existing.addresses, routeLocalnet: existing.routeLocalnet, ...(existing.group ? { group: existing.group } : {}) } } : {}),
    mtu: spec.mtu ?? DEFAULT_MTU,
    icc: options.bool(BRIDGE_OPTIONS.icc, true),
    masquerade: options.bool(BRIDGE_OPTIONS.masquerade, true),
    hostBindingIpv4: options.ipv4(BRIDGE_OPTIONS.hostBinding) ?? '0.0.0.0',
    inhibitIpv4: options.bool(BRIDGE_OPTIONS.inhibitIpv4, false),
    ...(hostIpv4 ? { hostIpv4 } : {}),
    isolate: options.onOff(BRIDGE_OPTIONS.isolate, true),
    masquerade6: options.onOff(BRIDGE_OPTIONS.masquerade6, false),
  };
}
