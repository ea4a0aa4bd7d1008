#!/usr/bin/env node
import { Command, Option } from 'commander';
import { portCommand } from './admin/port-command.js';
import { DEFAULT_SOCKET_DIR } from './admin/socket-path.js';
import { startDaemon } from './daemon.js';
import { createLogger, type LogLevel } from './log.js';

const program = new Command('tsnet').description('Docker network plugin: bridge and macvlan networks with their own IPAM');

program
  .command('daemon')
  .description('serve the NetworkDriver and IpamDriver plugin API on <socket-dir>/<name>.sock')
  .option('--name <name>', 'plugin name: the driver name for docker network create -d', 'tsnet')
  .option('--socket-dir <dir>', 'where dockerd looks for plugin sockets', DEFAULT_SOCKET_DIR)
  .option('--state-dir <dir>', 'where tsnet keeps its state (SQLite)', '/var/lib/tsnet')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']).default('info'))
  .option('--default-pools <list>', 'IPv4 pools for networks without --subnet, as base/len/size,… (default: Docker\'s)')
  .option('--default-pools-v6 <list>', 'IPv6 pools for networks without an IPv6 --subnet, as base/len/size,…')
  .action(async (opts: { name: string; socketDir: string; stateDir: string; logLevel: LogLevel; defaultPools?: string; defaultPoolsV6?: string }) => {
    const log = createLogger(opts.logLevel);
    const daemon = await startDaemon(
      {
        name: opts.name,
        socketDir: opts.socketDir,
        stateDir: opts.stateDir,
        ...(opts.defaultPools ? { defaultPoolsV4: opts.defaultPools } : {}),
        ...(opts.defaultPoolsV6 ? { defaultPoolsV6: opts.defaultPoolsV6 } : {}),
      },
      log,
    );
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      daemon.stop().then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, 'unclean stop');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

program.addCommand(portCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`tsnet: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
