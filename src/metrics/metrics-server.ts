import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { parseIp } from '../net/address.js';

export interface MetricsAddress {
  host: string;
  port: number;
}

const FORM = /^(?:\[(?<v6>[0-9A-Fa-f:.]+)\]|(?<v4>[0-9.]+)):(?<port>\d+)$/;

const isLoopback = (host: string) => host === '::1' || host.startsWith('127.');

/**
 * `--metrics IP:PORT` (`[IPv6]:PORT`). Metrics say which containers and
 * subnets a host has: a non-loopback address is refused unless the operator
 * says --metrics-public.
 */
export function parseMetricsAddress(text: string, allowPublic: boolean): MetricsAddress {
  const match = FORM.exec(text);
  const host = match?.groups?.v6 ?? match?.groups?.v4;
  const port = Number(match?.groups?.port);
  if (!host || !parseIp(host) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`--metrics "${text}" is not IP:PORT (e.g. 127.0.0.1:9464, [::1]:9464)`);
  }
  if (!allowPublic && !isLoopback(host)) {
    throw new Error(`--metrics ${text} is not a loopback address: metrics show this host's networks and containers; add --metrics-public to serve them there anyway`);
  }
  return { host, port };
}

/** Serves GET /metrics (Prometheus text); a port already taken is a start-up error naming it. */
export function serveMetrics(address: MetricsAddress, registry: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('tsnet serves GET /metrics only\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      (error: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${String(error)}\n`),
    );
  });
  const where = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') reject(new Error(`--metrics ${where}: the port is taken by another program; choose another port`));
      else if (error.code === 'EADDRNOTAVAIL') reject(new Error(`--metrics ${where}: this host has no such address`));
      else reject(new Error(`--metrics ${where}: ${error.message}`));
    });
    server.listen(address.port, address.host, () => resolve(server));
  });
}
