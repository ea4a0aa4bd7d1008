/**
 * Hosts that share no L2: each in its own netns and its own /30 underlay
 * subnet, routed through one router netns (what clouds and routed data
 * centres give). Host i has underlay 10.251.<i+1>.1; the router is .2 of
 * each /30.
 */
import type { CleanupStack } from './cleanup.js';
import { createNetns, createVethPair, deleteNetns, execInNetns, ipIn } from './netns.js';

export interface RoutedHost {
  netns: string;
  underlay: string;
}

export async function createRoutedHosts(router: string, hostNetns: readonly string[], cleanup: CleanupStack): Promise<RoutedHost[]> {
  for (const name of [router, ...hostNetns]) {
    await createNetns(name);
    cleanup.defer(`delete netns ${name}`, () => deleteNetns(name));
  }
  await execInNetns(router, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  const hosts: RoutedHost[] = [];
  for (const [i, netns] of hostNetns.entries()) {
    const underlay = `10.251.${i + 1}.1`;
    await createVethPair({ netns, name: 'u0', address: `${underlay}/30` }, { netns: router, name: `r${i}`, address: `10.251.${i + 1}.2/30` });
    await ipIn(netns, ['route', 'add', 'default', 'via', `10.251.${i + 1}.2`]);
    hosts.push({ netns, underlay });
  }
  return hosts;
}
