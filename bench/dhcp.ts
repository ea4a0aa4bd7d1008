/**
 * Attach time of a container on a macvlan network whose addresses come from
 * the LAN's DHCP server (--ipam-opt tsnet.dhcp=on) against one on tsnet's own
 * IPAM, on the same private dockerd in the same run: one running container
 * is connected to and disconnected from each network in turn, through the
 * Docker API. The server is dnsmasq on a LAN netns, without its ping check
 * (which would add its own wait, ~3 s here, to every DHCP attach): the
 * figures are tsnet's cost (a relay process, a probe link, four datagrams).
 * Prints medians and the ratio.
 *
 *   npm run build && npm run bench:dhcp      (root; not part of CI)
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CleanupStack, createDockerHost, createNetns, createVethPair, deleteNetns, type DockerHost, newRunId, runDir, startDhcpServer, TEST_IMAGE } from '../test/harness/index.js';
import { dockerApi, median } from './docker-api.js';

/** This file runs as dist/bench/dhcp.js, where the harness's REPO_ROOT would point into dist/. */
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const WARMUP = 3;

async function main(): Promise<void> {
  const cleanup = new CleanupStack();
  const id = newRunId();
  try {
    const host: DockerHost = await createDockerHost({ dockerdArgs: ['--bridge=none'], logLevel: 'warn', tsnetCli: CLI });
    cleanup.defer('destroy host', () => host.destroy());
    const lan = `${id}lan`;
    await createNetns(lan);
    cleanup.defer('delete LAN', () => deleteNetns(lan));
    await createVethPair({ netns: host.netns, name: 'pdhcp' }, { netns: lan, name: 'wire', address: '10.93.0.1/24' });
    await startDhcpServer({ dir: join(runDir(id), 'dhcp'), netns: lan, iface: 'wire', address: '10.93.0.1', range: '10.93.0.100,10.93.0.200', extraArgs: ['--no-ping'] }, cleanup);
    await createVethPair({ netns: host.netns, name: 'pipam' }, { netns: lan, name: 'wire2' });
    const networks = { ipam: 'bench-ipam', dhcp: 'bench-dhcp' } as const;
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=pipam', '--ipam-driver', host.driver, '--subnet', '10.94.0.0/24', networks.ipam]);
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=pdhcp', '--ipam-driver', host.driver, '--ipam-opt', 'tsnet.dhcp=on', '--subnet', '10.93.0.0/24', networks.dhcp]);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.92.0.0/24', 'bench-anchor']);
    await host.dockerOk(['run', '-d', '--pull=never', '--network', 'bench-anchor', '--name', 'bench', TEST_IMAGE, 'sleep', '36000']);

    const socketPath = host.host.replace(/^unix:\/\//, '');
    const samples = { ipam: { connect: [] as number[], disconnect: [] as number[] }, dhcp: { connect: [] as number[], disconnect: [] as number[] } };
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      for (const kind of round % 2 ? (['dhcp', 'ipam'] as const) : (['ipam', 'dhcp'] as const)) {
        const connect = await dockerApi(socketPath, `/networks/${networks[kind]}/connect`, { Container: 'bench' });
        const disconnect = await dockerApi(socketPath, `/networks/${networks[kind]}/disconnect`, { Container: 'bench' });
        if (round < WARMUP) continue;
        samples[kind].connect.push(connect);
        samples[kind].disconnect.push(disconnect);
      }
    }
    const row = (kind: 'ipam' | 'dhcp') => ({ connect: median(samples[kind].connect), disconnect: median(samples[kind].disconnect) });
    const [ipam, dhcp] = [row('ipam'), row('dhcp')];
    console.log(`macvlan attach, ${ROUNDS} rounds each (medians, Docker API round trip):`);
    console.log(`  tsnet's IPAM:             connect ${ipam.connect.toFixed(1)} ms, disconnect ${ipam.disconnect.toFixed(1)} ms`);
    console.log(`  the LAN's DHCP server:    connect ${dhcp.connect.toFixed(1)} ms, disconnect ${dhcp.disconnect.toFixed(1)} ms`);
    console.log(`  ratio DHCP / tsnet IPAM:  connect ${(dhcp.connect / ipam.connect).toFixed(2)}x, disconnect ${(dhcp.disconnect / ipam.disconnect).toFixed(2)}x`);
  } finally {
    await cleanup.run();
  }
}

await main();
