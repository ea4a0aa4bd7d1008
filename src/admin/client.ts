import { request } from 'node:http';

/** One admin API call over the unix socket; a non-2xx answer becomes an Error with the daemon's message. */
export function adminCall(socketPath: string, method: 'GET' | 'POST', path: string, payload?: unknown): Promise<unknown> {
  const text = payload === undefined ? '' : JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path, method, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (data += chunk));
        res.on('end', () => {
          let parsed: { Err?: string } | undefined;
          try {
            parsed = data ? (JSON.parse(data) as { Err?: string }) : undefined;
          } catch {
            reject(new Error(`${socketPath} gave an answer that is not JSON (HTTP ${res.statusCode}): is it a tsnet admin socket of the same version?`));
            return;
          }
          if ((res.statusCode ?? 500) >= 300) reject(new Error(parsed?.Err ?? `HTTP ${res.statusCode}`));
          else resolve(parsed);
        });
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => {
      const hint = error.code === 'ENOENT' || error.code === 'ECONNREFUSED' ? ' (is it running? give the --name and --socket-dir, or --admin-socket, it was started with)' : '';
      reject(new Error(`cannot reach the tsnet daemon at ${socketPath}: ${error.message}${hint}`));
    });
    req.end(text);
  });
}
