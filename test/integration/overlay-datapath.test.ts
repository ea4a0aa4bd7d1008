/**
 * The overlay's data path on a real kernel, without the store: two hosts in
 * different L3 subnets, joined only through a router netns (no shared L2:
 * macvlan could not work here), each with the segment's bridge (the same
 * gateway address on both), its VXLAN device and one container. The peer
 * entries are what the store would give; the test checks that containers
 * reach each other only through them, that a full-size frame passes at the
 * underlay's MTU − 50, that an address moved to a third host (with its MAC:
 * tsnet derives MACs from addresses) is reached there, and that a removed
 * peer is unreachable.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findUnderlay } from '../../src/overlay/underlay.js';
import { type RemotePeer, SegmentPeers, VXLAN_OVERHEAD } from '../../src/overlay/vxlan.js';
import { ForwardingTable } from '../../src/sys/fdb.js';
import { Ip } from '../../src/sys/ip.js';
import { ExecaRunner } from '../../src/sys/runner.js';
import { CleanupStack, createRoutedHosts, deleteNetns, execInNetns, ipIn } from '../harness/index.js';
import { buildSegment, echoes, segmentContainer } from '../harness/overlay-segment.js';

const run = randomBytes(2).toString('hex');
const ns = { router: `tsor${run}`, a: `tsoa${run}`, b: `tsob${run}`, c: `tsoc${run}`, ca: `tsoca${run}`, cb: `tsocb${run}`, cb2: `tsocd${run}`, cc: `tsocc${run}` };
const UNDERLAY_MTU = 1500;
const MTU = UNDERLAY_MTU - VXLAN_OVERHEAD[4];
const underlay = { a: '10.251.1.1', b: '10.251.2.1', c: '10.251.3.1' };
const runner = new ExecaRunner();
const cleanup = new CleanupStack();

/** What a host holds: its segment bridge, VXLAN device and peer table. */
interface Host {
  netns: string;
  peers: SegmentPeers;
}
const hosts: Record<'a' | 'b' | 'c', Host> = {} as Record<'a' | 'b' | 'c', Host>;

describe('the overlay data path across routed hosts', () => {
  let macs: { ca: string; cb: string; cb2: string };

  beforeAll(async () => {
    // Three hosts in their own subnets, routed: they share no L2.
    await createRoutedHosts(ns.router, [ns.a, ns.b, ns.c], cleanup);
    for (const [key, netns] of [['a', ns.a], ['b', ns.b], ['c', ns.c]] as const) hosts[key] = { netns, peers: await buildSegment(runner, netns, underlay[key], MTU) };
    const container = (host: string, name: string, address: string) => segmentContainer(host, name, address, MTU, cleanup);
    macs = { ca: await container(ns.a, ns.ca, '10.90.0.2'), cb: await container(ns.b, ns.cb, '10.90.0.3'), cb2: await container(ns.b, ns.cb2, '10.90.0.4') };
  });
  afterAll(async () => {
    await cleanup.run();
  });

  const peer = (ip: string, mac: string, host: string): RemotePeer => ({ ip, mac, host });

  it('finds each host\'s underlay address: its source toward etcd, or the one advertised if the host has it', async () => {
    // etcd on host B's side: host A sends from its own routed address.
    expect(await findUnderlay({ endpoints: [`${underlay.b}:2379`] }, new Ip(runner, ns.a))).toEqual({ address: underlay.a, port: 4789 });
    expect(await findUnderlay({ endpoints: [`${underlay.b}:2379`], advertiseAddress: underlay.a, vxlanPort: 4790 }, new Ip(runner, ns.a))).toEqual({ address: underlay.a, port: 4790 });
    await expect(findUnderlay({ endpoints: [`${underlay.b}:2379`], advertiseAddress: underlay.c }, new Ip(runner, ns.a))).rejects.toThrow(`--advertise-address ${underlay.c}: not an address of this host`);
  });

  it('reaches nothing across hosts before the store gives the peers: no learning, no flooding', async () => {
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(false);
  });

  it('reaches the other host\'s containers through the peer entries, both ways, a full-size datagram too', async () => {
    await hosts.a.peers.set([peer('10.90.0.3', macs.cb, underlay.b), peer('10.90.0.4', macs.cb2, underlay.b)]);
    await hosts.b.peers.set([peer('10.90.0.2', macs.ca, underlay.a)]);
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(true);
    expect(await echoes(ns.cb, '10.90.0.2')).toBe(true);
    // The largest UDP payload the container's MTU carries unfragmented (MTU − IP 20 − UDP 8), DF set:
    // it fits the underlay only because the segment's MTU leaves VXLAN's 50 bytes.
    expect(await echoes(ns.ca, '10.90.0.4', MTU - 28)).toBe(true);
    expect(MTU).toBe(1450);
  });

  it('reaches an address that moved to another host, its forwarding entry replaced, not appended', async () => {
    // The container of 10.90.0.3 goes from host B to host C, with its MAC.
    await deleteNetns(ns.cb);
    await segmentContainer(ns.c, ns.cc, '10.90.0.3', MTU, cleanup, macs.cb);
    await hosts.c.peers.set([peer('10.90.0.2', macs.ca, underlay.a)]);
    const written = await hosts.a.peers.set([peer('10.90.0.3', macs.cb, underlay.c), peer('10.90.0.4', macs.cb2, underlay.b)]);
    expect(written).toEqual({ written: 1, removed: 0 });
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(true);
    const fdb = (await execInNetns(ns.a, ['bridge', 'fdb', 'show', 'dev', 'vx'])).stdout;
    expect(fdb).toContain(`${macs.cb} dst ${underlay.c}`);
    // One entry for the MAC, the new host's: `append` would have left the old host too.
    expect(fdb.match(new RegExp(`${macs.cb} dst`, 'g'))).toHaveLength(1);
  });

  it('takes over what the kernel holds after a restart, and deletes what the store dropped meanwhile', async () => {
    // A new table for A's device, as a restarted daemon has: it adopts the entries, then the store says 10.90.0.4 is gone.
    const restarted = new SegmentPeers('vx', new Ip(runner, ns.a), new ForwardingTable(runner, ns.a));
    await restarted.adoptKernel();
    expect(restarted.peers().map((p) => `${p.ip} ${p.host}`).sort()).toEqual([`10.90.0.3 ${underlay.c}`, `10.90.0.4 ${underlay.b}`]);
    expect(await restarted.set([peer('10.90.0.3', macs.cb, underlay.c)])).toEqual({ written: 0, removed: 1 });
    hosts.a.peers = restarted;
  });

  it('reaches a removed peer no more, and leaves no entry of it', async () => {
    await hosts.a.peers.set([peer('10.90.0.3', macs.cb, underlay.c)]);
    expect(await echoes(ns.ca, '10.90.0.4')).toBe(false);
    expect((await execInNetns(ns.a, ['bridge', 'fdb', 'show', 'dev', 'vx'])).stdout).not.toContain(`${macs.cb2} dst`);
    expect((await ipIn(ns.a, ['neigh', 'show', 'dev', 'vx'])).stdout).not.toContain('10.90.0.4');
    expect(await echoes(ns.ca, '10.90.0.3')).toBe(true);
  });
});
