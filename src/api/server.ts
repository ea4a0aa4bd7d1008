import express, { type Express, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { RequestError } from '../errors.js';
import type { InFlight } from '../in-flight.js';
import { decode, type Route } from './route.js';

const IMPLEMENTS = { Implements: ['NetworkDriver', 'IpamDriver'] };

/** The ids a request names, shortened, for the one log line per request. */
function idsOf(body: unknown): Record<string, string> {
  const ids: Record<string, string> = {};
  if (typeof body !== 'object' || body === null) return ids;
  for (const key of ['NetworkID', 'EndpointID', 'PoolID', 'Address', 'Pool'] as const) {
    const value = (body as Record<string, unknown>)[key];
    if (typeof value === 'string' && value !== '') ids[key] = key.endsWith('ID') && value.length === 64 ? value.slice(0, 12) : value;
  }
  return ids;
}

/** Runs a request's work in a context of the daemon's (OwnChanges: what it changes is tsnet's own); `networkId`: the network it concerns, if any. */
export type RequestScope = <T>(networkId: string | undefined, work: () => Promise<T>) => Promise<T>;

/** Told of every answered plugin request (metrics): its method, how it ended, and how long it took. */
export type RequestObserver = (method: string, outcome: 'ok' | 'refused' | 'failed', seconds: number) => void;

/**
 * The plugin API as an express app: POST /<Subsystem>.<Method>, JSON in and
 * out, every failure HTTP 500 with {"Err": "<field>: <reason>"}.
 */
export function createApp(routes: readonly Route[], log: Logger, inFlight: InFlight, observe: RequestObserver = () => {}, around: RequestScope = (_networkId, work) => work()): Express {
  const app = express();
  app.disable('x-powered-by');
  // dockerd sends no Content-Type: take every body as text and decode it ourselves.
  app.use(express.text({ type: () => true, limit: '1mb' }));
  app.post('/Plugin.Activate', (_req, res) => {
    res.json(IMPLEMENTS);
  });
  for (const r of routes) {
    app.post(`/${r.method}`, async (req: Request, res: Response) => {
      const started = process.hrtime.bigint();
      const raw = typeof req.body === 'string' ? req.body : '';
      let ids: Record<string, string> = {};
      try {
        const request = decode(r.schema, raw);
        ids = idsOf(request);
        const networkId = (request as { NetworkID?: unknown }).NetworkID;
        res.json(await inFlight.track(() => around(typeof networkId === 'string' ? networkId : undefined, async () => r.handle(request))));
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log.info({ method: r.method, ...ids, ms }, 'ok');
        observe(r.method, 'ok', ms / 1e3);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        if (error instanceof RequestError) log.warn({ method: r.method, ...ids, ms, err: message }, 'refused');
        else log.error({ method: r.method, ...ids, ms, err: error }, 'failed');
        observe(r.method, error instanceof RequestError ? 'refused' : 'failed', ms / 1e3);
        res.status(500).json({ Err: message });
      }
    });
  }
  app.use((req: Request, res: Response) => {
    res.status(404).json({ Err: `unknown method ${req.method} ${req.path}` });
  });
  // A body express itself could not read (too large, broken stream) still answers in protocol form.
  app.use((error: Error, _req: Request, res: Response, _next: unknown) => {
    res.status(500).json({ Err: `body: ${error.message}` });
  });
  return app;
}
