import type { Command } from 'commander';
import { adminSocketPath, DEFAULT_SOCKET_DIR } from './socket-path.js';

/** Which daemon an admin command talks to: the same --name and --socket-dir it was started with. */
export interface Target {
  name: string;
  socketDir: string;
}

export const withTarget = (command: Command): Command =>
  command.option('--name <name>', 'plugin name of the daemon', 'tsnet').option('--socket-dir <dir>', "the daemon's --socket-dir", DEFAULT_SOCKET_DIR);

export const adminSocketOf = (opts: Target): string => adminSocketPath(opts.socketDir, opts.name);
