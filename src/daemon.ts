import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { createAdminApp } from './admin/server.js';
import { adminSocketPath } from './admin/socket-path.js';
import { createPlugin, type PluginOptions } from './plugin.js';
import { claimSocketPath } from './plugin-socket.js';
import type { ClusterConfig } from './cluster/cluster-config.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/store.js';
import { ExecaRunner, SocketHostPorts } from './sys/index.js';
import { IpSessionRunner } from './sys/ip-session.js';

export interface DaemonOptions extends PluginOptions {
  name: string;
  socketDir: string;
  stateDir: string;
  /** --cluster-store and friends; absent = this host alone, SQLite only. */
  cluster?: ClusterConfig;
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
  await claimSocketPath(socketPath, options.socketDir);
  const adminPath = adminSocketPath(options.socketDir, options.name);
  await claimSocketPath(adminPath, dirname(adminPath));

  const store: Store = new SqliteStore(options.stateDir);
  // etcd's client (grpc) weighs ~20 MiB: loaded only by daemons of a cluster.
  const cluster = options.cluster && new (await import('./cluster/cluster.js')).Cluster(options.cluster, store, log);
  const pluginOptions = cluster ? { ...options, sharedPools: cluster.sharedPools.bind(cluster) } : options;
  const { app, networks, firewall } = await createPlugin({ store, runner: new IpSessionRunner(new ExecaRunner()), hostPorts: new SocketHostPorts() }, pluginOptions, log);
  const server = createServer(app);
  // Never close an idle keep-alive connection from our side: dockerd's Go
  // client may be sending on it at that moment, and it retries such a request
  // with an already consumed, empty body ("NetworkID: is required").
  server.keepAliveTimeout = 0;
  await listen(server, socketPath);
  chmodSync(socketPath, 0o600);
  const admin = createServer(createAdminApp(networks, log, cluster));
  await listen(admin, adminPath);
  chmodSync(adminPath, 0o600);
  // Registering in the cluster never delays serving: running containers need no etcd.
  cluster?.start();
  log.info({ socket: socketPath, stateDir: options.stateDir, networks: networks.listNetworks().length, firewall, cluster: cluster?.etcd.url }, 'tsnet is serving');

  return {
    socketPath,
    async stop() {
      await Promise.all([close(server), close(admin)]);
      rmSync(socketPath, { force: true });
      rmSync(adminPath, { force: true });
      await cluster?.stop();
      await store.close();
      log.info('tsnet stopped; state kept');
    },
  };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
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
