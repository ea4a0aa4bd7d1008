import { existsSync } from 'node:fs';
import type { Express } from 'express';
import type { Logger } from 'pino';
import { BridgeDriver } from '../drivers/bridge/bridge-driver.js';
import { OverlayPart } from '../drivers/bridge/overlay.js';
import type { Driver } from '../drivers/driver.js';
import { IpvlanDriver } from '../drivers/ipvlan/ipvlan-driver.js';
import { MacvlanDriver } from '../drivers/macvlan/macvlan-driver.js';
import { SharedParent } from '../drivers/parent/shared-parent.js';
import { DhcpPools } from './dhcp/dhcp-pools.js';
import type { DriverKind } from '../drivers/model.js';
import { SandboxFiles } from '../drivers/sandbox.js';
import { ipamRoutes } from './api/ipam-routes.js';
import { DockerBridges } from './docker/docker-bridges.js';
import { networkRoutes } from './api/network-routes.js';
import { createApp, type RequestObserver, type RequestScope } from './api/server.js';
import { NetworkService } from './core/network-service.js';
import { hostNetworks } from './host-networks.js';
import { InFlight } from './in-flight.js';
import { IpamService } from './ipam/ipam-service.js';
import { removeLeftoverLinks } from './repair/leftover-links.js';
import { Reconciler } from './repair/reconciler.js';
import type { SharedPools } from './ipam/shared-pools.js';
import type { Segments } from './overlay/segments.js';
import type { Store } from './store/store.js';
import { Xfrm } from './sys/xfrm.js';
import { chooseFirewall, type Drift, type FirewallKind, ForwardingTable, type HostPorts, Ip, LinkReaper, Offloads, removeOtherBackend, type Runner, type Sysctl } from './sys/index.js';

export interface PluginOptions {
  /** --firewall; absent: nftables where it works, else iptables. */
  firewall?: FirewallKind;
  defaultPoolsV4?: string;
  defaultPoolsV6?: string;
  /** dockerd's <exec-root>/netns as this daemon sees it, when that is not where dockerd says (--netns-dir). */
  netnsDir?: string;
  /** The cluster's shared pools (--cluster-store); told which subnets have a network on this host. */
  sharedPools?: (subnetInUse: (subnet: string) => boolean) => Promise<SharedPools>;
  /** The cluster's overlay segments (--cluster-store), asked once the shared pools are there. */
  segments?: () => Segments | undefined;
  /** How long an endpoint that looks gone at start-up is kept before it is dropped (default 10 s; tests shorten it). */
  staleGraceMs?: number;
}

/** The plugin without its socket: what the daemon serves and what API tests drive. */
export interface Plugin {
  app: Express;
  networks: NetworkService;
  ipam: IpamService;
  /** The requests being served; other servers on the same services count theirs here too. */
  inFlight: InFlight;
  /** The firewall backend in use. */
  firewall: FirewallKind;
  /** Compares the records with the kernel and repairs the differences (tsnet doctor, the drift watcher). */
  reconciler: Reconciler;
  /** Docker's own bridges, which tsnet's networks are kept out of: told what Docker's API says. */
  dockerBridges: DockerBridges;
  /** Deletes the links of deleted networks in the background: settle it before the process ends. */
  linkReaper: LinkReaper;
  /** The DHCP pools and their leases: stop their renewals before the process ends. */
  dhcp: DhcpPools;
}

/** What the plugin works on: its state, the door to programs, and the host's port space. */
export interface PluginParts {
  store: Store;
  runner: Runner;
  /** SocketHostPorts in the daemon; UncheckedHostPorts where the plugin programs another netns (tests). */
  hostPorts: HostPorts;
  /** ProcSysctl in the daemon; CommandSysctl on the runner where the plugin programs another netns (tests). */
  sysctl: Sysctl;
  /** Told of every answered request (--metrics). */
  observeRequest?: RequestObserver;
  /** Told of every difference between records and kernel that was repaired (--metrics). */
  observeRepairs?: (found: readonly Drift[]) => void;
  /** Runs every plugin request's work (the daemon notes what requests change: OwnChanges). */
  requestScope?: RequestScope;
}

/** Builds drivers, IPAM and network service on its parts, loads the state and restores the kernel. */
export async function createPlugin({ store, runner, hostPorts, sysctl, observeRequest, observeRepairs, requestScope }: PluginParts, options: PluginOptions, log: Logger): Promise<Plugin> {
  const ip = new Ip(runner);
  const fdb = new ForwardingTable(runner);
  const xfrm = new Xfrm(runner);
  const firewall = await chooseFirewall(options.firewall, runner, sysctl);
  // Before anything is restored: what the other backend left must not act on tsnet's traffic.
  await removeOtherBackend(firewall.kind, runner).catch((error: unknown) => log.warn({ err: error }, `could not remove the rules of the other firewall backend than ${firewall.kind}`));
  const sandboxes = new SandboxFiles(options.netnsDir);
  const linkReaper = new LinkReaper(ip, log);
  if (options.netnsDir && !existsSync(options.netnsDir)) {
    log.warn({ netnsDir: options.netnsDir }, "dockerd's netns directory is not there (no container has run yet, or the managed plugin's exec-root.source is not dockerd's --exec-root): every joined endpoint counts as alive");
  }
  // One SharedParent for both kinds: a macvlan and an ipvlan network may share a VLAN's base and its PROMISC hold.
  const parentParts = { ip, runner, shared: new SharedParent(ip), sandboxes, ...(options.segments ? { segments: options.segments } : {}) };
  const drivers = new Map<DriverKind, Driver>([
    ['bridge', new BridgeDriver(ip, firewall.firewall, sysctl, hostPorts, linkReaper, log, new OverlayPart(ip, fdb, new Offloads(runner), hostPorts, xfrm, options.segments ?? (() => undefined)), sandboxes) as Driver],
    ['macvlan', new MacvlanDriver(parentParts) as Driver],
    ['ipvlan', new IpvlanDriver(parentParts) as Driver],
  ]);
  // The IPAM comes next: it asks the networks (shared pools), and they give stale endpoints' addresses back to it.
  // Leases are taken through a probe link on the network's parent: the pools ask the networks where that is.
  const dhcp = new DhcpPools(store, runner, { wireOf: (subnet) => networks.dhcpWireOf(subnet), sandboxOf: (address) => {
    const key = networks.endpointWithAddress(address)?.sandboxKey;
    return key === undefined ? undefined : sandboxes.pathOf(key);
  } }, log.child({ room: 'dhcp' }));
  await dhcp.load();
  const addresses = {
    releaseStale: (address: string) => ipam.releaseStale(address),
    gatewayChosen: (subnet: string, gateway: string) => ipam.gatewayChosen(subnet, gateway),
    isDhcpSubnet: (subnet: string) => dhcp.hasPool(subnet),
    lease: (address: string) => dhcp.leases.get(address),
    rekeyLease: (address: string, mac: string) => dhcp.leases.rekey(address, mac),
  };
  const networks: NetworkService = new NetworkService(store, drivers, log, addresses, options.staleGraceMs, () => linkReaper.settled());
  const shared = await options.sharedPools?.((subnet) => networks.hasNetworkOn(subnet));
  const ipam: IpamService = new IpamService(store, {
    ...(options.defaultPoolsV4 ? { defaultPoolsV4: options.defaultPoolsV4 } : {}),
    ...(options.defaultPoolsV6 ? { defaultPoolsV6: options.defaultPoolsV6 } : {}),
    hostNetworks: () => hostNetworks(ip),
    ...(shared ? { shared } : {}),
    dhcp,
    inUse: (address) => networks.addressInUse(address),
    hostHolds: (address) => networks.hostHolds(address),
  });
  await ipam.load();
  await networks.load();
  // Before any network's rules are back: they must not let its containers into a Docker bridge for a moment.
  const dockerBridges = new DockerBridges({ linkNames: () => ip.linkNames(), apply: (names) => firewall.firewall.setDockerBridges(names) }, log.child({ room: 'docker' }));
  await dockerBridges.update();
  await networks.restore();
  await removeLeftoverLinks(ip, networks, log);
  await networks.removeLeftovers();
  const inFlight = new InFlight();
  const reconciler = new Reconciler(networks, ip, fdb, xfrm, firewall.firewall, log.child({ room: 'repair' }), observeRepairs);
  return { app: createApp([...networkRoutes(networks), ...ipamRoutes(ipam)], log, inFlight, observeRequest, requestScope), networks, ipam, inFlight, firewall: firewall.kind, reconciler, dockerBridges, linkReaper, dhcp };
}
