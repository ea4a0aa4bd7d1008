/**
 * One overlay segment built by hand on routed hosts (routed-hosts.ts), for
 * the data-path tests: a bridge `seg` with gateway 10.90.0.1/24 on every
 * host, its VXLAN device `vx`, and containers as netns on the bridge, each
 * with a UDP echo on port 7007.
 */
import { SegmentPeers, vxlanLines } from '../../src/overlay/vxlan.js';
import { ForwardingTable } from '../../src/sys/fdb.js';
import { Ip } from '../../src/sys/ip.js';
import type { Runner } from '../../src/sys/runner.js';
import type { CleanupStack } from './cleanup.js';
import { createNetns, createVethPair, deleteNetns, execInNetns, ipIn, netnsPath } from './netns.js';
import { nodeInNetns, udpEchoServer } from './outside.js';

export const SEGMENT_VNI = 4242;
export const ECHO_PORT = 7007;

/** The segment's bridge and VXLAN device on a host; the peer table that programs it. */
export async function buildSegment(runner: Runner, netns: string, underlay: string, mtu: number): Promise<SegmentPeers> {
  const ip = new Ip(runner, netns);
  await ip.batch([['link', 'add', 'name', 'seg', 'mtu', String(mtu), 'type', 'bridge'], ['address', 'add', '10.90.0.1/24', 'dev', 'seg'], ['link', 'set', 'dev', 'seg', 'up']]);
  await ip.batch(vxlanLines({ name: 'vx', vni: SEGMENT_VNI, local: underlay, port: 4789, bridge: 'seg', mtu }));
  return new SegmentPeers('vx', ip, new ForwardingTable(runner, netns));
}

/** A container on a host's segment: a netns with a veth, `address`, its MAC (`mac`, or the kernel's), and a UDP echo. Resolves with its MAC. */
export async function segmentContainer(host: string, name: string, address: string, mtu: number, cleanup: CleanupStack, mac?: string): Promise<string> {
  await createNetns(name);
  cleanup.defer(`delete netns ${name}`, () => deleteNetns(name));
  const hostEnd = `v${name.slice(-6)}`;
  await createVethPair({ netns: host, name: hostEnd }, { netns: name, name: 'eth0' });
  if (mac) await ipIn(name, ['link', 'set', 'eth0', 'address', mac]);
  await ipIn(name, ['address', 'add', `${address}/24`, 'dev', 'eth0']);
  await ipIn(host, ['link', 'set', hostEnd, 'master', 'seg', 'mtu', String(mtu)]);
  await ipIn(name, ['link', 'set', 'eth0', 'mtu', String(mtu)]);
  await ipIn(name, ['route', 'add', 'default', 'via', '10.90.0.1']);
  await nodeInNetns(netnsPath(name), udpEchoServer(ECHO_PORT), cleanup);
  return (JSON.parse((await ipIn(name, ['-json', 'link', 'show', 'eth0'])).stdout) as Array<{ address: string }>)[0]!.address;
}

/** Whether `from` gets an echo of a `bytes`-byte UDP payload from `address` within `waitMs` (sent with DF, as Linux sends UDP; resent every 250 ms, so one lost datagram on a busy host is no failure). */
export async function echoes(from: string, address: string, bytes = 16, waitMs = 2000): Promise<boolean> {
  const script = `const s = require('dgram').createSocket('udp4');
    s.on('message', (m) => process.exit(m.length === ${bytes} + 4 ? 0 : 4));
    const send = () => s.send(Buffer.alloc(${bytes}, 120), ${ECHO_PORT}, '${address}', (e) => e && process.exit(5));
    send();
    setInterval(send, 250);
    setTimeout(() => process.exit(3), ${waitMs});`;
  return (await execInNetns(from, [process.execPath, '-e', script])).exitCode === 0;
}

/**
 * A steady exchange: a numbered datagram from `from` to the echo on
 * `address` every `everyMs` for `forMs`, then a second for the last echoes.
 * Resolves with how many went out and which never came back.
 */
export async function echoStream(from: string, address: string, forMs: number, everyMs = 20): Promise<{ sent: number; lost: number[] }> {
  const script = `const s = require('dgram').createSocket('udp4');
    const back = new Set(); let sent = 0;
    s.on('message', (m) => back.add(Number(String(m).split(':')[2])));
    const timer = setInterval(() => { const n = sent++; s.send('seq:' + n + ':xxxxxxxxxxxx', ${ECHO_PORT}, '${address}'); }, ${everyMs});
    setTimeout(() => { clearInterval(timer); setTimeout(() => {
      const lost = []; for (let n = 0; n < sent; n++) if (!back.has(n)) lost.push(n);
      console.log(JSON.stringify({ sent, lost })); process.exit(0);
    }, 1000); }, ${forMs});`;
  const { stdout, stderr, exitCode } = await execInNetns(from, [process.execPath, '-e', script], { timeoutMs: forMs + 30_000 });
  if (exitCode !== 0) throw new Error(`the echo stream from ${from} to ${address} exited ${exitCode}: ${stderr}`);
  return JSON.parse(stdout) as { sent: number; lost: number[] };
}
