import { dirname, join, resolve } from 'node:path';

/** Where dockerd looks for plugin sockets. */
export const DEFAULT_SOCKET_DIR = '/run/docker/plugins';

/**
 * The admin socket (`tsnet port …`) of the daemon serving <socket-dir>/<name>.sock.
 * Never in the plugin directory, where dockerd takes every socket for a
 * plugin: /run/tsnet/<name>.admin.sock, or beside another --socket-dir D, in
 * D/../tsnet/, so daemons of several simulated hosts on one machine never
 * meet. The CLI finds it from the same --name and --socket-dir.
 */
export function adminSocketPath(socketDir: string, name: string): string {
  const dir = resolve(socketDir) === DEFAULT_SOCKET_DIR ? '/run/tsnet' : join(dirname(resolve(socketDir)), 'tsnet');
  return join(dir, `${name}.admin.sock`);
}
