/**
 * Attach overhead of tsnet's macvlan against Docker's built-in macvlan, on the
 * same private dockerd in the same run: one running container is connected to
 * and disconnected from each network in turn (alternating, so drift hits both
 * alike), through the Docker API on the daemon's socket (no CLI start-up in
 * the numbers). The container's first network is a tsnet bridge, the same for both. Each network has its own veth parent inside the dockerd's
 * netns. Prints medians and the ratio tsnet / built-in (goal ≤ 0.9).
 *
 *   npm run build && npm run bench:macvlan      (root; not part of CI)
 */
import { fileURLToPath } from 'node:url';
import { createDockerHost, type DockerHost, ipIn, TEST_IMAGE } from '../test/harness/index.js';
import { dockerApi, median } from './docker-api.js';

/** This file runs as dist/bench/macvlan.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 40);
const WARMUP = 3;

async function main(): Promise<void> {
  const host: DockerHost = await createDockerHost({ dockerdArgs: ['--bridge=none'], logLevel: 'warn', tsnetCli: CLI });
  try {
    for (const parent of ['pbuiltin', 'ptsnet']) {
      await ipIn(host.netns, ['link', 'add', parent, 'type', 'veth', 'peer', 'name', `${parent}-x`]);
      await ipIn(host.netns, ['link', 'set', parent, 'up']);
      await ipIn(host.netns, ['link', 'set', `${parent}-x`, 'up']);
    }
    const networks = { builtin: 'bench-builtin', tsnet: 'bench-tsnet' } as const;
    await host.dockerOk(['network', 'create', '-d', 'macvlan', '-o', 'parent=pbuiltin', '--subnet', '10.80.0.0/24', networks.builtin]);
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=ptsnet', '--subnet', '10.81.0.0/24', networks.tsnet]);
    // dockerd refuses to connect a --network none container, so it sits on a third (bridge) network.
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.82.0.0/24', 'bench-anchor']);
    await host.dockerOk(['run', '-d', '--pull=never', '--network', 'bench-anchor', '--name', 'bench', TEST_IMAGE, 'sleep', '36000']);

    const socketPath = host.host.replace(/^unix:\/\//, '');
    const samples = { builtin: { connect: [] as number[], disconnect: [] as number[] }, tsnet: { connect: [] as number[], disconnect: [] as number[] } };
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      for (const kind of round % 2 ? (['tsnet', 'builtin'] as const) : (['builtin', 'tsnet'] as const)) {
        const connect = await dockerApi(socketPath, `/networks/${networks[kind]}/connect`, { Container: 'bench' });
        const disconnect = await dockerApi(socketPath, `/networks/${networks[kind]}/disconnect`, { Container: 'bench' });
        if (round < WARMUP) continue;
        samples[kind].connect.push(connect);
        samples[kind].disconnect.push(disconnect);
      }
    }
    const row = (kind: 'builtin' | 'tsnet') => ({ connectMs: median(samples[kind].connect), disconnectMs: median(samples[kind].disconnect) });
    const builtin = row('builtin');
    const tsnet = row('tsnet');
    console.log(`macvlan attach, ${ROUNDS} rounds each (medians, Docker API round trip):`);
    console.log(`  Docker built-in macvlan: connect ${builtin.connectMs.toFixed(1)} ms, disconnect ${builtin.disconnectMs.toFixed(1)} ms`);
    console.log(`  tsnet macvlan:           connect ${tsnet.connectMs.toFixed(1)} ms, disconnect ${tsnet.disconnectMs.toFixed(1)} ms`);
    console.log(`  ratio tsnet/built-in:    connect ${(tsnet.connectMs / builtin.connectMs).toFixed(2)}x, disconnect ${(tsnet.disconnectMs / builtin.disconnectMs).toFixed(2)}x (goal ≤ 0.9x)`);
  } finally {
    await host.destroy();
  }
}

await main();
