import { Command } from 'commander';
import { adminSocketPath, DEFAULT_SOCKET_DIR } from './socket-path.js';
import { adminCall } from './client.js';
import type { EndpointPorts } from './server.js';

interface Target {
  name: string;
  socketDir: string;
}

const print = (e: EndpointPorts) => process.stdout.write(`${e.addresses.join(' ')}\t${e.ports.join(' ') || '-'}\n`);

/** `tsnet port add|rm|ls`: published ports of running containers, through the daemon's admin socket. */
export function portCommand(): Command {
  const port = new Command('port').description('publish or unpublish ports of a running container on a tsnet bridge network');
  const withTarget = (command: Command) =>
    command
      .option('--name <name>', 'plugin name of the daemon', 'tsnet')
      .option('--socket-dir <dir>', 'the daemon\'s --socket-dir', DEFAULT_SOCKET_DIR);
  const socket = (opts: Target) => adminSocketPath(opts.socketDir, opts.name);

  withTarget(port.command('add <container-ip> <port>'))
    .description('publish [hostip:]hostport:port[/tcp|udp|sctp] for the container with this IP')
    .action(async (address: string, spec: string, opts: Target) => {
      print((await adminCall(socket(opts), 'POST', '/ports/add', { address, port: spec })) as EndpointPorts);
    });
  withTarget(port.command('rm <container-ip> <port>'))
    .description('take away a port published with -p or `tsnet port add`')
    .action(async (address: string, spec: string, opts: Target) => {
      print((await adminCall(socket(opts), 'POST', '/ports/rm', { address, port: spec })) as EndpointPorts);
    });
  withTarget(port.command('ls'))
    .description('list endpoints with published ports')
    .action(async (opts: Target) => {
      ((await adminCall(socket(opts), 'GET', '/ports')) as EndpointPorts[]).forEach(print);
    });
  return port;
}
