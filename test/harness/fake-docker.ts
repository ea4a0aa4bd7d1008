// A stand-in for the Docker Engine API on a unix socket, for tests of what
// tsnet does with what Docker says: sensible answers from a small state,
// garbage, or errors, and an event stream the test can write to or break.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';

export interface FakeContainer {
  id: string;
  name: string;
  /** Network name → its IDs and aliases. */
  networks: Record<string, { networkId: string; endpointId: string; aliases?: string[] }>;
}

export type FakeDockerMode = 'ok' | 'garbage' | 'error';

export class FakeDockerApi {
  mode: FakeDockerMode = 'ok';
  readonly containers = new Map<string, FakeContainer>();
  readonly networks = new Map<string, string>();
  private readonly streams = new Set<ServerResponse>();
  private readonly server = createServer((req, res) => this.answer(req.url ?? '/', res));

  private constructor(readonly socketPath: string) {}

  static async start(socketPath: string): Promise<FakeDockerApi> {
    const fake = new FakeDockerApi(socketPath);
    mkdirSync(dirname(socketPath), { recursive: true });
    rmSync(socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(socketPath, resolve);
    });
    return fake;
  }

  get host(): string {
    return `unix://${this.socketPath}`;
  }

  /** Writes one event to every open event stream. */
  emit(event: { Type: string; Action: string; Actor: { ID: string; Attributes?: Record<string, string> } }): void {
    for (const res of this.streams) res.write(`${JSON.stringify(event)}\n`);
  }

  /** Cuts every open event stream, as a dockerd that goes away does. */
  breakStreams(): void {
    for (const res of this.streams) res.socket?.destroy();
    this.streams.clear();
  }

  async close(): Promise<void> {
    this.breakStreams();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private answer(url: string, res: ServerResponse): void {
    if (this.mode === 'error') return void res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"message":"the fake dockerd fails on purpose"}');
    if (url.startsWith('/events')) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      if (this.mode === 'garbage') return void res.end('{"Type": 42, garbage\n');
      res.flushHeaders();
      this.streams.add(res);
      res.on('close', () => this.streams.delete(res));
      return;
    }
    if (this.mode === 'garbage') return void res.writeHead(200).end('<html>not the Docker API</html>');
    const json = (status: number, body: unknown) => void res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
    if (url === '/containers/json') return json(200, [...this.containers.values()].map((c) => ({ Id: c.id, Names: [`/${c.name}`], State: 'running' })));
    if (url === '/networks') return json(200, [...this.networks].map(([Id, Name]) => ({ Id, Name, Driver: 'tsnet' })));
    const inspect = /^\/containers\/([^/]+)\/json$/.exec(url);
    const container = inspect && this.containers.get(decodeURIComponent(inspect[1]!));
    if (!container) return json(404, { message: 'No such container' });
    const networks = Object.fromEntries(
      Object.entries(container.networks).map(([name, n]) => [name, { NetworkID: n.networkId, EndpointID: n.endpointId, Aliases: n.aliases ?? null }]),
    );
    json(200, { Id: container.id, Name: `/${container.name}`, State: { Running: true }, NetworkSettings: { Networks: networks } });
  }
}
