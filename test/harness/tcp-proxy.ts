// A TCP relay on 127.0.0.1 in the test process: a client dialling it reaches
// `target` until cut() drops every connection and refuses new ones — what a
// host that died or lost the network looks like from the server's side,
// while the client itself keeps running — and again after mend(). With
// `latencyMs`, every chunk is relayed that long after it arrived, both ways:
// a slow network or a slow server as the client sees it.
import { createConnection, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** `127.0.0.1:port`, to dial instead of the target. */
  endpoint: string;
  /** Drops every connection and refuses new ones. */
  cut(): void;
  /** Relays new connections again. */
  mend(): void;
  close(): Promise<void>;
}

export function startTcpProxy(targetHost: string, targetPort: number, opts: { latencyMs?: number } = {}): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: targetHost, port: targetPort });
    track(client);
    track(upstream);
    relay(client, upstream, opts.latencyMs ?? 0);
    relay(upstream, client, opts.latencyMs ?? 0);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const dropAll = () => sockets.forEach((s) => s.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address !== 'object' || !address) return reject(new Error('tcp proxy: no address'));
      resolve({
        endpoint: `127.0.0.1:${address.port}`,
        cut: () => {
          cut = true;
          dropAll();
        },
        mend: () => {
          cut = false;
        },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            dropAll();
          }),
      });
    });
  });
}

/** Copies `from` into `to`, each chunk `latencyMs` late (timers of one delay fire in order). */
function relay(from: Socket, to: Socket, latencyMs: number): void {
  if (latencyMs === 0) {
    from.pipe(to);
    return;
  }
  from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), latencyMs));
  from.on('end', () => setTimeout(() => to.end(), latencyMs));
}
