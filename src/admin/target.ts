import type { Command } from 'commander';
import { adminSocketPath } from '../daemon.js';

/** Which daemon an admin command talks to: the same --name and --socket-dir it was started with. */
export interface Target {
  name: string;
  socketDir: string;
}

export const withTarget = (command: Command): Command =>
  command.option('--name <name>', 'plugin name of the daemon', 'tsnet').option('--socket-dir <dir>', "the daemon's --socket-dir", '/run/docker/plugins');

export const adminSocketOf = (opts: Target): string => adminSocketPath(opts.socketDir, opts.name);
