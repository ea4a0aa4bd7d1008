import { Command } from 'commander';
import type { ListenerStatus } from '../dns/dns-server.js';
import { adminCall } from './client.js';
import { adminSocketOf, type Target, withTarget } from './target.js';

/** `tsnet dns`: where the daemon serves DNS, for which network, and which listeners could not bind. */
export function dnsCommand(): Command {
  return withTarget(new Command('dns'))
    .description('list the DNS listeners: address, network (- = every network), forwarding, state')
    .action(async (opts: Target) => {
      for (const s of (await adminCall(adminSocketOf(opts), 'GET', '/dns')) as ListenerStatus[]) {
        const state = s.state === 'failed' ? `failed: ${s.error}` : s.state;
        process.stdout.write(`${s.address}:${s.port}\t${s.networkId?.slice(0, 12) ?? '-'}\t${s.forward ? 'forwards' : 'no-forward'}\t${state}\n`);
      }
    });
}
