import { randomBytes } from 'node:crypto';
import { type Namespace, type Runner, UdpRelay } from '../sys/index.js';

/** The DHCP client's ports (RFC 2131): it holds 68, servers listen on 67. */
const DHCP_PORTS = { local: 68, remote: 67 };

/** A DhcpWire (client.ts) in `namespace`: the relay holding port 68 there. */
export const openDhcpWire = (namespace: Namespace): Promise<UdpRelay> => UdpRelay.open(namespace, DHCP_PORTS);

/** What a probe link is made of: the network's parent and the container's MAC; to release a lease, its address (CIDR), which a client sends from. */
export interface ProbeLink {
  parent: string;
  mac: string;
  address?: string;
}

/**
 * Runs `work` with a wire on a macvlan of `link.parent` that has the
 * container's MAC, alone in the relay's own namespace (made in it, so the
 * host's netns never sees it): the server sees the very client the
 * container will be. Link and namespace go with the relay, whatever happened.
 */
export async function withProbeLink<T>(runner: Runner, link: ProbeLink, work: (wire: UdpRelay) => Promise<T>): Promise<T> {
  const name = `tsd${randomBytes(5).toString('hex')}`;
  const wire = await openDhcpWire('new');
  try {
    const inside = (args: string[]) => runner.run('nsenter', [`--net=/proc/${wire.pid}/ns/net`, 'ip', ...args]);
    await runner.run('ip', ['link', 'add', name, 'link', link.parent, 'address', link.mac, 'netns', String(wire.pid), 'type', 'macvlan', 'mode', 'bridge']);
    if (link.address) await inside(['address', 'add', link.address, 'dev', name]);
    await inside(['link', 'set', name, 'up']);
    // No address yet: broadcasts need a route out of the link, and replies come back broadcast.
    await inside(['route', 'add', 'default', 'dev', name]);
    return await work(wire);
  } finally {
    wire.close();
  }
}
