import type { FirewallNetwork } from './firewall.js';
import type { Sysctl } from './sysctl.js';

/**
 * The kernel switches every firewall backend needs around its rules: routing
 * between the bridge and the rest, and route_localnet for ports published on
 * 127.0.0.1. route_localnet is only ever on while the backend's 127/8 guard
 * is in: set after the rules, given back before they go.
 */
const routeLocalnet = (network: FirewallNetwork) => `net/ipv4/conf/${network.bridge}/route_localnet`;

/** After the network's rules (the 127/8 guard among them) are in. */
export async function enableForwarding(sysctl: Sysctl, network: FirewallNetwork): Promise<void> {
  if (network.internal) return;
  await sysctl.set({
    ...(network.subnets[4] ? { 'net/ipv4/ip_forward': '1', [routeLocalnet(network)]: '1' } : {}),
    ...(network.subnets[6] ? { 'net/ipv6/conf/all/forwarding': '1' } : {}),
  });
}

/** Before the guard goes: route_localnet=1 without it would open the host's 127/8 services to the bridge. */
export async function giveBackRouteLocalnet(sysctl: Sysctl, network: FirewallNetwork): Promise<void> {
  if (network.subnets[4] && !network.internal) await sysctl.reset({ [routeLocalnet(network)]: network.routeLocalnetBefore ? '1' : '0' });
}
