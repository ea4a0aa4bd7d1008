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
  return httpUnix(socketPath, 'GET', path, undefined, timeoutMs);
}

/** POST a raw body without a Content-Type, exactly as dockerd calls plugins. */
export function httpPostUnix(socketPath: string, path: string, body: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return httpUnix(socketPath, 'POST', path, body, timeoutMs);
}

function httpUnix(socketPath: string, method: string, path: string, payload: string | undefined, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = payload === undefined ? {} : { 'Content-Length': Buffer.byteLength(payload) };
    const req = request({ socketPath, path, method, headers, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} on ${socketPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}
