/**
 * tsnet's overlay on two Docker hosts in different subnets, joined through a
 * router netns (etcd on the router), each a private dockerd with tsnet:
 *
 *  1. Convergence: `docker run -d` on host A, then host B's probe container
 *     pings the new container until it answers; the time from `docker run`
 *     returning to the first answer, over BENCH_RUNS runs (p50, p99).
 *  2. Throughput, TCP, iperf3 (BENCH_SECONDS each, BENCH_ROUNDS alternating
 *     rounds, medians): container → container across the overlay; the same
 *     two hosts over a plain kernel VXLAN tunnel between their netns (the
 *     limit of this data path); and the underlay itself.
 *
 * Goals (issue 20): convergence p99 ≤ 1 s; overlay ≥ 0.9× the plain tunnel.
 * Docker's swarm overlay is not run: this machine's dockerds run without swarm.
 *
 *   npm run build && npm run bench:overlay      (root; not part of CI)
 */
import { fileURLToPath } from 'node:url';
import { CleanupStack, createClusterHosts, type DockerHost, ipIn, newRunId, run, TEST_IMAGE } from '../test/harness/index.js';
import { median, quantile } from './docker-api.js';

/** This file runs as dist/bench/overlay.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** The hosts' underlay addresses (createClusterHosts, routed). */
const UNDERLAY = ['10.252.0.1', '10.252.1.1'];

const pidOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim();
const addressOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

/** Mbit/s of one iperf3 TCP run from the netns `client` to `server` (netns paths), the server on `address`. */
async function iperf(server: string, client: string, address: string): Promise<number> {
  const listening = run('nsenter', [`--net=${server}`, 'iperf3', '-s', '-1', '-B', address]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const r = await run('nsenter', [`--net=${client}`, 'iperf3', '-c', address, '-t', String(SECONDS), '-J']);
  await listening;
  if (r.exitCode !== 0) throw new Error(`iperf3 failed: ${r.stderr}${r.stdout.slice(0, 500)}`);
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6;
}

async function main(): Promise<void> {
  const cleanup = new CleanupStack();
  try {
    const { hosts } = await createClusterHosts({ id: newRunId(), net: '10.250.8', hostIds: ['bench-a', 'bench-b'], wire: 'wire', routed: true, tsnetCli: CLI, logLevel: 'warn' }, cleanup);
    const [a, b] = hosts as [DockerHost, DockerHost];
    for (const host of hosts) await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.pool=bench', '--subnet', '10.94.0.0/16', 'ov']);
    await a.dockerOk(['run', '-d', '--pull=never', '--name', 'pa', '--network', 'ov', TEST_IMAGE, 'sleep', '36000']);
    await b.dockerOk(['run', '-d', '--pull=never', '--name', 'pb', '--network', 'ov', TEST_IMAGE, 'sleep', '36000']);

    // 1. Convergence.
    const converged: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await a.dockerOk(['run', '-d', '--pull=never', '--name', `c${i}`, '--network', 'ov', TEST_IMAGE, 'sleep', '600']);
      const started = performance.now();
      const address = await addressOf(a, `c${i}`);
      // busybox ping waits up to -W for an answer; a short one keeps the sampling fine.
      while ((await b.docker(['exec', 'pb', 'ping', '-c', '1', '-W', '1', address])).exitCode !== 0) {
        if (performance.now() - started > 30_000) throw new Error(`c${i} (${address}) never answered from host B`);
      }
      converged.push(performance.now() - started);
      await a.dockerOk(['rm', '-f', `c${i}`]);
    }

    // 2. Throughput: the overlay, a plain VXLAN tunnel between the same hosts, the underlay.
    for (const [i, host] of hosts.entries()) {
      const peer = UNDERLAY[1 - i]!;
      await ipIn(host.netns, ['link', 'add', 'vxplain', 'type', 'vxlan', 'id', '99', 'local', UNDERLAY[i]!, 'remote', peer, 'dstport', '4790']);
      await ipIn(host.netns, ['address', 'add', `10.95.0.${i + 1}/24`, 'dev', 'vxplain']);
      await ipIn(host.netns, ['link', 'set', 'vxplain', 'up']);
    }
    const [pa, pb] = [`/proc/${await pidOf(a, 'pa')}/ns/net`, `/proc/${await pidOf(b, 'pb')}/ns/net`];
    const paths = { overlay: { server: pb, client: pa, address: await addressOf(b, 'pb') }, tunnel: { server: `/run/netns/${b.netns}`, client: `/run/netns/${a.netns}`, address: '10.95.0.2' }, underlay: { server: `/run/netns/${b.netns}`, client: `/run/netns/${a.netns}`, address: UNDERLAY[1]! } };
    const throughput = { overlay: [] as number[], tunnel: [] as number[], underlay: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 ? (['underlay', 'tunnel', 'overlay'] as const) : (['overlay', 'tunnel', 'underlay'] as const);
      for (const path of order) throughput[path].push(await iperf(paths[path].server, paths[path].client, paths[path].address));
    }

    const mbit = (values: number[]) => `${Math.round(median(values))} Mbit/s`;
    console.log(`overlay across two routed hosts (no shared L2):`);
    console.log(`1. convergence, docker run on A → first answer from B, ${RUNS} runs: p50 ${Math.round(median(converged))} ms, p99 ${Math.round(quantile(converged, 0.99))} ms, max ${Math.round(Math.max(...converged))} ms (goal p99 ≤ 1000 ms)`);
    console.log(`2. TCP throughput, iperf3 ${SECONDS} s, ${ROUNDS} rounds (medians): overlay ${mbit(throughput.overlay)}, plain VXLAN tunnel ${mbit(throughput.tunnel)}, underlay ${mbit(throughput.underlay)}`);
    console.log(`   ratio overlay/tunnel ${(median(throughput.overlay) / median(throughput.tunnel)).toFixed(2)}x (goal ≥ 0.9x), overlay/underlay ${(median(throughput.overlay) / median(throughput.underlay)).toFixed(2)}x`);
  } finally {
    await cleanup.run();
  }
}

await main();
