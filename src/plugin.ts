import type { Express } from 'express';
import type { Logger } from 'pino';
import { BridgeDriver } from '../drivers/bridge/bridge-driver.js';
import type { Driver } from '../drivers/driver.js';
import { MacvlanDriver } from '../drivers/macvlan/macvlan-driver.js';
import type { DriverKind } from '../drivers/model.js';
import { ipamRoutes } from './api/ipam-routes.js';
import { networkRoutes } from './api/network-routes.js';
import { createApp } from './api/server.js';
import { NetworkService } from './core/network-service.js';
import { hostNetworks } from './host-networks.js';
import { IpamService } from './ipam/ipam-service.js';
import type { SharedPools } from './ipam/shared-pools.js';
import type { Store } from './store/store.js';
import { Ip, IptablesFirewall, type Runner, Sysctl } from './sys/index.js';

export interface PluginOptions {
  defaultPoolsV4?: string;
  defaultPoolsV6?: string;
  /** The cluster's shared pools (--cluster-store); told which subnets have a network on this host. */
  sharedPools?: (subnetInUse: (subnet: string) => boolean) => Promise<SharedPools>;
}

/** The plugin without its socket: what the daemon serves and what API tests drive. */
export interface Plugin {
  app: Express;
  networks: NetworkService;
  ipam: IpamService;
}

/** Builds drivers, IPAM and network service on a store and a runner, loads the state and restores the kernel. */
export async function createPlugin(store: Store, runner: Runner, options: PluginOptions, log: Logger): Promise<Plugin> {
  const ip = new Ip(runner);
  const sysctl = new Sysctl(runner);
  const drivers = new Map<DriverKind, Driver>([
    ['bridge', new BridgeDriver(ip, new IptablesFirewall(runner, sysctl), sysctl) as Driver],
    ['macvlan', new MacvlanDriver(ip) as Driver],
  ]);
  const networks = new NetworkService(store, drivers, log);
  const shared = await options.sharedPools?.((subnet) => networks.hasNetworkOn(subnet));
  const ipam = new IpamService(store, {
    ...(options.defaultPoolsV4 ? { defaultPoolsV4: options.defaultPoolsV4 } : {}),
    ...(options.defaultPoolsV6 ? { defaultPoolsV6: options.defaultPoolsV6 } : {}),
    hostNetworks: () => hostNetworks(ip),
    ...(shared ? { shared } : {}),
  });
  await ipam.load();
  await networks.load();
  await networks.restore();
  return { app: createApp([...networkRoutes(networks), ...ipamRoutes(ipam)], log), networks, ipam };
}
