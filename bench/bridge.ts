/**
 * tsnet bridge networks side by side with Docker's built-in bridge, on the
 * same private dockerd (its own netns, see test/harness) in the same run.
 * Medians of RUNS runs, reported as ratios tsnet / built-in:
 *   - attach overhead: `docker run --rm` on the network minus `--network none`,
 *     with tsnet as users run it (drift watcher on), and on a second dockerd
 *     beside it whose tsnet runs with --no-drift-watch (its own built-in
 *     bridge and `--network none` in the same rounds)
 *   - `docker network create` + `docker network rm`
 *   - extra cost of `-p 127.0.0.1:21001-21100:1-100` (100 published ports)
 * and 1000 sequential attaches (CreateEndpoint + Join + Program on the
 * plugin socket) on one tsnet network: mean of the last 100 vs the first 100.
 *
 *   npm run bench:bridge        (root; not part of CI)
 */
import { fileURLToPath } from 'node:url';
import { createDockerHost, type DockerHost, httpPostUnix, TEST_IMAGE } from '../test/harness/index.js';

/** This file runs as dist/bench/bridge.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const ATTACHES = 1000;

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

async function timed(step: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await step();
  return performance.now() - started;
}

/**
 * Wall times of `docker run --rm … true`, one per variant per round. Rounds
 * interleave the variants, so a machine that gets busier or quieter during
 * the run shifts all of them alike; overheads are per-round differences.
 */
async function runRounds(variants: Record<string, [DockerHost, string[]]>): Promise<Record<string, number[]>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const [name, [host, args]] of Object.entries(variants)) {
      samples[name]!.push(await timed(() => host.dockerOk(['run', '--rm', '--pull=never', ...args, TEST_IMAGE, 'true'], { timeoutMs: 300_000 })));
    }
  }
  return samples;
}

/** Median of the per-round differences a - b. */
const overhead = (a: number[], b: number[]) => median(a.map((v, i) => v - b[i]!));

async function createRmMs(host: DockerHost, driver: string, subnet: string): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    samples.push(await timed(async () => {
      await host.dockerOk(['network', 'create', '-d', driver, '--subnet', subnet, 'bench-cr']);
      await host.dockerOk(['network', 'rm', 'bench-cr']);
    }));
  }
  return median(samples);
}

/** 1000 endpoints on one tsnet network through the plugin API, as dockerd sends them; per-attach times in order. */
async function sequentialAttaches(host: DockerHost): Promise<number[]> {
  const socket = host.tsnet.socketPath;
  const post = async (method: string, body: unknown) => {
    const res = await httpPostUnix(socket, `/NetworkDriver.${method}`, JSON.stringify(body), 60_000);
    if (res.status !== 200) throw new Error(`${method}: ${res.body}`);
  };
  const networkId = 'b'.repeat(64);
  await post('CreateNetwork', {
    NetworkID: networkId,
    Options: { 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.90.0.0/20', Gateway: '10.90.0.1/20' }],
    IPv6Data: [],
  });
  const times: number[] = [];
  for (let i = 0; i < ATTACHES; i++) {
    const endpointId = i.toString(16).padStart(64, 'e');
    const address = `10.90.${(i + 2) >> 8}.${(i + 2) & 255}/20`;
    times.push(await timed(async () => {
      await post('CreateEndpoint', { NetworkID: networkId, EndpointID: endpointId, Interface: { Address: address, AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': [] } });
      await post('Join', { NetworkID: networkId, EndpointID: endpointId, SandboxKey: '', Options: {} });
      await post('ProgramExternalConnectivity', { NetworkID: networkId, EndpointID: endpointId, Options: {} });
    }));
  }
  await post('DeleteNetwork', { NetworkID: networkId });
  return times;
}

const ratio = (a: number, b: number) => (a / b).toFixed(2);
const ms = (v: number) => v.toFixed(0);

async function main(): Promise<void> {
  const host = await createDockerHost({ dockerdArgs: ['--bridge=none'], tsnetCli: CLI });
  const unwatched = await createDockerHost({ dockerdArgs: ['--bridge=none'], tsnetCli: CLI, tsnetArgs: ['--no-drift-watch'] });
  try {
    for (const h of [host, unwatched]) {
      await h.dockerOk(['network', 'create', '-d', h.driver, '--subnet', '10.80.0.0/24', 'bench-ts']);
      await h.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.81.0.0/24', 'bench-br']);
    }
    const ports = ['-p', '127.0.0.1:21001-21100:1-100'];
    await runRounds({ warmUp: [host, ['--network', 'none']], warmUpUnwatched: [unwatched, ['--network', 'none']] }); // image, containerd, caches
    const runs = await runRounds({
      none: [host, ['--network', 'none']],
      ts: [host, ['--network', 'bench-ts']],
      br: [host, ['--network', 'bench-br']],
      tsPorts: [host, ['--network', 'bench-ts', ...ports]],
      brPorts: [host, ['--network', 'bench-br', ...ports]],
      noneU: [unwatched, ['--network', 'none']],
      tsU: [unwatched, ['--network', 'bench-ts']],
      brU: [unwatched, ['--network', 'bench-br']],
    });
    const tsAttach = overhead(runs.ts!, runs.none!);
    const brAttach = overhead(runs.br!, runs.none!);
    const tsAttachUnwatched = overhead(runs.tsU!, runs.noneU!);
    const brAttachUnwatched = overhead(runs.brU!, runs.noneU!);
    const tsPortCost = overhead(runs.tsPorts!, runs.ts!);
    const brPortCost = overhead(runs.brPorts!, runs.br!);
    const tsCreate = await createRmMs(host, host.driver, '10.82.0.0/24');
    const brCreate = await createRmMs(host, 'bridge', '10.83.0.0/24');
    const attaches = await sequentialAttaches(host);
    const first = mean(attaches.slice(0, 100));
    const last = mean(attaches.slice(-100));

    const rows = [
      ['measure (median of ' + RUNS + ')', 'tsnet ms', 'built-in ms', 'ratio', 'goal'],
      ['attach overhead (run on net - run --network none)', ms(tsAttach), ms(brAttach), ratio(tsAttach, brAttach), '<= 1.00'],
      ['  the same, tsnet --no-drift-watch (second dockerd)', ms(tsAttachUnwatched), ms(brAttachUnwatched), ratio(tsAttachUnwatched, brAttachUnwatched), 'watcher ≤ 1.05× this'],
      ['extra cost of 100 published ports', ms(tsPortCost), ms(brPortCost), ratio(tsPortCost, brPortCost), '<= 0.10'],
      ['network create + rm', ms(tsCreate), ms(brCreate), ratio(tsCreate, brCreate), '<= 1.00'],
      [`${ATTACHES} attaches on one network: last 100 / first 100 (tsnet, mean ms)`, `${last.toFixed(1)} / ${first.toFixed(1)}`, '-', ratio(last, first), '<= 1.20'],
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
    console.log(`(docker run --rm --network none: median ${ms(median(runs.none!))} ms)`);
  } finally {
    await host.destroy();
    await unwatched.destroy();
  }
}

await main();
