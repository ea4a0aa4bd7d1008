import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { EndpointRecord, PortBinding, PublishedPort } from '../../drivers/model.js';
import type { Cluster } from '../cluster/cluster.js';
import type { NetworkService } from '../core/network-service.js';
import type { ListenerStatus } from '../dns/dns-server.js';
import { RequestError } from '../errors.js';
import type { InFlight } from '../in-flight.js';
import type { Reconciler } from '../repair/reconciler.js';
import type { Drift } from '../sys/drift.js';
import type { Inventory } from './inventory.js';
import { formatPortSpec, parsePortSpec } from './port-spec.js';

/** What the admin API says of an endpoint's ports. */
export interface EndpointPorts {
  endpoint: string;
  network: string;
  addresses: string[];
  ports: string[];
}

/** What the admin API works on. */
export interface AdminParts {
  networks: NetworkService;
  /** The requests being served; its changing handlers count here too, so shutdown waits for them. */
  inFlight: InFlight;
  inventory: Inventory;
  dns: { listeners(): ListenerStatus[] };
  /** `tsnet doctor`: compares the records with the kernel, and repairs. */
  reconciler: Reconciler;
  /** Present with --cluster-store. */
  cluster?: ClusterAdmin;
}

/** What the admin API asks of the cluster room. */
export type ClusterAdmin = Pick<Cluster, 'report' | 'gc' | 'conflicts' | 'rotateKey'>;

/** `tsnet doctor`'s answer: the kernel's differences, and this host's addresses the cluster store gives to others. */
export interface DoctorReport {
  drift: Drift[];
  clusterConflicts: string[];
}

/** Whether `spec` (what a user typed) names the published port: its chosen host port, on the address it asked or got. */
const names = (spec: PortBinding, published: PublishedPort) =>
  spec.proto === published.binding.proto &&
  spec.port === published.binding.port &&
  spec.hostPort === published.hostPort &&
  (spec.hostIp === published.hostIp || spec.hostIp === published.binding.hostIp);

function body(req: Request): { address: string; port: PortBinding } {
  const { address, port } = (req.body ?? {}) as { address?: unknown; port?: unknown };
  if (typeof address !== 'string' || address === '') throw new RequestError('address', 'must be the container IP address');
  if (typeof port !== 'string') throw new RequestError('port', 'must be [hostip:]hostport:port[/proto]');
  return { address, port: parsePortSpec(port) };
}

/**
 * The local admin API (`tsnet port …`), on its own 0600 socket: never on
 * the plugin socket, which dockerd alone talks to.
 *   GET  /ports                         endpoints with their published ports
 *   POST /ports/add {address, port}     publish one more port of a running container
 *   POST /ports/rm  {address, port}     take one away
 *   GET  /cluster                       hosts, shared pools, this host's orphans (`tsnet cluster ls`)
 *   POST /cluster/gc {host?}            free a dead host's addresses, or this host's orphans
 *   POST /cluster/rotate-key {network}  replace an encrypted overlay segment's key on every host
 *   GET  /dns                           the DNS listeners and their states
 *   GET  /networks                      the networks (`tsnet ls`)
 *   GET  /inspect?q=NETWORK|ENDPOINT|ADDRESS   one of them in detail (`tsnet inspect`)
 *   GET  /doctor                        the differences between the records and the kernel
 *   POST /doctor/fix                    repair them (`tsnet doctor --fix`)
 */
export function createAdminApp({ networks, dns, inFlight, inventory, reconciler, cluster }: AdminParts, log: Logger): express.Express {
  // What is open, not what was asked: `-p 80` shows the host port it got.
  const view = (e: EndpointRecord): EndpointPorts => ({
    endpoint: e.id,
    network: e.networkId,
    addresses: [e.address, e.addressIPv6].filter((a): a is string => a !== undefined),
    ports: networks.publishedPorts(e).map((p) => formatPortSpec({ ...p.binding, hostIp: p.hostIp, hostPort: p.hostPort, hostPortEnd: p.hostPort })),
  });
  const app = express();
  app.use(express.json());
  /** A handler that changes state: shutdown waits for it. */
  const changing = (handler: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response) => inFlight.track(() => handler(req, res));
  app.get('/ports', (_req, res) => {
    res.json(networks.listEndpoints().map(view).filter((e) => e.ports.length > 0));
  });
  app.get('/dns', (_req, res) => {
    res.json(dns.listeners());
  });
  app.post('/ports/add', changing(async (req, res) => {
    const { address, port } = body(req);
    res.json(view(await networks.changePorts(address, (current) => [...current.map((p) => p.binding), port])));
  }));
  app.post('/ports/rm', changing(async (req, res) => {
    const { address, port } = body(req);
    const updated = await networks.changePorts(address, (current) => {
      const kept = current.filter((p) => !names(port, p));
      if (kept.length === current.length) throw new RequestError('port', `${formatPortSpec(port)} is not published for ${address}`);
      return kept.map((p) => p.binding);
    });
    res.json(view(updated));
  }));
  app.get('/networks', (_req, res) => {
    res.json(inventory.list());
  });
  app.get('/inspect', (req, res) => {
    res.json(inventory.inspect(typeof req.query.q === 'string' ? req.query.q : ''));
  });
  // Conflicts are reported, never "fixed": the other host's container may be the one using the address.
  app.get('/doctor', async (_req, res) => {
    res.json({ drift: await reconciler.check(), clusterConflicts: cluster?.conflicts() ?? [] } satisfies DoctorReport);
  });
  app.post('/doctor/fix', changing(async (_req, res) => {
    res.json({ ...(await reconciler.fix('tsnet doctor --fix')), clusterConflicts: cluster?.conflicts() ?? [] });
  }));
  const clusterOf = (): ClusterAdmin => {
    if (!cluster) throw new RequestError('cluster', 'this tsnet daemon runs without --cluster-store');
    return cluster;
  };
  app.get('/cluster', async (_req, res) => {
    const plain = (address: string | undefined) => address?.split('/')[0];
    const attached = new Set(networks.listEndpoints().flatMap((e) => [plain(e.address), plain(e.addressIPv6)].filter((a): a is string => a !== undefined)));
    res.json(await clusterOf().report(attached));
  });
  app.post('/cluster/gc', changing(async (req, res) => {
    const { host } = (req.body ?? {}) as { host?: unknown };
    if (host !== undefined && typeof host !== 'string') throw new RequestError('host', 'must be a host ID');
    res.json(await clusterOf().gc(host));
  }));
  app.post('/cluster/rotate-key', changing(async (req, res) => {
    const { network } = (req.body ?? {}) as { network?: unknown };
    if (typeof network !== 'string' || network === '') throw new RequestError('network', 'must be a network name or ID');
    const found = inventory.inspect(network);
    const overlay = found.type === 'network' ? found.network.overlay : undefined;
    if (!overlay?.encrypted) throw new RequestError('network', `${network} is no encrypted overlay network of this host`);
    res.json(await clusterOf().rotateKey(overlay.pool));
  }));
  app.use((req: Request, res: Response) => {
    res.status(404).json({ Err: `the daemon knows no ${req.method} ${req.path} (a tsnet daemon of another version?)` });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof RequestError) {
      res.status(400).json({ Err: error.message });
      return;
    }
    log.error({ err: error }, 'admin request failed');
    res.status(500).json({ Err: error instanceof Error ? error.message : String(error) });
  });
  return app;
}
