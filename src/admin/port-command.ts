import { Command } from 'commander';
import { adminCall } from './client.js';
import type { EndpointPorts } from './server.js';
import { adminSocket as socket, type Target, withTarget } from './target.js';

const print = (e: EndpointPorts) => process.stdout.write(`${e.addresses.join(' ')}\t${e.ports.join(' ') || '-'}\n`);

/** `tsnet port add|rm|ls`: published ports of running containers, through the daemon's admin socket. */
export function portCommand(): Command {
  const port = new Command('port').description('publish or unpublish ports of a running container on a tsnet bridge network');

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
