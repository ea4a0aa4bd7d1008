import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { EndpointRecord, PortBinding } from '../../drivers/model.js';
import type { NetworkService } from '../core/network-service.js';
import type { ListenerStatus } from '../dns/dns-server.js';
import { RequestError } from '../errors.js';
import { formatPortSpec, parsePortSpec } from './port-spec.js';

/** What the admin API says of an endpoint's ports. */
export interface EndpointPorts {
  endpoint: string;
  network: string;
  addresses: string[];
  ports: string[];
}

const view = (e: EndpointRecord): EndpointPorts => ({
  endpoint: e.id,
  network: e.networkId,
  addresses: [e.address, e.addressIPv6].filter((a): a is string => a !== undefined),
  ports: e.portBindings.map(formatPortSpec),
});

const sameMapping = (a: PortBinding, b: PortBinding) => a.proto === b.proto && a.hostIp === b.hostIp && a.hostPort === b.hostPort && a.port === b.port;

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
 *   GET  /dns                           the DNS listeners and their states
 */
export function createAdminApp(networks: NetworkService, dns: { listeners(): ListenerStatus[] }, log: Logger): express.Express {
  const app = express();
  app.use(express.json());
  app.get('/ports', (_req, res) => {
    res.json(networks.listEndpoints().filter((e) => e.portBindings.length > 0).map(view));
  });
  app.get('/dns', (_req, res) => {
    res.json(dns.listeners());
  });
  app.post('/ports/add', async (req, res) => {
    const { address, port } = body(req);
    res.json(view(await networks.changePorts(address, (current) => [...current, port])));
  });
  app.post('/ports/rm', async (req, res) => {
    const { address, port } = body(req);
    const updated = await networks.changePorts(address, (current) => {
      const kept = current.filter((b) => !sameMapping(b, port));
      if (kept.length === current.length) throw new RequestError('port', `${formatPortSpec(port)} is not published for ${address}`);
      return kept;
    });
    res.json(view(updated));
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
