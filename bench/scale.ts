/**
 * Costs at scale, on the plugin socket directly (no dockerd), with tsnet in a
 * private netns of its own, once per firewall backend:
 *   - CreateNetwork 50 times in a row with nothing else running (median);
 *   - CreateNetwork of 500 networks: the last 50 against the first 50;
 *   - 200 attaches publishing 10 ports each on one network: the last 20
 *     against the first 20 (attach = CreateEndpoint + Join + ProgramExternalConnectivity);
 *   - p95 of a plain attach (no ports) on another network, idle and while a
 *     second client creates and deletes networks, in interleaved rounds;
 *   - the time to delete the 500 networks: until the requests are answered,
 *     and until the kernel has deleted their bridges (in the background);
 *   - the daemon's RSS idle (left alone 20 s after its start) and with 500
 *     networks and 2000 published ports.
 * The machine may be busy with other work that comes and goes, so each create
 * and each attach is followed by the same step on a second, empty daemon (a
 * network or endpoint made and removed again): "against the empty daemon"
 * divides each time by that baseline's, which cancels the machine's drift.
 *
 *   npm run bench:scale      (root; not part of CI; = npm run build && cd bench && node ../dist/bench/scale.js)
 *
 * BENCH_FIREWALLS=nftables,iptables (default) picks the backends, `default`
 * runs without --firewall (a daemon from before that flag). BENCH_NETWORKS,
 * BENCH_ENDPOINTS, BENCH_ROUNDS scale the run down for a quick look;
 * BENCH_LOG_LEVEL=info keeps the daemons' request logs (one line per call, in ms).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNetns, deleteNetns, httpPostUnix, newRunId, run, runDir, startTsnet, type TsnetDaemon } from '../test/harness/index.js';
import { median, quantile } from './docker-api.js';

/** This file runs as dist/bench/scale.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const FIREWALLS = (process.env.BENCH_FIREWALLS ?? 'nftables,iptables').split(',');
const NETWORKS = Number(process.env.BENCH_NETWORKS ?? 500);
const ENDPOINTS = Number(process.env.BENCH_ENDPOINTS ?? 200);
const PORTS_EACH = 10;
/** Rounds of plain attaches, each idle then busy. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const ATTACHES_PER_ROUND = 40;
const GROUP = NETWORKS / 10;
const ENDPOINT_GROUP = ENDPOINTS / 10;
/** Creates timed in a row with nothing else running. */
const SOLO_CREATES = 50;
/** How long the daemon is left alone before its idle RSS is read. */
const SETTLE_MS = 20_000;

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

async function timed(step: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await step();
  return performance.now() - started;
}

/** The hex ID of network or endpoint `n` of a kind, as long as Docker's. */
const id = (kind: string, n: number) => `${kind}${n.toString(16).padStart(8, '0')}`.padEnd(64, '0');
const subnetOf = (n: number) => `10.${150 + (n >> 8)}.${n & 255}`;

class Plugin {
  constructor(private readonly socket: string) {}

  async post(method: string, body: unknown): Promise<void> {
    const res = await httpPostUnix(this.socket, `/NetworkDriver.${method}`, JSON.stringify(body), 120_000);
    if (res.status !== 200) throw new Error(`${method}: ${res.body}`);
  }

  createNetwork(networkId: string, prefix: string, length = 24): Promise<void> {
    return this.post('CreateNetwork', {
      NetworkID: networkId,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${prefix}.0/${length}`, Gateway: `${prefix}.1/${length}` }],
      IPv6Data: [],
    });
  }

  deleteNetwork(networkId: string): Promise<void> {
    return this.post('DeleteNetwork', { NetworkID: networkId });
  }

  async attach(networkId: string, endpointId: string, address: string, ports: Array<{ hostPort: number; port: number }> = []): Promise<void> {
    const portmap = ports.map((p) => ({ Proto: 6, IP: '', Port: p.port, HostIP: '', HostPort: p.hostPort, HostPortEnd: p.hostPort }));
    await this.post('CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': portmap } });
    await this.post('Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} });
    await this.post('ProgramExternalConnectivity', { NetworkID: networkId, EndpointID: endpointId, Options: {} });
  }

  async detach(networkId: string, endpointId: string): Promise<void> {
    await this.post('RevokeExternalConnectivity', { NetworkID: networkId, EndpointID: endpointId });
    await this.post('Leave', { NetworkID: networkId, EndpointID: endpointId });
    await this.post('DeleteEndpoint', { NetworkID: networkId, EndpointID: endpointId });
  }
}

function rssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

/** Times of a step on the loaded daemon, each with the same step on the empty one right after it. */
interface Paired {
  loaded: number[];
  empty: number[];
}

interface Result {
  firewall: string;
  solo: number[];
  creates: Paired;
  attaches: Paired;
  plainIdle: number[];
  plainBusy: number[];
  busyCycles: number;
  deleteAllMs: number;
  bridgesGoneMs: number;
  rssStarted: number;
  rssIdle: number;
  rssLoaded: number;
}

/** Plain attaches on `networkId`, each detached again (untimed); `busy` runs alongside them. */
async function plainAttaches(plugin: Plugin, networkId: string, count: number, offset: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const endpointId = id('c', offset + i);
    times.push(await timed(() => plugin.attach(networkId, endpointId, `10.149.0.${2 + (i % 250)}/24`)));
    await plugin.detach(networkId, endpointId);
  }
  return times;
}

async function startDaemon(firewall: string, cleanup: Array<() => Promise<void>>): Promise<{ tsnet: TsnetDaemon; plugin: Plugin; netns: string }> {
  const runId = newRunId();
  const dir = runDir(runId);
  await createNetns(runId);
  cleanup.push(() => deleteNetns(runId));
  const tsnet = await startTsnet({
    netns: runId,
    pluginDir: join(dir, 'plugins'),
    stateDir: join(dir, 'state'),
    logFile: join(dir, 'tsnet.log'),
    driver: 'tsscale',
    logLevel: (process.env.BENCH_LOG_LEVEL ?? 'warn') as 'warn',
    cli: CLI,
    extraArgs: firewall === 'default' ? [] : ['--firewall', firewall],
  });
  cleanup.push(() => tsnet.stop());
  return { tsnet, plugin: new Plugin(tsnet.socketPath), netns: runId };
}

const portsOf = (e: number) => Array.from({ length: PORTS_EACH }, (_, k) => ({ hostPort: 20000 + e * PORTS_EACH + k, port: 80 + k }));

async function runOne(firewall: string): Promise<Result> {
  const cleanup: Array<() => Promise<void>> = [];
  try {
    const { tsnet, plugin, netns } = await startDaemon(firewall, cleanup);
    const { plugin: empty } = await startDaemon(firewall, cleanup);
    // Just started, V8 still holds what start-up parsed and compiled; idle is after it had time to give that back.
    const rssStarted = rssMiB(tsnet.pid);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const rssIdle = rssMiB(tsnet.pid);

    // Creates in a row on a host doing nothing else: what `docker network create` costs in the plugin.
    const solo: number[] = [];
    for (let n = 0; n < SOLO_CREATES; n++) solo.push(await timed(() => empty.createNetwork(id('f', n), subnetOf(n))));
    for (let n = 0; n < SOLO_CREATES; n++) await empty.deleteNetwork(id('f', n));

    const creates: Paired = { loaded: [], empty: [] };
    for (let n = 0; n < NETWORKS; n++) {
      creates.loaded.push(await timed(() => plugin.createNetwork(id('a', n), subnetOf(n))));
      creates.empty.push(await timed(() => empty.createNetwork(id('a', n), subnetOf(n))));
      await empty.deleteNetwork(id('a', n));
    }

    // The first network gets the published ports: 10 per endpoint, host ports 20000 up.
    const attaches: Paired = { loaded: [], empty: [] };
    await empty.createNetwork(id('a', 0), subnetOf(0));
    for (let e = 0; e < ENDPOINTS; e++) {
      attaches.loaded.push(await timed(() => plugin.attach(id('a', 0), id('e', e), `${subnetOf(0)}.${2 + e}/24`, portsOf(e))));
      attaches.empty.push(await timed(() => empty.attach(id('a', 0), id('e', e), `${subnetOf(0)}.2/24`, portsOf(e))));
      await empty.detach(id('a', 0), id('e', e));
    }
    const rssLoaded = rssMiB(tsnet.pid);
    // Plain attaches on their own network, idle and while another client creates and deletes networks.
    const plain = id('d', 0);
    await plugin.createNetwork(plain, '10.149.0');
    const plainIdle: number[] = [];
    const plainBusy: number[] = [];
    let busyCycles = 0;
    for (let round = 0; round < ROUNDS; round++) {
      plainIdle.push(...(await plainAttaches(plugin, plain, ATTACHES_PER_ROUND, 2 * round * ATTACHES_PER_ROUND)));
      let stop = false;
      const churn = (async () => {
        for (let k = 0; !stop; k++, busyCycles++) {
          const churnId = id('b', round * 10_000 + k);
          await plugin.createNetwork(churnId, `10.148.${k & 255}`);
          await plugin.deleteNetwork(churnId);
        }
      })();
      try {
        plainBusy.push(...(await plainAttaches(plugin, plain, ATTACHES_PER_ROUND, (2 * round + 1) * ATTACHES_PER_ROUND)));
      } finally {
        stop = true;
        await churn;
      }
    }
    await plugin.deleteNetwork(plain);

    for (let e = 0; e < ENDPOINTS; e++) await plugin.detach(id('a', 0), id('e', e));
    const started = performance.now();
    for (let n = 0; n < NETWORKS; n++) await plugin.deleteNetwork(id('a', n));
    const deleteAllMs = performance.now() - started;
    // The bridges themselves go in the background (see LinkReaper): until the kernel has none left.
    while ((await run('ip', ['-n', netns, '-o', 'link', 'show', 'type', 'bridge'])).stdout.trim() !== '') await new Promise((resolve) => setTimeout(resolve, 20));
    const bridgesGoneMs = performance.now() - started;
    return {
      firewall,
      solo,
      creates,
      attaches,
      plainIdle,
      plainBusy,
      busyCycles,
      deleteAllMs,
      bridgesGoneMs,
      rssStarted,
      rssIdle,
      rssLoaded,
    };
  } finally {
    for (const step of cleanup.reverse()) await step();
  }
}

const f1 = (v: number) => v.toFixed(1);

/** The first and last group of a paired series: raw means, and the mean of each time divided by its baseline's. */
function growth(p: Paired, group: number) {
  const first = p.loaded.slice(0, group);
  const last = p.loaded.slice(-group);
  const relative = p.loaded.map((t, i) => t / p.empty[i]!);
  return { first, last, relFirst: mean(relative.slice(0, group)), relLast: mean(relative.slice(-group)) };
}

function report(r: Result): void {
  const c = growth(r.creates, GROUP);
  const a = growth(r.attaches, ENDPOINT_GROUP);
  const rows: string[][] = [
    ['measure', 'first / idle', 'last / busy', 'ratio', 'goal'],
    [`CreateNetwork alone, ${SOLO_CREATES} in a row (median ms)`, f1(median(r.solo)), '', '', '<= 25'],
    [`CreateNetwork, networks 1-${GROUP} vs ${NETWORKS - GROUP + 1}-${NETWORKS} (mean ms)`, f1(mean(c.first)), f1(mean(c.last)), (mean(c.last) / mean(c.first)).toFixed(2), '<= 1.20'],
    ['  (median ms)', f1(median(c.first)), f1(median(c.last)), (median(c.last) / median(c.first)).toFixed(2), ''],
    ['  (against the empty daemon)', c.relFirst.toFixed(2), c.relLast.toFixed(2), (c.relLast / c.relFirst).toFixed(2), ''],
    [`attach with ${PORTS_EACH} ports, endpoints 1-${ENDPOINT_GROUP} vs ${ENDPOINTS - ENDPOINT_GROUP + 1}-${ENDPOINTS} (mean ms)`, f1(mean(a.first)), f1(mean(a.last)), (mean(a.last) / mean(a.first)).toFixed(2), '<= 1.20'],
    ['  (median ms)', f1(median(a.first)), f1(median(a.last)), (median(a.last) / median(a.first)).toFixed(2), ''],
    ['  (against the empty daemon)', a.relFirst.toFixed(2), a.relLast.toFixed(2), (a.relLast / a.relFirst).toFixed(2), ''],
    [`plain attach p95, idle vs networks churning (${r.plainIdle.length} each)`, f1(quantile(r.plainIdle, 0.95)), f1(quantile(r.plainBusy, 0.95)), (quantile(r.plainBusy, 0.95) / quantile(r.plainIdle, 0.95)).toFixed(2), '<= 2.00'],
    ['  (median ms)', f1(median(r.plainIdle)), f1(median(r.plainBusy)), (median(r.plainBusy) / median(r.plainIdle)).toFixed(2), ''],
    [`deleting ${NETWORKS} networks: requests answered / bridges gone (s)`, (r.deleteAllMs / 1000).toFixed(1), (r.bridgesGoneMs / 1000).toFixed(1), '', '<= 20'],
    [`RSS idle (${SETTLE_MS / 1000} s after start) / with ${NETWORKS} networks and ${ENDPOINTS * PORTS_EACH} ports (MiB)`, f1(r.rssIdle), f1(r.rssLoaded), '', '<= 80 / <= 256'],
    ['  (just started)', f1(r.rssStarted), '', '', ''],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  console.log(`\nfirewall ${r.firewall} (${r.busyCycles} create+delete cycles ran during the busy rounds)`);
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
}

for (const firewall of FIREWALLS) report(await runOne(firewall));
