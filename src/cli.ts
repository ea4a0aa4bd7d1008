#!/usr/bin/env node
import { Command, Option } from 'commander';
import { clusterCommand } from './admin/cluster-command.js';
import { portCommand } from './admin/port-command.js';
import { DEFAULT_SOCKET_DIR } from './admin/socket-path.js';
import { clusterConfig, type ClusterFlags } from './cluster/cluster-config.js';
import { startDaemon } from './daemon.js';
import { createLogger, type LogLevel } from './log.js';
import { FIREWALL_KINDS, type FirewallKind } from './sys/index.js';

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
  .addOption(new Option('--firewall <backend>', 'packet filter for NAT, published ports and isolation (default: nftables where nft works, else iptables)').choices(FIREWALL_KINDS))
  .option('--cluster-store <url>', 'share pools with other hosts through etcd: etcd://HOST:PORT[,HOST:PORT…]')
  .option('--cluster-ca <file>', 'CA certificate (PEM) of the etcd cluster: talk TLS')
  .option('--cluster-cert <file>', 'client certificate (PEM) for etcd')
  .option('--cluster-key <file>', 'client key (PEM) for etcd')
  .option('--host-id <id>', "this host's name in the cluster (default: the hostname)")
  .option('--reclaim-after <duration>', "free the addresses of a host seen dead this long (90s, 10m, 2h…); default never")
  .action(async (opts: { name: string; socketDir: string; stateDir: string; logLevel: LogLevel; firewall?: FirewallKind; defaultPools?: string; defaultPoolsV6?: string } & ClusterFlags) => {
    const log = createLogger(opts.logLevel);
    const cluster = clusterConfig(opts);
    const daemon = await startDaemon(
      {
        name: opts.name,
        socketDir: opts.socketDir,
        stateDir: opts.stateDir,
        ...(opts.firewall ? { firewall: opts.firewall } : {}),
        ...(opts.defaultPools ? { defaultPoolsV4: opts.defaultPools } : {}),
        ...(opts.defaultPoolsV6 ? { defaultPoolsV6: opts.defaultPoolsV6 } : {}),
        ...(cluster ? { cluster } : {}),
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
program.addCommand(clusterCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`tsnet: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
