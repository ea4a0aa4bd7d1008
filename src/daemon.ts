import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BridgeDriver } from '../drivers/bridge/bridge-driver.js';
import type { Driver } from '../drivers/driver.js';
import type { DriverKind } from '../drivers/model.js';
import { ipamRoutes } from './api/ipam-routes.js';
import { networkRoutes } from './api/network-routes.js';
import { createApp } from './api/server.js';
import { NetworkService } from './core/network-service.js';
import { hostNetworks } from './host-networks.js';
import { IpamService } from './ipam/ipam-service.js';
import { claimSocketPath } from './plugin-socket.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/store.js';
import { ExecaRunner, Ip } from './sys/index.js';

export interface DaemonOptions {
  name: string;
  socketDir: string;
  stateDir: string;
  defaultPoolsV4?: string;
  defaultPoolsV6?: string;
}

export const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** How long shutdown waits for requests in flight before it cuts connections. */
const DRAIN_MS = 10_000;

export interface RunningDaemon {
  socketPath: string;
  /** Stops accepting, finishes requests in flight, closes the store. */
  stop(): Promise<void>;
}

/** Wires store, IPAM, drivers and the API, restores the kernel from state and listens. */
export async function startDaemon(options: DaemonOptions, log: Logger): Promise<RunningDaemon> {
  if (!PLUGIN_NAME.test(options.name)) throw new Error(`--name "${options.name}" may only hold letters, digits, _ . and -`);
  const socketPath = join(options.socketDir, `${options.name}.sock`);
  await claimSocketPath(socketPath, options.socketDir);

  const store: Store = new SqliteStore(options.stateDir);
  const runner = new ExecaRunner();
  const ip = new Ip(runner);
  const drivers = new Map<DriverKind, Driver>([['bridge', new BridgeDriver(ip) as Driver]]);
  const ipam = new IpamService(store, {
    ...(options.defaultPoolsV4 ? { defaultPoolsV4: options.defaultPoolsV4 } : {}),
    ...(options.defaultPoolsV6 ? { defaultPoolsV6: options.defaultPoolsV6 } : {}),
    hostNetworks: () => hostNetworks(ip),
  });
  const networks = new NetworkService(store, drivers, log);
  await ipam.load();
  await networks.load();
  await networks.restore();

  const server = createServer(createApp([...networkRoutes(networks), ...ipamRoutes(ipam)], log));
  await listen(server, socketPath);
  chmodSync(socketPath, 0o600);
  log.info({ socket: socketPath, stateDir: options.stateDir, networks: networks.listNetworks().length }, 'tsnet is serving');

  return {
    socketPath,
    async stop() {
      await close(server);
      rmSync(socketPath, { force: true });
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
