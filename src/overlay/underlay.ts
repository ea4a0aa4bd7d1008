import { lookup } from 'node:dns/promises';
import type { ClusterConfig } from '../cluster/cluster-config.js';
import { parseIp } from '../net/address.js';
import type { Ip } from '../sys/ip.js';
import { DEFAULT_VXLAN_PORT } from './vxlan.js';

/** Where the other hosts send this host's overlay traffic. */
export interface Underlay {
  address: string;
  port: number;
}

/**
 * This host's underlay: --advertise-address, which must be one of its own
 * addresses, or else the source address of its route to the first etcd
 * member (the address the other hosts reach etcd from is the one most
 * likely to reach them too).
 */
export async function findUnderlay(config: Pick<ClusterConfig, 'advertiseAddress' | 'vxlanPort' | 'endpoints'>, ip: Ip): Promise<Underlay> {
  const port = config.vxlanPort ?? DEFAULT_VXLAN_PORT;
  if (config.advertiseAddress !== undefined) {
    if (!(await ip.hasAddress(config.advertiseAddress))) throw new Error(`--advertise-address ${config.advertiseAddress}: not an address of this host`);
    return { address: config.advertiseAddress, port };
  }
  const host = config.endpoints[0]!.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const etcdAddress = parseIp(host) ? host : (await lookup(host)).address;
  const address = await ip.routeSource(etcdAddress);
  if (address === undefined) throw new Error(`no route to etcd at ${etcdAddress} to take this host's underlay address from; give --advertise-address`);
  return { address, port };
}
