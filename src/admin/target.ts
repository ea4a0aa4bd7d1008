import type { Command } from 'commander';
import { adminSocketPath, DEFAULT_SOCKET_DIR } from './socket-path.js';

/** Which daemon an admin command talks to: the same --name and --socket-dir it was started with. */
export interface Target {
  name: string;
  socketDir: string;
  /** The socket itself, for a daemon started with --admin-socket (the managed plugin's). */
  adminSocket?: string;
}

export const withTarget = (command: Command): Command =>
  command
    .option('--name <name>', 'plugin name of the daemon', 'tsnet')
    .option('--socket-dir <dir>', "the daemon's --socket-dir", DEFAULT_SOCKET_DIR)
    .option('--admin-socket <path>', "the daemon's admin socket, when it was started with --admin-socket (managed plugin: /run/docker/plugins/<plugin id>/tsnet.admin.sock)");

export const adminSocketOf = (opts: Target): string => opts.adminSocket ?? adminSocketPath(opts.socketDir, opts.name);
