import type { Server } from 'node:net';

/** Listens on a unix socket path (or an abstract name, `\0name`); rejects with the listen error (EADDRINUSE…). */
export function listenUnix(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Bits a private socket's file never has: only its owner (root) may connect. */
const PRIVATE_UMASK = 0o177;

/**
 * Listens on a unix socket path whose file is 0600 from the moment it
 * exists. A chmod after listen leaves a window in which anyone may connect
 * (and keep the connection), so the file is created under a umask that
 * already leaves group and others out. bind(2) runs synchronously inside
 * server.listen(), so the umask (process-wide) is restored before any other
 * code of this thread creates a file.
 */
export function listenPrivately(server: Server, path: string): Promise<void> {
  const previous = process.umask(PRIVATE_UMASK);
  try {
    return listenUnix(server, path);
  } finally {
    process.umask(previous);
  }
}
