import { type IncomingMessage, request, type RequestOptions } from 'node:http';
import { z } from 'zod';
import { ContainerDetails, ContainerSummary, DockerEvent, NetworkSummary } from './messages.js';

/** Where the Docker Engine API listens: a unix socket or a plain TCP address. */
export type DockerAddress = { socketPath: string } | { host: string; port: number };

/** `unix:///var/run/docker.sock` or `tcp://host:port`, as in DOCKER_HOST (no TLS). */
export function parseDockerHost(text: string): DockerAddress {
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new Error(`--docker-host ${text}: the unix socket path must be absolute`);
    return { socketPath };
  }
  const tcp = /^tcp:\/\/(\[[0-9a-fA-F:]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(text);
  if (tcp && Number(tcp[2]) <= 65535) return { host: tcp[1]!.replace(/^\[|\]$/g, ''), port: Number(tcp[2]) };
  throw new Error(`--docker-host ${text}: expected unix:///path or tcp://host:port`);
}

/** An answer of dockerd other than 2xx; `status` 404 means "no such object". */
export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DockerApiError';
  }
}

/**
 * Every request tsnet may send dockerd, as `METHOD path`: reads of
 * containers, networks and events, nothing else. Access to the Docker API
 * is root on the host, and the daemon holding it also parses DNS from
 * containers and the LAN; whatever goes wrong there, the one function that
 * talks to dockerd (dockerRequest) sends nothing this list does not name.
 */
const ALLOWED_REQUESTS: readonly RegExp[] = [
  /^GET \/containers\/json$/,
  /^GET \/containers\/[A-Za-z0-9][A-Za-z0-9_.-]*\/json$/,
  /^GET \/networks$/,
  // encodeURIComponent of the JSON filter.
  /^GET \/events\?filters=[A-Za-z0-9%._~*'()!-]*$/,
];

/**
 * Sends one request to dockerd: the only place that does. A request the
 * allow-list does not name is refused before any connection is made.
 */
export function dockerRequest(address: DockerAddress, method: string, path: string, signal: AbortSignal): Promise<IncomingMessage> {
  const line = `${method} ${path}`;
  if (!ALLOWED_REQUESTS.some((allowed) => allowed.test(line))) {
    return Promise.reject(new Error(`refused to send "${line.slice(0, 200)}" to dockerd: tsnet only reads containers, networks and events`));
  }
  const target: RequestOptions = 'socketPath' in address ? { socketPath: address.socketPath } : { host: address.host, port: address.port };
  return new Promise((resolve, reject) => {
    const req = request({ ...target, method, path, signal, headers: { Host: 'docker' } }, resolve);
    req.on('error', reject);
    req.end();
  });
}

/** Upper bound of one non-streaming answer: a listing of thousands of containers fits. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;
/** One event is a few hundred bytes; a longer line is garbage. */
const MAX_EVENT_BYTES = 1024 * 1024;

export interface DockerApiOptions {
  /** Upper bound of one non-streaming call (default 10 s). */
  timeoutMs?: number;
}

/**
 * A small client of the Docker Engine API: listings, inspect and the event
 * stream, each answer checked against its schema, each request through
 * dockerRequest's allow-list. Nothing in a plugin
 * request handler may await it: dockerd may be waiting for that very request.
 */
export class DockerApi {
  private readonly timeoutMs: number;

  constructor(
    readonly address: DockerAddress,
    options: DockerApiOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Running containers. */
  listContainers(): Promise<ContainerSummary[]> {
    return this.getJson('/containers/json', z.array(ContainerSummary));
  }

  /** undefined when the container does not exist (any more). */
  async inspectContainer(id: string): Promise<ContainerDetails | undefined> {
    try {
      return await this.getJson(`/containers/${encodeURIComponent(id)}/json`, ContainerDetails);
    } catch (error) {
      if (error instanceof DockerApiError && error.status === 404) return undefined;
      throw error;
    }
  }

  listNetworks(): Promise<NetworkSummary[]> {
    return this.getJson('/networks', z.array(NetworkSummary));
  }

  /**
   * Subscribes to events of the given types from now on. Resolves once
   * dockerd accepted the subscription; the iterator ends when the stream
   * does, and throws on garbage or a broken connection. `signal` ends it.
   */
  async events(types: readonly string[], signal: AbortSignal): Promise<AsyncIterable<DockerEvent>> {
    const filters = encodeURIComponent(JSON.stringify({ type: types }));
    const res = await dockerRequest(this.address, 'GET', `/events?filters=${filters}`, signal);
    if (res.statusCode !== 200) throw await this.failure(res);
    return eventLines(res);
  }

  private async getJson<T>(path: string, schema: z.ZodType<T>): Promise<T> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const res = await dockerRequest(this.address, 'GET', path, signal);
    if (res.statusCode !== 200) throw await this.failure(res);
    const text = await readBody(res);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`GET ${path}: dockerd answered something that is not JSON`);
    }
    const result = schema.safeParse(parsed);
    if (!result.success) throw new Error(`GET ${path}: unexpected answer (${result.error.issues[0]?.path.join('.')}: ${result.error.issues[0]?.message})`);
    return result.data;
  }

  private async failure(res: IncomingMessage): Promise<DockerApiError> {
    const text = await readBody(res).catch(() => '');
    let message = text.trim();
    try {
      message = String((JSON.parse(text) as { message?: unknown }).message ?? message);
    } catch {
      // not JSON: keep the text
    }
    return new DockerApiError(res.statusCode ?? 0, `dockerd answered ${res.statusCode}: ${message.slice(0, 200)}`);
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) res.destroy(new Error(`dockerd's answer is larger than ${MAX_BODY_BYTES} bytes`));
      else chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** dockerd writes one JSON object per line. */
async function* eventLines(res: IncomingMessage): AsyncIterable<DockerEvent> {
  let pending = '';
  for await (const chunk of res) {
    pending += (chunk as Buffer).toString('utf8');
    if (pending.length > MAX_EVENT_BYTES) throw new Error('the event stream sent a line longer than 1 MiB');
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error('the event stream sent something that is not JSON');
      }
      const event = DockerEvent.safeParse(parsed);
      if (!event.success) throw new Error(`the event stream sent an unexpected object (${event.error.issues[0]?.path.join('.')}: ${event.error.issues[0]?.message})`);
      yield event.data;
    }
  }
}
