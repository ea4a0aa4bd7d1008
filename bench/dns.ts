/**
 * tsnet's DNS server against dnsmasq serving the same names from a hosts
 * file, in the same run, with the same query file (A and PTR of 500
 * containers), both on loopback of one private netns, driven by dnsperf:
 *   throughput  dnsperf at full speed (100 queries outstanding): QPS, lost
 *   latency     dnsperf at a fixed 2000 QPS, every answer's time (-v): p50, p99
 * in alternating rounds (medians). A third server shows the ceiling of a
 * Node.js UDP server on this machine: one that sends each query back as its
 * own answer, doing nothing else (the same dgram calls as tsnet's listener).
 * Then the plugin API's latency
 * (CreateEndpoint + DeleteEndpoint) idle, while dnsperf loads dnsmasq (the
 * machine is busy), and while it loads tsnet (the daemon's DNS is busy).
 * Names come from a stand-in Docker API; endpoints are made through the
 * plugin API. Goals: QPS ≥ 0.8× dnsmasq, p99 ≤ 2×, 0 lost, plugin latency
 * under tsnet's load ≈ under dnsmasq's.
 *
 *   npm run build && npm run bench:dns      (root; CI runs it short: BENCH_ROUNDS=1 BENCH_SECONDS=3)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CleanupStack,
  createNetns,
  deleteNetns,
  dig,
  execInNetns,
  FakeDockerApi,
  httpPostUnix,
  netnsPath,
  newRunId,
  nodeInNetns,
  run,
  runDir,
  startDnsmasq,
  startTsnet,
  waitUntil,
} from '../test/harness/index.js';

/** This file runs as dist/bench/dns.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const THROUGHPUT_SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const LATENCY_QPS = 2000;
/** dnsperf keeps loading a server this long while the plugin pairs run (they take a few seconds). */
const LOAD_SECONDS = 10;
const CONTAINERS = 500;
const PLUGIN_PAIRS = 40;
const NET = 'b5'.repeat(32);
const SERVERS = { tsnet: '127.0.0.1', dnsmasq: '127.0.0.2', echo: '127.0.0.3' } as const;
type Server = keyof typeof SERVERS;

/** Sends every query back with QR set: an answer without records, made with no work at all. */
const ECHO_SERVER = `const s = require('dgram').createSocket({ type: 'udp4', lookup: (a, o, cb) => cb(null, a, 4) });
  s.on('message', (m, r) => { m[2] |= 0x80; s.send(m, r.port, r.address); });
  s.bind(53, '${SERVERS.echo}', () => console.log('ready'));`;

const endpointId = (i: number) => `e${i.toString(16).padStart(4, '0')}`.padEnd(64, '5');
const addressOf = (i: number) => `10.154.${(i + 2) >> 8}.${(i + 2) & 255}`;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};

interface PerfRun {
  qps: number;
  lost: number;
  /** Per-answer latencies in ms (only with verbose). */
  latencies: number[];
}

function dnsperfArgs(server: Server, queries: string, extra: string[]): string[] {
  return ['dnsperf', '-s', SERVERS[server], '-p', '53', '-d', queries, ...extra];
}

function parsePerf(output: string): PerfRun {
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(output)?.[1]);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(output)?.[1]);
  if (!Number.isFinite(qps) || !Number.isFinite(lost)) throw new Error(`cannot read dnsperf's output:\n${output.slice(-2000)}`);
  const latencies = [...output.matchAll(/^> \w+ \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000);
  return { qps, lost, latencies };
}

async function main(): Promise<void> {
  const id = newRunId();
  const netns = id;
  const dir = runDir(id);
  const cleanup = new CleanupStack();
  try {
    await createNetns(netns);
    cleanup.defer(`delete netns ${netns}`, () => deleteNetns(netns));
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    for (const address of [SERVERS.dnsmasq, SERVERS.echo]) await execInNetns(netns, ['ip', 'address', 'add', `${address}/8`, 'dev', 'lo']);
    await nodeInNetns(netnsPath(netns), ECHO_SERVER, cleanup);

    const docker = await FakeDockerApi.start(join(dir, 'docker.sock'));
    cleanup.defer('close the fake Docker API', () => docker.close());
    docker.networks.set(NET, 'bench');
    for (let i = 0; i < CONTAINERS; i++) docker.containers.set(`c${i}`.padEnd(64, 'c'), { id: `c${i}`.padEnd(64, 'c'), name: `c${i}`, networks: { bench: { networkId: NET, endpointId: endpointId(i) } } });

    const tsnet = await startTsnet({
      netns, cli: CLI, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsn${id}`, logLevel: 'warn',
      extraArgs: ['--docker-host', docker.host, '--dns-listen', `${SERVERS.tsnet}:53`],
    });
    cleanup.defer('stop tsnet', () => tsnet.stop());
    const plugin = async (method: string, body: unknown) => {
      const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
      if (res.status !== 200) throw new Error(`${method}: ${res.body}`);
    };
    await plugin('NetworkDriver.CreateNetwork', {
      NetworkID: NET, Options: { 'com.docker.network.generic': { 'tsnet.dns': 'off' } }, IPv6Data: [],
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.154.0.0/22', Gateway: '10.154.0.1/22' }],
    });
    const createEndpoint = (i: number) =>
      plugin('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: endpointId(i), Interface: { Address: `${addressOf(i)}/22`, AddressIPv6: '', MacAddress: '' }, Options: {} });
    for (let i = 0; i < CONTAINERS; i++) await createEndpoint(i);
    await waitUntil(async () => (await dig(SERVERS.tsnet, 53, [`c${CONTAINERS - 1}.bench.tsnet`], netns)).answers.length === 1, { timeoutMs: 30_000, what: 'tsnet to know every name' });

    const hosts = Array.from({ length: CONTAINERS }, (_, i) => [`c${i}.bench.tsnet`, addressOf(i)] as const);
    await startDnsmasq({ dir: join(dir, 'dnsmasq'), netns, address: SERVERS.dnsmasq, port: 53, hosts, ttl: 5 }, cleanup);
    const queries = join(dir, 'queries.txt');
    writeFileSync(queries, hosts.flatMap(([name, address], i) => [`${name} A`, ...(i % 4 === 0 ? [`${address.split('.').reverse().join('.')}.in-addr.arpa PTR`] : [])]).join('\n') + '\n');

    const perf = async (server: Server, extra: string[]) => {
      const r = await execInNetns(netns, dnsperfArgs(server, queries, extra), { timeoutMs: 120_000 });
      if (r.exitCode !== 0) throw new Error(`dnsperf failed: ${r.stderr}`);
      return parsePerf(r.stdout);
    };
    const throughput = { tsnet: [] as PerfRun[], dnsmasq: [] as PerfRun[], echo: [] as PerfRun[] };
    const latency = { tsnet: [] as PerfRun[], dnsmasq: [] as PerfRun[], echo: [] as PerfRun[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order: Server[] = round % 2 ? ['dnsmasq', 'echo', 'tsnet'] : ['tsnet', 'echo', 'dnsmasq'];
      for (const server of order) {
        throughput[server].push(await perf(server, ['-l', String(THROUGHPUT_SECONDS)]));
        latency[server].push(await perf(server, ['-l', '5', '-Q', String(LATENCY_QPS), '-v']));
      }
    }

    /** CreateEndpoint + DeleteEndpoint of a spare endpoint, in ms each pair. */
    const pluginPairs = async () => {
      const times: number[] = [];
      for (let i = 0; i < PLUGIN_PAIRS; i++) {
        const started = performance.now();
        await createEndpoint(CONTAINERS);
        await plugin('NetworkDriver.DeleteEndpoint', { NetworkID: NET, EndpointID: endpointId(CONTAINERS) });
        times.push(performance.now() - started);
      }
      return times;
    };
    const underLoad = async (server: Server) => {
      const load = execInNetns(netns, dnsperfArgs(server, queries, ['-l', String(LOAD_SECONDS)]), { timeoutMs: 120_000 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const times = await pluginPairs();
      const loadRun = parsePerf((await load).stdout);
      return { times, qps: loadRun.qps };
    };
    const idle = await pluginPairs();
    const busyDnsmasq = await underLoad('dnsmasq');
    const busyTsnet = await underLoad('tsnet');

    const row = (server: Server) => {
      const all = latency[server].flatMap((r) => r.latencies);
      return {
        qps: median(throughput[server].map((r) => r.qps)),
        lost: throughput[server].reduce((n, r) => n + r.lost, 0) + latency[server].reduce((n, r) => n + r.lost, 0),
        p50: percentile(all, 50),
        p99: percentile(all, 99),
      };
    };
    const t = row('tsnet');
    const d = row('dnsmasq');
    const e = row('echo');
    const fmt = (r: ReturnType<typeof row>) => `${Math.round(r.qps)} QPS, p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms, ${r.lost} lost`;
    console.log(`DNS, ${CONTAINERS} names (A + PTR), ${ROUNDS} rounds: throughput ${THROUGHPUT_SECONDS} s at full speed (median), latency at ${LATENCY_QPS} QPS (all answers):`);
    console.log(`  dnsmasq: ${fmt(d)}`);
    console.log(`  tsnet:   ${fmt(t)}`);
    console.log(`  Node.js echo (ceiling of a Node UDP server here): ${fmt(e)}`);
    console.log(`  ratio tsnet/dnsmasq: QPS ${(t.qps / d.qps).toFixed(2)}x (goal ≥ 0.8x), p99 ${(t.p99 / d.p99).toFixed(2)}x (goal ≤ 2x), lost ${t.lost} (goal 0)`);
    console.log(`  ratio echo/dnsmasq:  QPS ${(e.qps / d.qps).toFixed(2)}x; tsnet/echo: QPS ${(t.qps / e.qps).toFixed(2)}x`);
    const pairs = (times: number[]) => `median ${median(times).toFixed(1)} ms, p90 ${percentile(times, 90).toFixed(1)} ms`;
    console.log(`plugin CreateEndpoint + DeleteEndpoint, ${PLUGIN_PAIRS} pairs:`);
    console.log(`  idle:                               ${pairs(idle)}`);
    console.log(`  while dnsperf loads dnsmasq (${Math.round(busyDnsmasq.qps)} QPS): ${pairs(busyDnsmasq.times)}`);
    console.log(`  while dnsperf loads tsnet (${Math.round(busyTsnet.qps)} QPS):   ${pairs(busyTsnet.times)}`);
    console.log(`  ratio under tsnet's load / under dnsmasq's load: ${(median(busyTsnet.times) / median(busyDnsmasq.times)).toFixed(2)}x (goal ≈ 1x)`);
  } finally {
    await cleanup.run();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
