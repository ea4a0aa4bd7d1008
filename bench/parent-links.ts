/**
 * Attach overhead of tsnet's macvlan and ipvlan against Docker's built-in
 * macvlan and ipvlan, on the same private dockerd in the same run: one
 * running container is connected to and disconnected from each network in
 * turn (the order rotating every round, so drift hits all alike), through
 * the Docker API on the daemon's socket (no CLI start-up in the numbers).
 * The container's first network is a tsnet bridge, the same for all. Each
 * network has its own veth parent inside the dockerd's netns. Prints
 * medians and ratios.
 *
 *   npm run build && npm run bench:parent                  (root; not part of CI)
 *   npm run build && test/vm/vmrun.sh node dist/bench/parent-links.js   (with ipvlan: the guest kernel)
 *
 * A kernel without ipvlan (this CI host's) measures the macvlan rows only, and says so.
 */
import { fileURLToPath } from 'node:url';
import { createDockerHost, type DockerHost, ipIn, TEST_IMAGE } from '../test/harness/index.js';
import { dockerApi, median } from './docker-api.js';

/** This file runs as dist/bench/parent-links.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 40);
const WARMUP = 3;

interface Row {
  label: string;
  /** `-d` and `-o` words after the parent. */
  create: (driver: string, parent: string) => string[];
  ipvlan: boolean;
}

const ROWS: Row[] = [
  { label: 'Docker macvlan', create: (_, parent) => ['-d', 'macvlan', '-o', `parent=${parent}`], ipvlan: false },
  { label: 'tsnet macvlan', create: (driver, parent) => ['-d', driver, '-o', `parent=${parent}`], ipvlan: false },
  { label: 'Docker ipvlan', create: (_, parent) => ['-d', 'ipvlan', '-o', `parent=${parent}`, '-o', 'ipvlan_mode=l2'], ipvlan: true },
  { label: 'tsnet ipvlan', create: (driver, parent) => ['-d', driver, '-o', `parent=${parent}`, '-o', 'ipvlan_mode=l2'], ipvlan: true },
];

/** Whether this kernel makes ipvlan links: tried on a veth of the bench's own netns. */
async function hasIpvlan(host: DockerHost): Promise<boolean> {
  await ipIn(host.netns, ['link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']);
  const made = (await host.execInHost(['ip', 'link', 'add', 'link', 'probe0', 'name', 'probe2', 'type', 'ipvlan', 'mode', 'l2'])).exitCode === 0;
  await ipIn(host.netns, ['link', 'del', 'probe0']);
  return made;
}

async function main(): Promise<void> {
  const host: DockerHost = await createDockerHost({ dockerdArgs: ['--bridge=none'], logLevel: 'warn', tsnetCli: CLI });
  try {
    const ipvlan = await hasIpvlan(host);
    if (!ipvlan) console.log('#### this kernel has no ipvlan: the ipvlan rows are left out (run the bench in the guest: test/vm/vmrun.sh node dist/bench/parent-links.js) ####');
    const rows = ROWS.filter((row) => ipvlan || !row.ipvlan);
    const names = rows.map((_, i) => `bench-${i}`);
    for (const [i, row] of rows.entries()) {
      const parent = `p${i}`;
      await ipIn(host.netns, ['link', 'add', parent, 'type', 'veth', 'peer', 'name', `${parent}-x`]);
      await ipIn(host.netns, ['link', 'set', parent, 'up']);
      await ipIn(host.netns, ['link', 'set', `${parent}-x`, 'up']);
      await host.dockerOk(['network', 'create', ...row.create(host.driver, parent), '--subnet', `10.${80 + i}.0.0/24`, names[i]!]);
    }
    // dockerd refuses to connect a --network none container, so it sits on a bridge network of its own.
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.79.0.0/24', 'bench-anchor']);
    await host.dockerOk(['run', '-d', '--pull=never', '--network', 'bench-anchor', '--name', 'bench', TEST_IMAGE, 'sleep', '36000']);

    const socketPath = host.host.replace(/^unix:\/\//, '');
    const samples = rows.map(() => ({ connect: [] as number[], disconnect: [] as number[] }));
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      for (let k = 0; k < rows.length; k++) {
        const i = (round + k) % rows.length;
        const connect = await dockerApi(socketPath, `/networks/${names[i]}/connect`, { Container: 'bench' });
        const disconnect = await dockerApi(socketPath, `/networks/${names[i]}/disconnect`, { Container: 'bench' });
        if (round < WARMUP) continue;
        samples[i]!.connect.push(connect);
        samples[i]!.disconnect.push(disconnect);
      }
    }
    const medians = new Map(rows.map((row, i) => [row.label, { connect: median(samples[i]!.connect), disconnect: median(samples[i]!.disconnect) }]));
    console.log(`attach to a parent-link network, ${ROUNDS} rounds each (medians, Docker API round trip):`);
    for (const [label, m] of medians) console.log(`  ${label.padEnd(15)} connect ${m.connect.toFixed(1)} ms, disconnect ${m.disconnect.toFixed(1)} ms`);
    const ratio = (a: string, b: string) => {
      const [x, y] = [medians.get(a), medians.get(b)];
      if (x && y) console.log(`  ${`${a} / ${b}`.padEnd(33)} connect ${(x.connect / y.connect).toFixed(2)}x, disconnect ${(x.disconnect / y.disconnect).toFixed(2)}x`);
    };
    ratio('tsnet macvlan', 'Docker macvlan');
    ratio('tsnet ipvlan', 'Docker ipvlan');
    ratio('tsnet ipvlan', 'tsnet macvlan');
  } finally {
    await host.destroy();
  }
}

await main();
