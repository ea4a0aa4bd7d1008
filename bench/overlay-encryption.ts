/**
 * An encrypted overlay (-o tsnet.encrypt=on) against a plain one, side by
 * side on the same two Docker hosts in different subnets (routed through a
 * router netns, etcd on it), in the guest kernel: the CI host's has no ESP.
 * Each round creates the plain network on both hosts, measures, removes it,
 * then the same for the encrypted one (the order alternates between rounds):
 * the two cannot live side by side, as two hosts that share an encrypted
 * segment encrypt all their VXLAN. TCP throughput, container → container,
 * iperf3 (BENCH_SECONDS each, BENCH_ROUNDS rounds, medians); for scale the
 * underlay between the hosts, in clear and in ESP of the same algorithm
 * (iperf3's TCP straight in transport SAs between the two host netns, made
 * here): what the kernel's IPsec does on these hosts without VXLAN.
 *
 * The guest is emulated (qemu TCG): AES-GCM runs on an emulated CPU there,
 * so the encrypted figures say what this machine can show, not what a host
 * with AES-NI does.
 *
 *   npm run build && TSN_VM_TIMEOUT=1800 test/vm/vmrun.sh node dist/bench/overlay-encryption.js
 */
import { fileURLToPath } from 'node:url';
import { CleanupStack, createClusterHosts, type DockerHost, newRunId, TEST_IMAGE } from '../test/harness/index.js';
import { median } from './docker-api.js';
import { iperf } from './iperf.js';
import { deriveState, newKey } from '../src/overlay/esp.js';
import { ExecaRunner } from '../src/sys/runner.js';
import { reqidOf, Xfrm, xfrmLines } from '../src/sys/xfrm.js';

/** This file runs as dist/bench/overlay-encryption.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
/** The hosts' underlay addresses (createClusterHosts, routed). */
const [A_UNDERLAY, B_UNDERLAY] = ['10.252.0.1', '10.252.1.1'];
const MODES = { plain: [], encrypted: ['-o', 'tsnet.encrypt=on'] } as const;
type Mode = keyof typeof MODES;

const pidOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', name])).stdout.trim();
const addressOf = async (host: DockerHost, name: string) => (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout.trim();

/** One measurement of `mode`: its network on both hosts, a container on each, iperf3 from A's to B's, then all of it removed. */
async function measure(mode: Mode, a: DockerHost, b: DockerHost): Promise<number> {
  for (const host of [a, b]) {
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'tsnet.mode=overlay', ...MODES[mode], '--ipam-driver', host.driver, '--ipam-opt', `tsnet.pool=${mode}`, '--subnet', '10.97.0.0/24', mode], { timeoutMs: 120_000 });
  }
  try {
    for (const [host, name] of [[a, 'pa'], [b, 'pb']] as const) await host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--network', mode, TEST_IMAGE, 'sleep', '36000'], { timeoutMs: 120_000 });
    const onB = await addressOf(b, 'pb');
    const started = Date.now();
    while ((await a.docker(['exec', 'pa', 'ping', '-c', '1', '-W', '1', onB])).exitCode !== 0) {
      if (Date.now() - started > 30_000) throw new Error(`${mode}: pb (${onB}) never answered pa`);
    }
    return await iperf(`/proc/${await pidOf(b, 'pb')}/ns/net`, `/proc/${await pidOf(a, 'pa')}/ns/net`, onB, SECONDS);
  } finally {
    for (const [host, name] of [[a, 'pa'], [b, 'pb']] as const) {
      await host.docker(['rm', '-f', name]);
      await host.docker(['network', 'rm', mode]);
    }
  }
}

/** The underlay between the host netns in ESP: TCP (iperf3's) between the two addresses through transport SAs both ways, removed afterwards. */
async function underlayInEsp(a: DockerHost, b: DockerHost): Promise<number> {
  const secret = newKey(1).secret;
  const sides = [[a, A_UNDERLAY, B_UNDERLAY], [b, B_UNDERLAY, A_UNDERLAY]] as const;
  for (const [host, self, peer] of sides) {
    const tcp = (src: string, dst: string) => ['xfrm', 'policy', 'add', 'src', `${src}/32`, 'dst', `${dst}/32`, 'proto', 'tcp', 'dir', 'out', 'tmpl', 'src', src, 'dst', dst, 'proto', 'esp', 'reqid', String(reqidOf(1)), 'mode', 'transport', 'level', 'required'];
    await new Xfrm(new ExecaRunner(), host.netns).write([xfrmLines.addState(deriveState(secret, 0, 1, self, peer)), xfrmLines.addState(deriveState(secret, 0, 1, peer, self)), tcp(self, peer)]);
  }
  try {
    return await iperf(`/run/netns/${b.netns}`, `/run/netns/${a.netns}`, B_UNDERLAY, SECONDS);
  } finally {
    for (const [host] of sides) await new Xfrm(new ExecaRunner(), host.netns).write([['xfrm', 'policy', 'flush'], ['xfrm', 'state', 'flush']]);
  }
}

async function main(): Promise<void> {
  const cleanup = new CleanupStack();
  try {
    const { hosts } = await createClusterHosts({ id: newRunId(), net: '10.250.18', hostIds: ['bench-a', 'bench-b'], wire: 'wire', routed: true, tsnetCli: CLI, logLevel: 'warn' }, cleanup);
    const [a, b] = hosts as [DockerHost, DockerHost];
    const results: Record<Mode | 'underlay' | 'underlayEsp', number[]> = { plain: [], encrypted: [], underlay: [], underlayEsp: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order: Mode[] = round % 2 ? ['encrypted', 'plain'] : ['plain', 'encrypted'];
      for (const mode of order) results[mode].push(await measure(mode, a, b));
      results.underlay.push(await iperf(`/run/netns/${b.netns}`, `/run/netns/${a.netns}`, B_UNDERLAY, SECONDS));
      results.underlayEsp.push(await underlayInEsp(a, b));
    }
    const mbit = (key: keyof typeof results) => median(results[key]);
    console.log(`TCP throughput across two routed hosts, iperf3 ${SECONDS} s, ${ROUNDS} rounds (medians, Mbit/s): plain overlay ${Math.round(mbit('plain'))}, encrypted overlay ${Math.round(mbit('encrypted'))}, underlay ${Math.round(mbit('underlay'))}, underlay in ESP ${Math.round(mbit('underlayEsp'))}`);
    console.log(`   every round: plain ${results.plain.map(Math.round).join(' ')}; encrypted ${results.encrypted.map(Math.round).join(' ')}; underlay in ESP ${results.underlayEsp.map(Math.round).join(' ')}`);
    console.log(`   encrypted/plain ${(mbit('encrypted') / mbit('plain')).toFixed(2)}x, encrypted/underlay-in-ESP ${(mbit('encrypted') / mbit('underlayEsp')).toFixed(2)}x (plain/underlay ${(mbit('plain') / mbit('underlay')).toFixed(2)}x)`);
  } finally {
    await cleanup.run();
  }
}

await main();
