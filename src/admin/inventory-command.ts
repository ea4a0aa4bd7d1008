import { Command } from 'commander';
import { adminCall } from './client.js';
import type { AddressView, EndpointView, Inspected, NetworkSummary, NetworkView } from './inventory.js';
import type { SegmentMember } from '../overlay/segment-members.js';
import { table } from './table.js';
import { adminSocketOf as socket, type Target, withTarget } from './target.js';

interface JsonFlag extends Target {
  json?: boolean;
}

const short = (id: string) => id.slice(0, 12);
const named = (id: string, name: string | undefined) => (name ? `${short(id)} (${name})` : short(id));
const orDash = (values: readonly string[]) => values.join(',') || '-';

/** The kind as users asked it: an overlay is a bridge network made one segment across hosts. */
const kindOf = (n: NetworkSummary) => (n.overlay ? `overlay (VNI ${n.overlay.vni}${n.overlay.encrypted ? ', encrypted' : ''})` : n.ipvlanMode ? `ipvlan ${n.ipvlanMode}` : n.kind);

/** This host's endpoints, and for an overlay the other hosts' containers on its segment. */
const endpointsOf = (n: NetworkSummary) => (n.overlay?.remoteContainers !== undefined ? `${n.endpoints} (+${n.overlay.remoteContainers} remote)` : String(n.endpoints));

function printNetworks(networks: readonly NetworkSummary[]): string {
  const rows = networks.map((n) => [n.name ?? '-', short(n.id), n.internal ? `${kindOf(n)} (internal)` : kindOf(n), orDash(n.subnets), orDash(n.gateways), n.link, endpointsOf(n)]);
  return table([['NAME', 'NETWORK ID', 'KIND', 'SUBNETS', 'GATEWAYS', 'LINK', 'ENDPOINTS'], ...rows]);
}

/** `key  value` lines, indented under a heading. */
const fields = (pairs: Array<[string, string]>) => table(pairs.map(([key, value]) => [`  ${key}`, value]));

function printEndpoint(e: EndpointView): string {
  return (
    `endpoint ${e.id}${e.container ? ` (container ${e.container})` : ''}\n` +
    fields([
      ['network', named(e.network, e.networkName)],
      ['addresses', orDash(e.addresses)],
      ['mac', e.mac],
      ['links', [e.links.host && `host ${e.links.host}`, `container ${e.links.container}`].filter(Boolean).join(', ')],
      ['ports', orDash(e.ports)],
      ['sandbox', e.sandbox ?? 'not joined'],
      ...(e.lease
        ? ([
            ['lease', `${e.lease.state} from ${e.lease.server}${e.lease.hostname ? ` as ${e.lease.hostname}` : ''}, router ${orDash(e.lease.routers)}`],
            ['renew / rebind', `${e.lease.renew} / ${e.lease.rebind}`],
            ['expires', e.lease.expires],
          ] as Array<[string, string]>)
        : []),
    ])
  );
}

function printNetwork(n: NetworkView): string {
  const out = [
    `network ${n.id}${n.name ? ` (${n.name})` : ''}\n`,
    fields([
      ['kind', n.internal ? `${kindOf(n)}, internal` : kindOf(n)],
      ...(n.overlay ? ([['segment', `shared pool ${n.overlay.pool}, VNI ${n.overlay.vni}, this host's underlay ${n.overlay.underlay}${n.overlay.encrypted ? ', encrypted (IPsec ESP)' : ''}`]] as Array<[string, string]>) : []),
      ['subnets', orDash(n.subnets)],
      ['gateways', orDash(n.gateways)],
      ['link', n.vlan !== undefined ? `${n.link} (VLAN ${n.vlan})` : n.link],
      ['options', orDash(Object.entries(n.options).map(([k, v]) => `${k}=${v}`))],
    ]),
  ];
  if (n.endpointList.length > 0) {
    out.push('endpoints\n');
    const rows = n.endpointList.map((e) => [`  ${short(e.id)}`, e.container ?? '-', orDash(e.addresses), e.mac, e.links.host ?? e.links.container, orDash(e.ports)]);
    out.push(table([['  ENDPOINT', 'CONTAINER', 'ADDRESSES', 'MAC', 'LINK', 'PORTS'], ...rows]));
  } else out.push('endpoints: none\n');
  if (n.members) {
    out.push('segment hosts (with containers on it)\n');
    const state = (m: SegmentMember) => (m.alive === undefined ? '?' : m.alive ? 'alive' : 'dead (its entries kept)');
    const rows = n.members.map((m) => [`  ${m.self ? `${m.host} *` : m.host}`, m.underlay ?? 'none (unreachable)', state(m), String(m.containers)]);
    out.push(table([['  HOST', 'UNDERLAY', 'STATE', 'CONTAINERS'], ...rows]));
  }
  for (const p of n.pools) {
    out.push(`pool ${p.pool}${p.range ? ` range ${p.range}` : ''} (tsnet IPAM): ${p.held.length} of ${p.size} addresses held\n`);
    out.push(p.held.map((h) => `  ${h.address}  ${h.use}\n`).join(''));
  }
  return out.join('');
}

function printAddress(a: AddressView): string {
  const where = [a.network && `network ${named(a.network, a.networkName)}`, a.pool && `pool ${a.pool}`].filter(Boolean).join(', ');
  return `address ${a.address}: ${a.use}${where ? ` (${where})` : ''}\n`;
}

const print: { [T in Inspected['type']]: (found: Extract<Inspected, { type: T }>) => string } = {
  network: (f) => printNetwork(f.network),
  endpoint: (f) => printEndpoint(f.endpoint),
  address: (f) => printAddress(f.address),
};

const show = (value: unknown, json: boolean | undefined, human: () => string) =>
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : human());

/** `tsnet ls` and `tsnet inspect`: what the daemon holds, through its admin socket. */
export function inventoryCommands(): Command[] {
  const ls = withTarget(new Command('ls'))
    .description("the daemon's networks: Docker's name when known, ID, kind, subnets, gateways, bridge or parent, endpoints")
    .option('--json', 'print JSON')
    .action(async (opts: JsonFlag) => {
      const networks = (await adminCall(socket(opts), 'GET', '/networks')) as NetworkSummary[];
      show(networks, opts.json, () => printNetworks(networks));
    });
  const inspect = withTarget(new Command('inspect'))
    .argument('<network|endpoint|address>', 'a network (ID, ID prefix or Docker name), an endpoint (ID or prefix) or an IP address')
    .description('a network with its endpoints and IPAM holds, one endpoint, or what an address is used for')
    .option('--json', 'print JSON')
    .action(async (query: string, opts: JsonFlag) => {
      const found = (await adminCall(socket(opts), 'GET', `/inspect?q=${encodeURIComponent(query)}`)) as Inspected;
      show(found, opts.json, () => (print[found.type] as (f: Inspected) => string)(found));
    });
  return [ls, inspect];
}
