import type { AddressHold, HostRecord } from '../cluster/keys.js';
import { parseIp } from '../net/address.js';
import { macFor } from '../net/mac.js';
import type { RemotePeer } from './vxlan.js';

/**
 * A segment's remote peers as the store describes them: every container
 * hold of another host on the pool, sent to that host's underlay address.
 * A hold whose host has no underlay address yet (registered by a tsnet
 * without overlays, or not at all) has no peer: nothing could reach it.
 * The MAC is the hold's when the user chose one, else the one tsnet
 * derives from the IPv4 address, as the container got it.
 */
export function remotePeers(holds: Iterable<readonly [string, AddressHold]>, hosts: ReadonlyMap<string, HostRecord>, self: string): RemotePeer[] {
  const peers: RemotePeer[] = [];
  for (const [address, hold] of holds) {
    if (hold.kind !== 'container' || hold.host === self) continue;
    const host = hosts.get(hold.host)?.underlay;
    const ip = parseIp(address);
    if (host === undefined || ip === undefined) continue;
    const mac = hold.mac ?? (ip.family === 4 ? macFor(ip) : undefined);
    if (mac !== undefined) peers.push({ ip: address, mac, host });
  }
  return peers;
}
