#!/usr/bin/env node
import { Command, Option } from 'commander';
import { clusterCommand } from './admin/cluster-command.js';
import { dnsCommand } from './admin/dns-command.js';
import { doctorCommand } from './admin/doctor-command.js';
import { inventoryCommands } from './admin/inventory-command.js';
import { portCommand } from './admin/port-command.js';
import { DEFAULT_SOCKET_DIR } from './admin/socket-path.js';
import { clusterConfig, type ClusterFlags } from './cluster/cluster-config.js';
import { startDaemon } from './daemon.js';
import { dnsAddressFlag, dnsDomainFlag, dnsRecursionFromFlag } from './dns/dns-address.js';
import { installServiceCommand } from './service/install-service.js';
import { createLogger, type LogFormat, type LogLevel } from './log.js';
import { parseMetricsAddress } from './metrics/metrics-server.js';
import { FIREWALL_KINDS, type FirewallKind } from './sys/index.js';

interface DaemonFlags {
  name: string;
  socketDir: string;
  stateDir: string;
  adminSocket?: string;
  netnsDir?: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  metrics?: string;
  metricsPublic?: boolean;
  defaultPools?: string;
  defaultPoolsV6?: string;
  firewall?: FirewallKind;
  dockerHost: string;
  dnsDomain: string;
  dnsListen: string[];
  dnsUpstream: string[];
  dnsResolvConf: string;
  dnsRecursionFrom: string[];
  driftWatch: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

const program = new Command('tsnet').description('Docker network plugin: bridge, overlay, macvlan and ipvlan networks with their own IPAM');

program
  .command('daemon')
  .description('serve the NetworkDriver and IpamDriver plugin API on <socket-dir>/<name>.sock')
  .option('--name <name>', 'plugin name: the driver name for docker network create -d', 'tsnet')
  .option('--socket-dir <dir>', 'where dockerd looks for plugin sockets', DEFAULT_SOCKET_DIR)
  .option('--state-dir <dir>', 'where tsnet keeps its state (SQLite)', '/var/lib/tsnet')
  .option('--admin-socket <path>', 'where the admin API (tsnet ls, port, cluster) listens (default: /run/tsnet/<name>.admin.sock, or <socket-dir>/../tsnet/)')
  .option('--netns-dir <dir>', "dockerd's <exec-root>/netns as this daemon sees it, when it runs in another mount namespace (the managed plugin)")
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error']).default('info').env('TSNET_LOG_LEVEL'))
  .addOption(new Option('--log-format <format>', 'json: one line per event (journald, docker logs); pretty: for a terminal').choices(['json', 'pretty']).default('json').env('TSNET_LOG_FORMAT'))
  .addOption(new Option('--metrics <ip:port>', 'serve Prometheus metrics on http://IP:PORT/metrics (loopback only unless --metrics-public); default off').env('TSNET_METRICS'))
  .option('--metrics-public', 'allow --metrics on an address other hosts can reach')
  .option('--default-pools <list>', 'IPv4 pools for networks without --subnet, as base/len/size,… (default: Docker\'s)')
  .option('--default-pools-v6 <list>', 'IPv6 pools for networks without an IPv6 --subnet, as base/len/size,…')
  .addOption(new Option('--firewall <backend>', 'packet filter for NAT, published ports and isolation (default: nftables where nft works, else iptables)').choices(FIREWALL_KINDS))
  .option('--cluster-store <url>', 'share pools with other hosts through etcd: etcd://HOST:PORT[,HOST:PORT…]')
  .option('--cluster-ca <file>', 'CA certificate (PEM) of the etcd cluster: talk TLS')
  .option('--cluster-cert <file>', 'client certificate (PEM) for etcd')
  .option('--cluster-key <file>', 'client key (PEM) for etcd')
  .option('--cluster-store-user <name>', 'etcd user, when etcd has authentication enabled (with --cluster-store-password-file)')
  .option('--cluster-store-password-file <file>', "file holding that user's password (never on the command line: other users see it there)")
  .option('--host-id <id>', "this host's name in the cluster (default: the hostname)")
  .option('--reclaim-after <duration>', "free the addresses of a host seen dead this long (90s, 10m, 2h…); default never")
  .option('--advertise-address <ip>', "where the other hosts send this host's overlay traffic (default: the source address of the route to the first etcd member)")
  .option('--vxlan-port <port>', 'UDP port of overlay traffic, the same on every host (default 4789)')
  .option('--no-drift-watch', 'do not repair what others change of tsnet\'s links and rules while it runs (tsnet doctor --fix still does)')
  .option('--docker-host <url>', 'Docker API for container names (unix:///path or tcp://host:port)', 'unix:///var/run/docker.sock')
  .option('--dns-domain <domain>', 'DNS names are <container>.<network>.<domain>', 'tsnet')
  .option('--dns-listen <ip:port>', 'serve every network\'s names here too (repeatable; none by default)', collect, [])
  .option('--dns-upstream <ip:port>', 'forward other names here (repeatable; default: the nameservers of --dns-resolv-conf)', collect, [])
  .option('--dns-resolv-conf <path>', 'where the upstreams are when no --dns-upstream is given (read again when it changes)', '/etc/resolv.conf')
  .option('--dns-recursion-from <cidr>', "also resolve other names for askers of this subnet (repeatable; default: only the host and tsnet's containers)", collect, [])
  .action(async (opts: DaemonFlags & ClusterFlags) => {
    // An empty TSNET_METRICS (the managed plugin's default) means off.
    const metrics = opts.metrics ? parseMetricsAddress(opts.metrics, opts.metricsPublic === true) : undefined;
    const log = createLogger(opts.logLevel, opts.logFormat);
    const cluster = clusterConfig(opts);
    const daemon = await startDaemon(
      {
        name: opts.name,
        socketDir: opts.socketDir,
        stateDir: opts.stateDir,
        dockerHost: opts.dockerHost,
        // The managed plugin's manifest says how its users point it at dockerd (a mount setting, not a flag).
        ...(process.env.TSNET_DOCKER_HOST_SETTING ? { dockerHostSetting: process.env.TSNET_DOCKER_HOST_SETTING } : {}),
        watchDrift: opts.driftWatch,
        dns: {
          domain: dnsDomainFlag(opts.dnsDomain),
          listen: opts.dnsListen.map((text) => dnsAddressFlag('--dns-listen', text)),
          upstreams: opts.dnsUpstream.map((text) => dnsAddressFlag('--dns-upstream', text)),
          resolvConf: opts.dnsResolvConf,
          recursionFrom: opts.dnsRecursionFrom.map(dnsRecursionFromFlag),
        },
        ...(opts.adminSocket ? { adminSocket: opts.adminSocket } : {}),
        ...(opts.netnsDir ? { netnsDir: opts.netnsDir } : {}),
        ...(metrics ? { metrics } : {}),
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

for (const command of inventoryCommands()) program.addCommand(command);
program.addCommand(portCommand());
program.addCommand(clusterCommand());
program.addCommand(dnsCommand());
program.addCommand(doctorCommand());
program.addCommand(installServiceCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`tsnet: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
