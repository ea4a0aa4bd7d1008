// Talking to daemons over their unix sockets without any client library.
import { request } from 'node:http';
import { connect } from 'node:net';

/** True if something accepts a connection on `socketPath` (a stale socket file gives ECONNREFUSED). */
export function socketAccepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(socketPath);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** GET `path` over the unix socket; resolves with status and body, rejects on connection errors. */
export function httpGetUnix(socketPath: string, path: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on ${socketPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
