// Encrypted overlays (-o tsnet.encrypt=on) against the guest's real kernel,
// which has XFRM and ESP (the CI host kernel has neither). Runs INSIDE the
// guest (npm run test:vlan); elsewhere it fails, it never skips.
//
// Three hosts in netns of their own, each in its own /30 underlay behind one
// router (routed-hosts.ts): A and B run tsnet (the real plugin, wired as the
// daemon wires it, on one etcd); C is a stranger on the same routed
// underlay. A capture on the router's link to A shows what crosses the wire.
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCluster } from '../../src/cluster/cluster-admin.js';
import { EtcdClient } from '../../src/cluster/etcd-client.js';
import type { PoolDefinition, SegmentSecrets } from '../../src/cluster/keys.js';
import { deriveState } from '../../src/overlay/esp.js';
import { SegmentPeers, vxlanLines } from '../../src/overlay/vxlan.js';
import { ForwardingTable } from '../../src/sys/fdb.js';
import { Ip } from '../../src/sys/ip.js';
import { reqidOf, Xfrm, xfrmLines } from '../../src/sys/xfrm.js';
import { Capture } from '../harness/capture.js';
import { CleanupStack, createRoutedHosts, type EtcdServer, execInNetns, ipIn, type RoutedHost, runDir, startEtcd, waitUntil } from '../harness/index.js';
import { echoes, echoStream } from '../harness/overlay-segment.js';
import { NetnsRunner } from '../integration/netns-plugin.js';
import { type OverlayHost, OverlayHosts } from '../integration/overlay-hosts.js';
import { requireEspKernel, uniq } from './guest.js';

const SUBNET = '10.93.0.0/24';
const AUTO_SUBNET = '10.94.0.0/24';
const [ROUTER, HOST_A, HOST_B, STRANGER] = [uniq('er'), uniq('ea'), uniq('eb'), uniq('ec')];
const [CONTAINER_A, CONTAINER_B, AUTO_A, AUTO_B] = [uniq('ka'), uniq('kb'), uniq('qa'), uniq('qb')];
/** What the echo test sends: 'x' bytes, which must never cross the underlay in clear. */
const PAYLOAD_MARK = Buffer.alloc(16, 'x');
/** The underlay's 1500 − 50 of VXLAN − 37 of ESP. */
const ENCRYPTED_MTU = 1413;

const cleanup = new CleanupStack();
const warnings: string[] = [];
const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
let etcd: EtcdServer;
let harness: OverlayHosts;
let a: OverlayHost;
let b: OverlayHost;
let stranger: RoutedHost;
let pools: [string, string];
let onA: string;
let onB: string;

const device = (h: OverlayHost, network = h.network) => `tsx${network.slice(0, 12)}`;
const etcdJson = async <T>(key: string): Promise<T> => JSON.parse((await etcd.etcdctl(['get', '--print-value-only', key])).stdout) as T;
const xfrmOf = (h: OverlayHost) => new Xfrm(new NetnsRunner(h.routed.netns)).read();
const reqids = async (h: OverlayHost) => [...new Set((await xfrmOf(h)).states.map((s) => s.reqid))].sort();
const captureFile = (name: string) => {
  mkdirSync(runDir(uniq('cap')), { recursive: true });
  return join(runDir(uniq('cap')), `${name}.pcap`);
};
const problems = async (h: OverlayHost) => (await h.tsnet.plugin.reconciler.check()).map((d) => `${d.problem} ${d.object}`);

describe('encrypted overlays: IPsec ESP between the hosts of a segment', () => {
  beforeAll(async () => {
    requireEspKernel();
    etcd = await startEtcd({ name: uniq('etcd'), address: '127.0.0.1', dataDir: join(runDir(uniq('etcd')), 'data'), logFile: join(runDir(uniq('etcd')), 'etcd.log') });
    cleanup.defer('destroy etcd', () => etcd.destroy());
    const routed = await createRoutedHosts(ROUTER, [HOST_A, HOST_B, STRANGER], cleanup);
    stranger = routed[2]!;
    // The stranger will send from B's address: the router must not drop it for arriving on the wrong link.
    await execInNetns(ROUTER, ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.r2.rp_filter=0']);
    harness = new OverlayHosts(etcd.endpoint, SUBNET, cleanup, log);
    a = await harness.host('enc-a', routed[0]!);
    b = await harness.host('enc-b', routed[1]!);
    pools = [await harness.pool(a, 'sec'), await harness.pool(b, 'sec')];
  });
  afterAll(async () => {
    console.log(warnings.join(''));
    await cleanup.run();
  });

  it('refuses a bad tsnet.rekey, an MTU ESP does not leave room for, and a network that disagrees with its segment, naming the option', async () => {
    const shortRekey = await harness.createNetwork(a, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on', 'tsnet.rekey': '5s' }, '10.93.0.1/24');
    expect(shortRekey.body).toEqual({ Err: 'tsnet.rekey: "5s" is shorter than the 10 s a rotation needs' });
    const rekeyPlain = await harness.createNetwork(a, { 'tsnet.mode': 'overlay', 'tsnet.rekey': '1h' }, '10.93.0.1/24');
    expect(rekeyPlain.body).toEqual({ Err: 'tsnet.rekey: only an encrypted overlay (-o tsnet.encrypt=on) has a key to rotate' });
    const tooLarge = await harness.createNetwork(a, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on', 'com.docker.network.driver.mtu': '1450' }, '10.93.0.1/24');
    expect(tooLarge.body).toEqual({ Err: `com.docker.network.driver.mtu: 1450 is more than an overlay on this host carries: at most ${ENCRYPTED_MTU} (u0's 1500 − 50 of VXLAN − 37 of ESP)` });
    expect((await harness.createNetwork(a, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on' }, '10.93.0.1/24')).status).toBe(200);
    // The segment is encrypted from its first network on: B cannot join it in clear.
    const plain = await harness.createNetwork(b, { 'tsnet.mode': 'overlay' }, '10.93.0.1/24');
    expect(plain.body).toEqual({ Err: 'tsnet.encrypt: segment sec is encrypted: create the network with -o tsnet.encrypt=on' });
    expect((await ipIn(b.routed.netns, ['-json', 'link', 'show', 'type', 'vxlan'])).stdout.trim()).toBe('[]');
    expect((await harness.createNetwork(b, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on' }, '10.93.0.1/24')).status).toBe(200);
  });

  it('keeps the key in the store, one pair of SAs and policies per pair of hosts, the MTU the underlay − 50 − 37, and warns of a store without TLS', async () => {
    expect(await etcdJson<PoolDefinition>('tsnet/v1/pools/sec/v4/definition')).toMatchObject({ encrypted: true, users: ['enc-a', 'enc-b'] });
    const secrets = await etcdJson<SegmentSecrets>('tsnet/v1/pools/sec/v4/encryption');
    expect(secrets).toMatchObject({ send: 1, keys: [{ generation: 1 }] });
    await a.segments.settle();
    await b.segments.settle();
    for (const [self, peer] of [[a, b], [b, a]] as const) {
      const held = await xfrmOf(self);
      expect(held.states.map((s) => `${s.src}>${s.dst}`).sort()).toEqual([`${self.routed.underlay}>${peer.routed.underlay}`, `${peer.routed.underlay}>${self.routed.underlay}`].sort());
      expect(held.policies.map((p) => `${p.dir} ${p.src}>${p.dst} ${p.port}`).sort()).toEqual([`in ${peer.routed.underlay}>${self.routed.underlay} 4789`, `out ${self.routed.underlay}>${peer.routed.underlay} 4789`]);
      const [link] = JSON.parse((await ipIn(self.routed.netns, ['-json', 'link', 'show', device(self)])).stdout) as Array<{ mtu: number }>;
      expect(link!.mtu).toBe(ENCRYPTED_MTU);
      // Both acknowledged what their kernel holds.
      expect(await etcdJson(`tsnet/v1/pools/sec/v4/key-acks/${self.id}`)).toEqual({ installed: [1], sending: 1 });
    }
    expect(warnings.join('')).toContain('without TLS and a client certificate');
    // tsnet cluster ls marks the segment, and shows nothing of its keys.
    const client = new EtcdClient({ endpoints: [etcd.endpoint] });
    try {
      const { view } = await readCluster(client, a.id, Date.now() + 4000);
      expect(view.segments).toMatchObject([{ pool: 'sec', encrypted: true }]);
      expect(JSON.stringify(view)).not.toContain(secrets.keys[0]!.secret);
    } finally {
      client.close();
    }
    expect(await problems(a)).toEqual([]);
  });

  it('carries the containers\' traffic across the hosts in ESP only: the underlay never sees VXLAN nor the payload, and the largest datagram goes unfragmented', async () => {
    const capture = await Capture.start(ROUTER, 'r0', captureFile('data'), cleanup);
    onA = await harness.runContainer(a, pools[0], CONTAINER_A);
    onB = await harness.runContainer(b, pools[1], CONTAINER_B);
    await waitUntil(async () => (await echoes(CONTAINER_A, onB, 16, 300)) && (await echoes(CONTAINER_B, onA, 16, 300)), { timeoutMs: 15_000, what: 'containers to reach each other across the hosts' });
    expect(await echoes(CONTAINER_A, onB, ENCRYPTED_MTU - 28)).toBe(true);
    await capture.stop();
    expect((await capture.packets('esp')).length).toBeGreaterThan(4);
    expect(await capture.packets('udp port 4789')).toEqual([]);
    expect(await capture.packets('ip[6:2] & 0x3fff != 0')).toEqual([]);
    expect(capture.contains(PAYLOAD_MARK)).toBe(false);
  });

  it('rotates the key on every host during a steady exchange and loses no datagram', async () => {
    const stream = echoStream(CONTAINER_A, onB, 8000, 20);
    await sleep(1000);
    const rotation = await a.segments.rotateKey('sec');
    expect(rotation).toMatchObject({ to: 2, hosts: ['enc-a', 'enc-b'] });
    const { sent, lost } = await stream;
    expect(sent).toBeGreaterThan(100);
    expect(lost).toEqual([]);
    expect(await etcdJson<SegmentSecrets>('tsnet/v1/pools/sec/v4/encryption')).toMatchObject({ send: 2, keys: [{ generation: 2 }] });
    for (const h of [a, b]) {
      await waitUntil(async () => (await reqids(h)).join() === String(reqidOf(2)), { timeoutMs: 10_000, what: `${h.id} to hold only generation 2's SAs` });
      expect(await h.metrics.registry.metrics()).toMatch(/^tsnet_overlay_rekeys_total 1$/m);
      expect(await h.metrics.registry.metrics()).toMatch(/^tsnet_overlay_security_associations 2$/m);
    }
    expect(await echoes(CONTAINER_B, onA)).toBe(true);
  });

  it('finds a flushed SA table and a flushed policy table (tsnet doctor), drops meanwhile instead of sending in clear, and repairs them', async () => {
    const capture = await Capture.start(ROUTER, 'r0', captureFile('flush'), cleanup);
    await ipIn(a.routed.netns, ['xfrm', 'state', 'flush']);
    expect(await problems(a)).toEqual(['missing xfrm-state', 'missing xfrm-state']);
    expect(await echoes(CONTAINER_A, onB, 16, 1000)).toBe(false);
    expect((await a.tsnet.plugin.reconciler.fix('test')).remaining).toEqual([]);
    expect(await echoes(CONTAINER_A, onB)).toBe(true);

    // Without policies the kernel would send VXLAN in clear: the gate drops it, and counts.
    const before = await a.gate.cleartext('out');
    await ipIn(a.routed.netns, ['xfrm', 'policy', 'flush']);
    expect((await problems(a)).sort()).toEqual(['missing xfrm-policy', 'missing xfrm-policy']);
    expect(await echoes(CONTAINER_A, onB, 16, 1000)).toBe(false);
    expect(await a.gate.cleartext('out')).toBeGreaterThan(before);
    expect((await a.tsnet.plugin.reconciler.fix('test')).remaining).toEqual([]);
    expect(await echoes(CONTAINER_A, onB)).toBe(true);
    await capture.stop();
    expect(await capture.packets('udp port 4789')).toEqual([]);
    expect(capture.contains(PAYLOAD_MARK)).toBe(false);
    expect(await a.metrics.registry.metrics()).toMatch(/^tsnet_overlay_cleartext_dropped_total\{direction="out"\} [1-9]\d*$/m);
  });

  it('lets no host without the key in: clear VXLAN from a member\'s address is dropped and counted, ESP under another key is refused by the kernel', async () => {
    const vni = (await etcdJson<PoolDefinition>('tsnet/v1/pools/sec/v4/definition')).vni!;
    // The stranger takes B's underlay address and builds the segment by hand: the VNI, a device, an entry for A's container.
    const spoofed = b.routed.underlay;
    const runner = new NetnsRunner(stranger.netns);
    const ip = new Ip(runner);
    await ip.batch([['address', 'add', `${spoofed}/32`, 'dev', 'lo'], ['link', 'add', 'name', 'seg', 'type', 'bridge'], ['address', 'add', '10.93.0.250/24', 'dev', 'seg'], ['link', 'set', 'dev', 'seg', 'up']]);
    await ip.batch(vxlanLines({ name: 'vx', vni, local: spoofed, port: 4789, bridge: 'seg', mtu: 1400 }));
    const mac = `02:42:${onA.split('.').map((n) => Number(n).toString(16).padStart(2, '0')).join(':')}`;
    await new SegmentPeers('vx', ip, new ForwardingTable(runner)).set([{ ip: onA, mac, host: a.routed.underlay }]);
    const before = await a.gate.cleartext('in');
    expect(await echoes(stranger.netns, onA, 16, 1000)).toBe(false);
    expect(await a.gate.cleartext('in')).toBeGreaterThan(before);
    expect(await a.metrics.registry.metrics()).toMatch(/^tsnet_overlay_cleartext_dropped_total\{direction="in"\} [1-9]\d*$/m);

    // Now in ESP, with the very SPI A expects from B (SPIs are no secret), under a key of its own.
    const forged = deriveState(randomBytes(32).toString('base64'), vni, 2, spoofed, a.routed.underlay);
    await new Xfrm(runner).write([xfrmLines.addState(forged), xfrmLines.setPolicy({ src: spoofed, dst: a.routed.underlay, port: 4789, dir: 'out', reqid: forged.reqid })]);
    const rejected = async () => Number(/XfrmInStateProtoError\s+(\d+)/.exec((await execInNetns(a.routed.netns, ['cat', '/proc/net/xfrm_stat'])).stdout)?.[1]);
    const refusedBefore = await rejected();
    expect(await echoes(stranger.netns, onA, 16, 1000)).toBe(false);
    expect(await rejected()).toBeGreaterThan(refusedBefore);
    // A and B are unharmed.
    expect(await echoes(CONTAINER_B, onA)).toBe(true);
  });

  it('tears a host\'s SAs down on the others when it leaves the segment, and its own with its network', async () => {
    // B leaves: its network, then its use of the pool (what dockerd does at docker network rm).
    expect((await b.tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: b.network })).status).toBe(200);
    expect(await xfrmOf(b)).toEqual({ states: [], policies: [] });
    expect((await b.tsnet.post('IpamDriver.ReleasePool', { PoolID: pools[1] })).status).toBe(200);
    // A keeps its network, and nothing of B: no SA, no policy; its clear VXLAN is still dropped.
    await waitUntil(async () => (await xfrmOf(a)).states.length === 0, { timeoutMs: 10_000, what: 'A to take down its SAs with B' });
    expect((await xfrmOf(a)).policies).toEqual([]);
    expect((await execInNetns(a.routed.netns, ['nft', 'list', 'table', 'inet', 'tsnet_overlay'])).stdout).toContain('cleartext');
    expect((await a.tsnet.post('NetworkDriver.DeleteNetwork', { NetworkID: a.network })).status).toBe(200);
    await waitUntil(async () => !(await execInNetns(a.routed.netns, ['nft', 'list', 'table', 'inet', 'tsnet_overlay'])).stdout.includes('cleartext'), { timeoutMs: 5000, what: 'the cleartext rules to go' });
  });

  it('rotates the key by itself with tsnet.rekey, and the containers keep talking', async () => {
    const auto = harness.onSubnet(AUTO_SUBNET);
    const networks = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')] as const;
    const autoPools = [await auto.pool(a, 'auto'), await auto.pool(b, 'auto')];
    expect((await auto.createNetwork(a, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on', 'tsnet.rekey': '10s' }, '10.94.0.1/24', networks[0])).status).toBe(200);
    expect((await auto.createNetwork(b, { 'tsnet.mode': 'overlay', 'tsnet.encrypt': 'on' }, '10.94.0.1/24', networks[1])).status).toBe(200);
    const autoOnA = await auto.runContainer(a, autoPools[0]!, AUTO_A, networks[0]);
    const autoOnB = await auto.runContainer(b, autoPools[1]!, AUTO_B, networks[1]);
    await waitUntil(() => echoes(AUTO_A, autoOnB, 16, 300), { timeoutMs: 15_000, what: 'the containers to reach each other' });
    // Every 10 s from then on: generation 2 or later, alone.
    const rotated = async () => {
      const { keys } = await etcdJson<SegmentSecrets>('tsnet/v1/pools/auto/v4/encryption');
      return keys.length === 1 && keys[0]!.generation >= 2;
    };
    await waitUntil(rotated, { timeoutMs: 60_000, what: 'tsnet.rekey to rotate the key' });
    for (const h of [a, b]) {
      await waitUntil(async () => {
        const held = await reqids(h);
        return held.length === 1 && held[0] !== reqidOf(1);
      }, { timeoutMs: 15_000, what: `${h.id} to hold the SAs of one later generation only` });
    }
    expect(await echoes(AUTO_B, autoOnA)).toBe(true);
  });
});
