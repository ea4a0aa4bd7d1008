// A "switch": a netns holding one Linux bridge that simulated hosts plug
// into, so several hosts share one L2 segment (and whatever else runs in the
// switch netns, such as the etcd server of a cluster test, is reachable on it).
import { createNetns, createVethPair, ipIn } from './netns.js';

export const SWITCH_BRIDGE = 'br0';

/** Creates netns `name` with bridge br0 up, optionally with an address on it (e.g. for a server in the switch). */
export async function createSwitch(name: string, address?: string): Promise<void> {
  await createNetns(name);
  await ipIn(name, ['link', 'add', SWITCH_BRIDGE, 'type', 'bridge']);
  if (address) await ipIn(name, ['addr', 'add', address, 'dev', SWITCH_BRIDGE]);
  await ipIn(name, ['link', 'set', SWITCH_BRIDGE, 'up']);
}

export interface SwitchPort {
  /** The host's netns and the name of its end of the cable (e.g. `wire`, a macvlan parent). */
  netns: string;
  ifname: string;
  /** Name of the port in the switch netns (unique per switch). */
  port: string;
  /** Optional CIDR address for the host's end. */
  address?: string;
}

/** Cables a host to the switch: a veth pair whose switch end joins br0. */
export async function plugIntoSwitch(switchNetns: string, end: SwitchPort): Promise<void> {
  await createVethPair({ netns: end.netns, name: end.ifname, ...(end.address ? { address: end.address } : {}) }, { netns: switchNetns, name: end.port });
  await ipIn(switchNetns, ['link', 'set', end.port, 'master', SWITCH_BRIDGE]);
}
