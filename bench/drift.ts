/**
 * The drift watcher's costs and speed, with two tsnet daemons side by side in
 * one run, each in its own netns with the same networks: one with the
 * watcher (the default), one with --no-drift-watch.
 *
 * 1. Idle cost: CPU time each daemon uses over IDLE_SECONDS with nothing
 *    happening, as % of one core (goal ≤ 1 %).
 * 2. Repair time: on the watching daemon, someone else deletes a bridge,
 *    flushes iptables, flushes the whole nftables ruleset; the time until the
 *    kernel holds every link and rule as before (read from outside, not
 *    through the daemon). Median per kind (goal ≤ 2 s).
 * 3. Plugin request latency with and without the watcher: an endpoint with a
 *    published port created, published, revoked and deleted, alternating
 *    between the daemons (goal: unchanged, ratio ≈ 1).
 *
 * Docker has nothing to compare with: dockerd reprograms its rules on a
 * firewalld reload (D-Bus) or its own restart, never after `iptables -F` or
 * a deleted bridge; the ratios here are tsnet with against without the watcher.
 *
 *   npm run build && npm run bench:drift      (root; BENCH_ROUNDS, BENCH_IDLE_SECONDS)
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createNetns, deleteNetns, execInNetns, httpPostUnix, newRunId, run, runDir, startTsnet, type TsnetDaemon } from '../test/harness/index.js';
import { median, quantile } from './docker-api.js';

/** This file runs as dist/bench/drift.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const LATENCY_ROUNDS = Number(process.env.BENCH_LATENCY_ROUNDS ?? 100);
const NETWORKS = 10;
const CLOCK_TICKS = 100; // USER_HZ on Linux

const networkId = (i: number) => `d${i}`.padEnd(64, 'a');
const endpointId = (i: number, j: number) => `e${i}0${j}`.padEnd(64, 'b');
const bridge = (i: number) => `tsbr-${networkId(i).slice(0, 10)}`;

interface Side {
  name: 'watcher' | 'no watcher';
  netns: string;
  tsnet: TsnetDaemon;
}

async function post(side: Side, method: string, body: unknown): Promise<number> {
  const started = performance.now();
  const res = await httpPostUnix(side.tsnet.socketPath, `/${method}`, JSON.stringify(body));
  if (res.status !== 200) throw new Error(`${side.name} ${method}: ${res.body}`);
  return performance.now() - started;
}

const endpointBody = (i: number, id: string, address: string, hostPort: number) => ({
  NetworkID: networkId(i),
  EndpointID: id,
  Interface: { Address: address, AddressIPv6: '', MacAddress: '' },
  Options: { 'com.docker.network.portmap': [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: hostPort, HostPortEnd: hostPort }] },
});

/** A daemon in its own netns with NETWORKS bridge networks of two endpoints each, one publishing a port. */
async function startSide(name: Side['name'], id: string): Promise<Side> {
  const netns = `${id}${name === 'watcher' ? 'w' : 'n'}`;
  const dir = join(runDir(id), netns);
  mkdirSync(dir, { recursive: true });
  await createNetns(netns);
  const tsnet = await startTsnet({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsb${netns}`, logLevel: 'info', cli: CLI, extraArgs: name === 'watcher' ? [] : ['--no-drift-watch'] }).catch(async (error: unknown) => {
    await deleteNetns(netns);
    throw error;
  });
  const side: Side = { name, netns, tsnet };
  try {
    await populate(side);
  } catch (error) {
    await tsnet.stop().catch(() => undefined);
    await deleteNetns(netns);
    throw error;
  }
  return side;
}

async function populate(side: Side): Promise<void> {
  for (let i = 0; i < NETWORKS; i++) {
    await post(side, 'NetworkDriver.CreateNetwork', { NetworkID: networkId(i), Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'x', Pool: `10.190.${i}.0/24`, Gateway: `10.190.${i}.1/24` }], IPv6Data: [] });
    for (let j = 0; j < 2; j++) {
      await post(side, 'NetworkDriver.CreateEndpoint', endpointBody(i, endpointId(i, j), `10.190.${i}.${j + 2}/24`, j === 0 ? 20000 + i : 0));
      await post(side, 'NetworkDriver.ProgramExternalConnectivity', { NetworkID: networkId(i), EndpointID: endpointId(i, j), Options: {} });
    }
  }
}

/** utime + stime of the process, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** The daemon's own process: the node child of `ip netns exec`. */
async function daemonPid(side: Side): Promise<number> {
  const { stdout } = await run('ip', ['netns', 'pids', side.netns]);
  for (const pid of stdout.split('\n').filter(Boolean).map(Number)) {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.includes('daemon') && cmdline.includes(side.tsnet.driver)) return pid;
  }
  throw new Error(`no daemon process in ${side.netns}`);
}

/** What the kernel holds of tsnet in the netns: links with their addresses and masters, and every rule (counters aside). */
async function kernelState(netns: string): Promise<string> {
  const parts = await Promise.all([
    execInNetns(netns, ['ip', '-o', 'address', 'show']),
    execInNetns(netns, ['ip', '-o', 'link', 'show']),
    execInNetns(netns, ['iptables-save']),
    execInNetns(netns, ['nft', 'list', 'table', 'inet', 'tsnet']),
  ]);
  const lines = parts.flatMap((p) => p.stdout.split('\n'));
  return lines
    // Comments, and the link-local addresses the kernel gives a link once it has carrier (not tsnet's).
    .filter((l) => !l.startsWith('#') && !l.includes('inet6 fe80::'))
    .map((l) => l.replace(/^\d+: /, '').replace(/@if\d+/, '').replace(/\[\d+:\d+\]/g, '').replace(/valid_lft.*$/, '').replace(/ state \S+/, ''))
    // nft lists set elements several to a line, in an order of its own.
    .flatMap((l) => l.split(/[{},]/).map((e) => e.trim()))
    .filter((l) => l !== '')
    .sort()
    .join('\n');
}

/** Time from `act` until the kernel holds `wanted` again (polled from outside every 20 ms). */
async function repairMs(netns: string, wanted: string, act: string[][]): Promise<number> {
  const started = performance.now();
  for (const argv of act) await execInNetns(netns, argv);
  let state: string;
  while ((state = await kernelState(netns)) !== wanted) {
    if (performance.now() - started > 30_000) {
      const have = new Set(state.split('\n'));
      const missing = wanted.split('\n').filter((l) => !have.has(l));
      throw new Error(`not repaired after 30 s: ${act.map((a) => a.join(' ')).join('; ')}; missing: ${missing.join(' | ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return performance.now() - started;
}

async function main(): Promise<void> {
  const id = newRunId();
  const sides: Side[] = [];
  try {
    sides.push(await startSide('watcher', id), await startSide('no watcher', id));
    const [watching, blind] = sides as [Side, Side];
    await new Promise((resolve) => setTimeout(resolve, 3000)); // let start-up's own events settle

    // 1. Idle cost.
    const pids = await Promise.all(sides.map(daemonPid));
    const before = pids.map(cpuSeconds);
    await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
    const idle = pids.map((pid, k) => ((cpuSeconds(pid) - before[k]!) / IDLE_SECONDS) * 100);

    // 2. Repair time.
    const wanted = await kernelState(watching.netns);
    const kinds: Array<[string, (round: number) => string[][]]> = [
      ['ip link del <bridge>', (round) => [['ip', 'link', 'del', bridge(round % NETWORKS)]]],
      ['iptables -F; iptables -t nat -F', () => [['iptables', '-F'], ['iptables', '-t', 'nat', '-F']]],
      ['nft flush ruleset', () => [['nft', 'flush', 'ruleset']]],
    ];
    const repairs = new Map<string, number[]>(kinds.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, act] of kinds) repairs.get(name)!.push(await repairMs(watching.netns, wanted, act(round)));
    }

    // 3. Plugin latency, alternating.
    const latency = new Map<Side, number[]>(sides.map((s) => [s, []]));
    for (let round = 0; round < LATENCY_ROUNDS; round++) {
      for (const side of round % 2 ? [blind, watching] : [watching, blind]) {
        const endpoint = 'f'.repeat(60) + String(round % 10).padStart(4, '0');
        const ids = { NetworkID: networkId(0), EndpointID: endpoint };
        let ms = await post(side, 'NetworkDriver.CreateEndpoint', endpointBody(0, endpoint, '10.190.0.100/24', 21000));
        ms += await post(side, 'NetworkDriver.ProgramExternalConnectivity', { ...ids, Options: {} });
        ms += await post(side, 'NetworkDriver.RevokeExternalConnectivity', ids);
        ms += await post(side, 'NetworkDriver.DeleteEndpoint', ids);
        latency.get(side)!.push(ms);
      }
    }

    console.log(`drift watcher, ${NETWORKS} bridge networks of 2 endpoints (nftables backend, the default):`);
    console.log(`1. idle CPU over ${IDLE_SECONDS} s: watcher ${idle[0]!.toFixed(3)} % of one core, no watcher ${idle[1]!.toFixed(3)} % (goal ≤ 1 %)`);
    console.log(`2. repair time, until the kernel holds every link and rule as before (${ROUNDS} rounds):`);
    for (const [name, values] of repairs) console.log(`   ${name.padEnd(34)} median ${median(values).toFixed(0)} ms, max ${Math.max(...values).toFixed(0)} ms (goal ≤ 2000 ms median)`);
    const row = (side: Side) => latency.get(side)!;
    console.log(`3. create + publish + revoke + delete an endpoint with a port (${LATENCY_ROUNDS} rounds each, alternating):`);
    for (const side of sides) console.log(`   ${side.name.padEnd(11)} p50 ${median(row(side)).toFixed(1)} ms, p95 ${quantile(row(side), 0.95).toFixed(1)} ms`);
    console.log(`   ratio watcher / no watcher: p50 ${(median(row(watching)) / median(row(blind))).toFixed(2)}x, p95 ${(quantile(row(watching), 0.95) / quantile(row(blind), 0.95)).toFixed(2)}x (goal: unchanged)`);
  } finally {
    for (const side of sides) {
      await side.tsnet.stop().catch(() => undefined);
      await deleteNetns(side.netns);
    }
    // BENCH_KEEP_LOGS=1: the daemons' logs stay (their directory is printed) to see what each repair did.
    if (process.env.BENCH_KEEP_LOGS === '1') console.log(`logs kept in ${runDir(id)}`);
    else await run('rm', ['-rf', runDir(id)]);
  }
}

await main();
