import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { DockerNames } from './admin/docker-names.js';
import { Inventory } from './admin/inventory.js';
import { createAdminApp } from './admin/server.js';
import { adminSocketPath } from './admin/socket-path.js';
import { ContainerNames } from './docker/container-names.js';
import { DockerApi, parseDockerHost } from './docker/docker-api.js';
import { type DnsOptions, DnsService } from './dns/dns-service.js';
import { LocalRecords, networkLabel } from './dns/local-records.js';
import { type MetricsAddress, serveMetrics } from './metrics/metrics-server.js';
import { createPlugin, type PluginOptions } from './plugin.js';
import { claimSocketPath } from './plugin-socket.js';
import { claimNetns } from './netns-claim.js';
import { listenPrivately } from './unix-listen.js';
import type { ClusterConfig } from './cluster/cluster-config.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/store.js';
import { ExecaRunner, iptablesIsLegacy, ProcSysctl, SocketHostPorts } from './sys/index.js';
import { sessionRunner } from './sys/sessions.js';
import { DriftWatcher } from './repair/drift-watcher.js';
import { OwnChanges } from './repair/own-changes.js';
import { bridgeName, HOST_KEPT_LINK, VXLAN_LINK } from '../drivers/names.js';

export interface DaemonOptions extends PluginOptions {
  name: string;
  socketDir: string;
  stateDir: string;
  /** Where the admin API listens; default beside the plugin socket (adminSocketPath). */
  adminSocket?: string;
  /** --cluster-store and friends; absent = this host alone, SQLite only. */
  cluster?: ClusterConfig;
  /** --docker-host: where container names for DNS come from. */
  dockerHost: string;
  /** How an operator points this daemon at dockerd's API (the managed plugin has its own setting); default: --docker-host. */
  dockerHostSetting?: string;
  dns: DnsOptions;
  /** --metrics: where to serve Prometheus metrics; absent = no metrics. */
  metrics?: MetricsAddress;
  /** --no-drift-watch: false leaves repairs to `tsnet doctor --fix` and restarts. */
  watchDrift: boolean;
}

export const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** How long shutdown waits for requests in flight before it cuts connections. */
const DRAIN_MS = 10_000;

export interface RunningDaemon {
  socketPath: string;
  /** Stops accepting, finishes requests in flight, closes the store. */
  stop(): Promise<void>;
}

/** Opens the state, builds the plugin on it and serves it on <socket-dir>/<name>.sock. */
export async function startDaemon(options: DaemonOptions, log: Logger): Promise<RunningDaemon> {
  if (!PLUGIN_NAME.test(options.name)) throw new Error(`--name "${options.name}" may only hold letters, digits, _ . and -`);
  const socketPath = join(options.socketDir, `${options.name}.sock`);
  // Before anything else: a second tsnet of this netns must change nothing, and say which one runs.
  const netns = await claimNetns({ pid: process.pid, socket: socketPath });
  // Next, so a taken metrics port stops the start before anything is claimed.
  // prom-client only when asked for: loaded, it costs ~2 MiB of heap (~13 MiB RSS alone) whether anyone scrapes or not.
  const metrics = options.metrics ? new (await import('./metrics/metrics.js')).Metrics() : undefined;
  const metricsServer = options.metrics && metrics ? await serveMetrics(options.metrics, metrics.registry) : undefined;
  await claimSocketPath(socketPath, options.socketDir);
  const adminPath = options.adminSocket ?? adminSocketPath(options.socketDir, options.name);
  await claimSocketPath(adminPath, dirname(adminPath));

  const dockerAddress = parseDockerHost(options.dockerHost);

  const store: Store = new SqliteStore(options.stateDir);
  // What plugin requests change, and the overlay's peer writes, are tsnet's own: the drift watcher leaves them alone.
  const own = new OwnChanges();
  // etcd's client (grpc) weighs ~20 MiB: loaded only by daemons of a cluster.
  const peerWrites = { asOwnChange: <T>(work: () => Promise<T>) => own.during(work), ...(metrics ? { observe: metrics.observePeerWrite, rekeyed: metrics.observeRekey } : {}) };
  const cluster = options.cluster && new (await import('./cluster/cluster.js')).Cluster(options.cluster, store, log, peerWrites);
  await cluster?.checkUnderlay();
  const pluginOptions = cluster ? { ...options, sharedPools: cluster.sharedPools.bind(cluster), segments: () => cluster.segments() } : options;
  const runner = own.watch(metrics?.runner() ?? sessionRunner(new ExecaRunner()));
  const parts = {
    store,
    runner,
    hostPorts: new SocketHostPorts(),
    sysctl: new ProcSysctl(),
    requestScope: <T>(networkId: string | undefined, work: () => Promise<T>) => own.during(work, networkId ? [bridgeName(networkId)] : []),
    ...(metrics ? { observeRequest: metrics.observeRequest, observeRepairs: metrics.observeRepairs } : {}),
  };
  const { app, networks, ipam, inFlight, firewall, reconciler, dockerBridges, linkReaper, dhcp } = await createPlugin(parts, pluginOptions, log);
  metrics?.watch(networks, ipam);
  if (cluster) metrics?.watchOverlayGate(cluster.gate, cluster.ciphers);
  // Names come from Docker's API on their own schedule; no plugin request ever waits for them.
  const turnOn = options.dockerHostSetting ?? `give --docker-host dockerd's API address (now ${options.dockerHost})`;
  const names = new ContainerNames(new DockerApi(dockerAddress), log.child({ room: 'docker' }), { turnOn });
  // Docker's bridge networks come and go with its events: tsnet's networks stay out of each.
  names.onChange(() => void dockerBridges.update(names.dockerBridges()));
  // A DHCP lease carries its container's name to the LAN's server, which may register it in its DNS.
  dhcp.leases.useHostnames((address) => {
    const endpoint = networks.endpointWithAddress(address);
    return endpoint ? names.endpoints().get(endpoint.id)?.containerName : undefined;
  });
  names.onChange(() => dhcp.leases.namesChanged());
  names.start();
  let dns: DnsService;
  try {
    const local = new LocalRecords(networks, names);
    // With the cluster store, other hosts' names on shared networks are served too.
    const remote = cluster?.names({ networks: () => networks.listNetworks(), networkName: (id) => networkLabel(names, id), records: local });
    dns = await DnsService.start(options.dns, networks, remote ? [local, remote] : [local], log.child({ room: 'dns' }));
  } catch (error) {
    await names.stop();
    await store.close();
    throw error;
  }
  metrics?.watchDns(dns);
  const server = createServer(app);
  // Never close an idle keep-alive connection from our side: dockerd's Go
  // client may be sending on it at that moment, and it retries such a request
  // with an already consumed, empty body ("NetworkID: is required").
  server.keepAliveTimeout = 0;
  await listenPrivately(server, socketPath);
  // tsnet ls/inspect show Docker's names as far as the watcher knows them.
  const dockerNames: DockerNames = { networkName: (id) => names.networkName(id), containerOfEndpoint: (id) => names.endpoints().get(id)?.containerName };
  const inventory = new Inventory(networks, ipam, dockerNames, cluster ? (id) => cluster.segments()?.members(id) : undefined);
  const admin = createServer(createAdminApp({ networks, dns, inFlight, inventory, reconciler, ...(cluster ? { cluster } : {}) }, log));
  await listenPrivately(admin, adminPath);
  // Registering in the cluster never delays serving: running containers need no etcd.
  cluster?.start();
  const watcher = options.watchDrift
    ? new DriftWatcher((reason) => inFlight.track(() => reconciler.fix(reason)), runner, log.child({ room: 'repair' }), {
        pollRules: await iptablesIsLegacy(runner),
        quietForMs: () => inFlight.quietForMs(),
        judge: { ownsLink: (name) => (HOST_KEPT_LINK.test(name) && !linkReaper.has(name)) || networks.borrowedLinks().has(name), keepsPeers: (name) => VXLAN_LINK.test(name), changedLink: (name) => own.changedLink(name), changedPorts: (name) => own.changedPorts(name), changedRules: () => own.changedRules(), rulesChangedAt: () => own.rulesChangedAt() },
        ...(metrics ? { onLook: metrics.observeLook } : {}),
      })
    : undefined;
  watcher?.start();
  log.info({ socket: socketPath, admin: adminPath, ...(options.metrics ? { metrics: `${options.metrics.host}:${options.metrics.port}` } : {}), stateDir: options.stateDir, networks: networks.listNetworks().length, firewall, driftWatch: options.watchDrift, cluster: cluster?.etcd.url }, 'tsnet is serving');

  return {
    socketPath,
    async stop() {
      networks.stop();
      dhcp.leases.stop();
      await watcher?.stop();
      await Promise.all([close(server), close(admin), ...(metricsServer ? [close(metricsServer)] : [])]);
      rmSync(socketPath, { force: true });
      rmSync(adminPath, { force: true });
      // Requests whose connections were cut still run: their kernel work must reach the store.
      await inFlight.drained();
      await Promise.all([linkReaper.settled(), dhcp.leases.settle()]);
      await cluster?.stop();
      await Promise.all([dns.stop(), names.stop()]);
      await store.close();
      // Last: a successor may start once nothing of this daemon acts any more.
      await netns.release();
      log.info('tsnet stopped; state kept');
    },
  };
}

/** Closes idle keep-alive connections at once and waits for busy ones, up to DRAIN_MS. */
function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}
