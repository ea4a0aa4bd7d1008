import type { Command } from 'commander';
import { adminSocketPath } from '../daemon.js';

/** Which daemon a CLI command talks to: its --name and --socket-dir. */
export interface Target {
  name: string;
  socketDir: string;
}

/** Adds --name and --socket-dir, with the daemon's defaults. */
export const withTarget = (command: Command) =>
  command.option('--name <name>', 'plugin name of the daemon', 'tsnet').option('--socket-dir <dir>', 'the daemon\'s --socket-dir', '/run/docker/plugins');

export const adminSocket = (target: Target) => adminSocketPath(target.socketDir, target.name);
