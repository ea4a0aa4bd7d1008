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

/** A host with containers on a segment, as `tsnet inspect` shows it. */
export interface SegmentMember {
  host: string;
  /** Where its VXLAN goes; absent: the host registered no underlay (its containers are unreachable from here). */
  underlay?: string;
  /** Whether it holds its lease; undefined: not known yet. A dead host keeps its entries (docs/overlay.md). */
  alive?: boolean;
  containers: number;
  self: boolean;
}

/** What segmentMembers reads of the host registry. */
export interface HostsView {
  hosts(): ReadonlyMap<string, HostRecord>;
  isAlive(hostId: string): boolean | undefined;
}

/** The hosts holding containers on the segment (this one always), with their container counts, sorted by host. */
export function segmentMembers(holds: Iterable<readonly [string, AddressHold]>, registry: HostsView, self: string): SegmentMember[] {
  const counts = new Map<string, number>([[self, 0]]);
  for (const [, hold] of holds) if (hold.kind === 'container') counts.set(hold.host, (counts.get(hold.host) ?? 0) + 1);
  const hosts = registry.hosts();
  return [...counts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([host, containers]) => {
      const underlay = hosts.get(host)?.underlay;
      const alive = registry.isAlive(host);
      return { host, ...(underlay ? { underlay } : {}), ...(alive !== undefined ? { alive } : {}), containers, self: host === self };
    });
}
