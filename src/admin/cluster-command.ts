import { Command } from 'commander';
import type { ClusterReport } from '../cluster/cluster.js';
import type { GcResult } from '../cluster/cluster-admin.js';
import type { Rotation } from '../overlay/key-rotation.js';
import { adminCall } from './client.js';
import { table } from './table.js';
import { adminSocketOf as socket, type Target, withTarget } from './target.js';

interface JsonFlag extends Target {
  json?: boolean;
}

function printReport(r: ClusterReport): void {
  const out = [`cluster store ${r.store}, this host: ${r.self}\n`];
  out.push(table([['HOST', 'STATE', 'ADDRESSES', 'NAMES'], ...r.hosts.map((h) => [h.id === r.self ? `${h.id} *` : h.id, h.alive ? 'alive' : 'dead', String(h.addresses), String(h.names)])]));
  if (r.pools.length > 0) {
    out.push(
      table([
        ['POOL', 'SUBNET', 'RANGE', 'GATEWAY', 'HELD', 'HOSTS'],
        ...r.pools.map((p) => [p.name, p.subnet, p.range ?? '-', p.gateway ?? '-', String(p.held), p.users.join(',') || '-']),
      ]),
    );
  }
  if (r.segments.length > 0) {
    const rows = r.segments.flatMap((s) => s.hosts.map((h, i) => [i === 0 ? `${s.pool}${s.encrypted ? ' (encrypted)' : ''}` : '', i === 0 ? String(s.vni) : '', i === 0 ? s.subnet : '', h.id === r.self ? `${h.id} *` : h.id, h.underlay ?? 'none', h.alive ? 'alive' : 'dead', String(h.containers)]));
    out.push(table([['SEGMENT', 'VNI', 'SUBNET', 'HOST', 'UNDERLAY', 'STATE', 'CONTAINERS'], ...rows]));
  }
  out.push(`races lost to other hosts (retried, never seen by dockerd): ${r.racesLost}; etcd work postponed: ${r.pending}${r.stuck > 0 ? ` (${r.stuck} refused by etcd again and again: see the daemon's log)` : ''}\n`);
  const orphans = r.orphans.length === 0 ? 'none' : `${r.orphans.join(', ')} (tsnet cluster gc frees them)`;
  out.push(`held in etcd for this host but unknown to its own record: ${orphans}\n`);
  if (r.conflicts.length > 0) out.push(`HELD BY THIS HOST BUT GIVEN TO ANOTHER IN ETCD (two containers may use each; restart this host's): ${r.conflicts.join(', ')}\n`);
  out.push(`held by this host for no endpoint: ${r.unattached.length === 0 ? 'none' : `${r.unattached.join(', ')} (freed when the network is removed)`}\n`);
  process.stdout.write(out.join(''));
}

/** `tsnet cluster ls|gc`: the cluster store as this host's daemon sees it, through its admin socket. */
export function clusterCommand(): Command {
  const cluster = new Command('cluster').description('hosts and shared pools in the cluster store (tsnet daemon --cluster-store)');
  withTarget(cluster.command('ls'))
    .description('hosts (alive or dead) with the addresses each holds and the names each publishes, the shared pools, and the overlay segments with their hosts')
    .option('--json', 'print the report as JSON')
    .action(async (opts: JsonFlag) => {
      const report = (await adminCall(socket(opts), 'GET', '/cluster')) as ClusterReport;
      if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else printReport(report);
    });
  withTarget(cluster.command('gc'))
    .description("free a dead host's addresses (--host ID), or without --host this host's addresses held for no endpoint")
    .option('--host <id>', 'the dead host whose addresses to free')
    .option('--json', 'print the result as JSON')
    .action(async (opts: JsonFlag & { host?: string }) => {
      const result = (await adminCall(socket(opts), 'POST', '/cluster/gc', opts.host ? { host: opts.host } : {})) as GcResult;
      if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else process.stdout.write(`host ${result.host}: freed ${result.freed.length} address(es)${result.freed.length ? ` (${result.freed.join(', ')})` : ''}${result.pools.length ? `; taken off pool(s) ${result.pools.join(', ')}` : ''}\n`);
    });
  withTarget(cluster.command('rotate-key').argument('<network>', 'an encrypted overlay network (name or ID) of this host'))
    .description("replace the key of the network's encrypted segment on every host, with no packet lost: the new key is received with everywhere, then sent with, then the old one is dropped")
    .option('--json', 'print the result as JSON')
    .action(async (network: string, opts: JsonFlag) => {
      const rotation = (await adminCall(socket(opts), 'POST', '/cluster/rotate-key', { network })) as Rotation;
      if (opts.json) process.stdout.write(`${JSON.stringify(rotation, null, 2)}\n`);
      else process.stdout.write(`segment key rotated from generation ${rotation.from} to ${rotation.to} on ${rotation.hosts.length} host(s): ${rotation.hosts.join(', ')}\n`);
    });
  return cluster;
}
