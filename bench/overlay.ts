/**
 * tsnet's overlay against Docker's own swarm overlay, side by side on the
 * same three Docker hosts in different subnets, joined through a router
 * netns (etcd on the router), each a private dockerd with tsnet, the three
 * dockerds also one swarm. tsnet sends VXLAN to port 4790 so both live on
 * the same hosts (swarm keeps 4789).
 *
 *  1. Convergence: `docker run -d` on host A, then host B's probe container
 *     pings the new container until it answers; the time from `docker run`
 *     returning to the first answer, over BENCH_RUNS runs (p50, p99).
 *  2. A moved address: a container with a fixed address and MAC removed on
 *     host A and run again on host C; the time from that `docker run`
 *     returning to the first answer from host B's probe (BENCH_MOVES runs).
 *  3. Throughput, TCP, iperf3 (BENCH_SECONDS each, BENCH_ROUNDS alternating
 *     rounds, medians): container → container across tsnet's overlay and
 *     across swarm's; the same two hosts over a plain kernel VXLAN tunnel
 *     between their netns (the limit of this data path); and the underlay.
 *
 * Goals (issue 20): convergence p99 ≤ 1 s; a moved address reached within
 * 1 s; tsnet ≥ 0.9× the plain tunnel and at least swarm's ratio.
 *
 *   npm run build && npm run bench:overlay      (root; not part of CI)
 */
import { fileURLToPath } from 'node:url';
import { CleanupStack, createClusterHosts, type DockerHost, ipIn, newRunId, TEST_IMAGE } from '../test/harness/index.js';
import { median, quantile } from './docker-api.js';
import { iperf } from './iperf.js';

/** This file runs as dist/bench/overlay.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const MOVES = Number(process.env.BENCH_MOVES ?? 20);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** The hosts' underlay addresses (createClusterHosts, routed). */
const UNDERLAY = ['10.252.0.1', '10.252.1.1', '10.252.2.1'];
const TSNET_VXLAN_PORT = 4790;

/** One of the two overlays: its Docker network name on every host and the subnet it gives addresses from. */
interface Overlay {
  label: string;
  network: string;
  /** An address of the subnet for the moved container, outside what automatic allocation reaches first. */
  movingAddress: string;
}

const pidOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim();
const addressOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

/** Milliseconds from now until `probe` on `from` gets an answer from `address`. */
async function firstAnswer(from: DockerHost, probe: string, address: string, started: number): Promise<number> {
  // busybox ping waits up to -W for an answer; a short one keeps the sampling fine.
  while ((await from.docker(['exec', probe, 'ping', '-c', '1', '-W', '1', address])).exitCode !== 0) {
    if (performance.now() - started > 30_000) throw new Error(`${address} never answered ${probe}`);
  }
  return performance.now() - started;
}

/** 1. `docker run` on A → the first answer from B's probe. */
async function convergence(overlay: Overlay, a: DockerHost, b: DockerHost, probe: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const name = `${overlay.label}-c${i}`;
    await a.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', overlay.network, TEST_IMAGE, 'sleep', '600']);
    const started = performance.now();
    times.push(await firstAnswer(b, probe, await addressOf(a, name), started));
    await a.dockerOk(['rm', '-f', name]);
  }
  return times;
}

/** 2. The same address and MAC, removed on A and run on C → the first answer from B's probe. */
async function moves(overlay: Overlay, a: DockerHost, b: DockerHost, c: DockerHost, probe: string): Promise<number[]> {
  const mac = `02:42:${overlay.movingAddress.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
  const fixed = ['--ip', overlay.movingAddress, '--mac-address', mac, '--network', overlay.network];
  const name = `${overlay.label}-moving`;
  await a.dockerOk(['run', '-d', '--pull=never', '--name', name, ...fixed, TEST_IMAGE, 'sleep', '3600']);
  await firstAnswer(b, probe, overlay.movingAddress, performance.now());
  const times: number[] = [];
  let [from, to] = [a, c];
  for (let i = 0; i < MOVES; i++) {
    await from.dockerOk(['rm', '-f', name]);
    await to.dockerOk(['run', '-d', '--pull=never', '--name', name, ...fixed, TEST_IMAGE, 'sleep', '3600']);
    times.push(await firstAnswer(b, probe, overlay.movingAddress, performance.now()));
    [from, to] = [to, from];
  }
  await from.dockerOk(['rm', '-f', name]);
  return times;
}

/** Makes the three dockerds one swarm (A the manager) with an attachable overlay network. */
async function swarm(hosts: readonly DockerHost[], network: string, subnet: string, cleanup: CleanupStack): Promise<void> {
  const [manager, ...workers] = hosts as [DockerHost, ...DockerHost[]];
  await manager.dockerOk(['swarm', 'init', '--advertise-addr', UNDERLAY[0]!]);
  cleanup.defer('leave the swarm', async () => {
    for (const host of hosts) await host.docker(['swarm', 'leave', '--force']);
  });
  const token = (await manager.dockerOk(['swarm', 'join-token', '-q', 'worker'])).stdout.trim();
  for (const [i, worker] of workers.entries()) await worker.dockerOk(['swarm', 'join', '--token', token, '--advertise-addr', UNDERLAY[i + 1]!, `${UNDERLAY[0]}:2377`]);
  await manager.dockerOk(['network', 'create', '-d', 'overlay', '--attachable', '--subnet', subnet, network]);
}

async function main(): Promise<void> {
  const cleanup = new CleanupStack();
  try {
    const { hosts } = await createClusterHosts(
      { id: newRunId(), net: '10.250.8', hostIds: ['bench-a', 'bench-b', 'bench-c'], wire: 'wire', routed: true, tsnetCli: CLI, logLevel: 'warn', tsnetArgs: ['--vxlan-port', String(TSNET_VXLAN_PORT)] },
      cleanup,
    );
    const [a, b, c] = hosts as [DockerHost, DockerHost, DockerHost];
    for (const host of hosts) await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=bench', '--subnet', '10.94.0.0/16', 'ov']);
    await swarm(hosts, 'swov', '10.96.0.0/16', cleanup);
    const overlays: Overlay[] = [
      { label: 'tsnet', network: 'ov', movingAddress: '10.94.200.9' },
      { label: 'swarm', network: 'swov', movingAddress: '10.96.200.9' },
    ];
    const probes = new Map<string, { onA: string; onB: string }>();
    for (const overlay of overlays) {
      await a.dockerOk(['run', '-d', '--pull=never', '--name', `${overlay.label}-pa`, '--network', overlay.network, TEST_IMAGE, 'sleep', '36000']);
      await b.dockerOk(['run', '-d', '--pull=never', '--name', `${overlay.label}-pb`, '--network', overlay.network, TEST_IMAGE, 'sleep', '36000']);
      probes.set(overlay.label, { onA: `${overlay.label}-pa`, onB: `${overlay.label}-pb` });
    }

    const converged = new Map<string, number[]>();
    const moved = new Map<string, number[]>();
    for (const overlay of overlays) {
      const probe = probes.get(overlay.label)!.onB;
      converged.set(overlay.label, await convergence(overlay, a, b, probe));
      moved.set(overlay.label, await moves(overlay, a, b, c, probe));
    }

    // 3. Throughput: both overlays, a plain VXLAN tunnel between the same hosts, the underlay.
    for (const [i, host] of hosts.slice(0, 2).entries()) {
      await ipIn(host.netns, ['link', 'add', 'vxplain', 'type', 'vxlan', 'id', '99', 'local', UNDERLAY[i]!, 'remote', UNDERLAY[1 - i]!, 'dstport', '4791']);
      await ipIn(host.netns, ['address', 'add', `10.95.0.${i + 1}/24`, 'dev', 'vxplain']);
      await ipIn(host.netns, ['link', 'set', 'vxplain', 'up']);
    }
    const container = async (host: DockerHost, name: string) => `/proc/${await pidOf(host, name)}/ns/net`;
    const paths: Record<string, { server: string; client: string; address: string }> = {
      underlay: { server: `/run/netns/${b.netns}`, client: `/run/netns/${a.netns}`, address: UNDERLAY[1]! },
      tunnel: { server: `/run/netns/${b.netns}`, client: `/run/netns/${a.netns}`, address: '10.95.0.2' },
    };
    for (const overlay of overlays) {
      const { onA, onB } = probes.get(overlay.label)!;
      paths[overlay.label] = { server: await container(b, onB), client: await container(a, onA), address: await addressOf(b, onB) };
    }
    const order = Object.keys(paths);
    const throughput = new Map(order.map((path) => [path, [] as number[]]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const path of round % 2 ? [...order].reverse() : order) throughput.get(path)!.push(await iperf(paths[path]!.server, paths[path]!.client, paths[path]!.address, SECONDS));
    }

    const ms = (values: number[]) => `p50 ${Math.round(median(values))} ms, p99 ${Math.round(quantile(values, 0.99))} ms, max ${Math.round(Math.max(...values))} ms`;
    const mbit = (path: string) => median(throughput.get(path)!);
    console.log('overlays across three routed hosts (no shared L2), tsnet and Docker swarm side by side:');
    for (const overlay of overlays) {
      console.log(`1. ${overlay.label}: convergence, docker run on A → first answer from B, ${RUNS} runs: ${ms(converged.get(overlay.label)!)} (goal p99 ≤ 1000 ms)`);
    }
    for (const overlay of overlays) {
      console.log(`2. ${overlay.label}: an address moved A ↔ C, docker run → first answer from B, ${MOVES} moves: ${ms(moved.get(overlay.label)!)} (goal ≤ 1000 ms)`);
    }
    console.log(`3. TCP throughput, iperf3 ${SECONDS} s, ${ROUNDS} rounds (medians, Mbit/s): ${order.map((path) => `${path} ${Math.round(mbit(path))}`).join(', ')}`);
    for (const overlay of overlays) {
      console.log(`   ${overlay.label}/tunnel ${(mbit(overlay.label) / mbit('tunnel')).toFixed(2)}x, ${overlay.label}/underlay ${(mbit(overlay.label) / mbit('underlay')).toFixed(2)}x`);
    }
    console.log(`   tsnet/swarm ${(mbit('tsnet') / mbit('swarm')).toFixed(2)}x (goal: tsnet/tunnel ≥ 0.9x and ≥ swarm/tunnel)`);
  } finally {
    await cleanup.run();
  }
}

await main();
