// The drift watcher's reading of monitor lines (as `ip -o monitor` and
// `nft monitor` print them, captured on this kernel), and what tsnet counts
// as its own changes: those made while serving a plugin request.
import { describe, expect, it } from 'vitest';
import { type EventJudge, judgeLinkEvent, judgeRuleEvent, judgeXfrmEvent } from '../../src/repair/kernel-events.js';
import { withoutKey } from '../../src/sys/xfrm.js';
import { OwnChanges } from '../../src/repair/own-changes.js';
import { RecordingRunner } from '../../src/sys/index.js';

const BRIDGE = 'tsbr-abcdef0123';
const VETH = 'tsv0123456789ab';
const VXLAN = 'tsx0123456789ab';
const lines = {
  bridgeUp: `2: ${BRIDGE}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN group default \\    link/ether 1e:be:5b:af:ed:0e brd ff:ff:ff:ff:ff:ff`,
  vethMaster: `4: ${VETH}@tsc0123456789ab: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue master ${BRIDGE} state LOWERLAYERDOWN group default`,
  vethDeleted: `Deleted 4: ${VETH}@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 72:6c:c3:7f:2f:ef brd ff:ff:ff:ff:ff:ff`,
  gatewayDeleted: `Deleted 2: ${BRIDGE}    inet 10.9.0.1/24 scope global ${BRIDGE}\\       valid_lft forever preferred_lft forever`,
  shimRoute: `Deleted 10.77.0.5 dev tss0123456789ab scope link `,
  linkLocal: `2: ${BRIDGE}    inet6 fe80::1cbe:5bff:feaf:ed0e/64 scope link \\       valid_lft forever preferred_lft forever`,
  v6Route: `fe80::/64 dev ${VETH} proto kernel metric 256 pref medium`,
  multicast: `multicast ff00::/8 dev ${VETH} table local proto kernel metric 256 pref medium`,
  localRoute: `local 10.9.0.1 dev ${BRIDGE} table local proto kernel scope host src 10.9.0.1 `,
  dockerVeth: `9: veth3f2a1b1@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master docker0 state UP group default`,
  // `ip -o monitor neigh`: an overlay's peer entries (a neighbour deleted shows FAILED), its forwarding entry (as
  // the bridge family's neighbour, with its destination), and what every conversation on a bridge makes.
  peerAdded: `10.90.0.5 dev ${VXLAN} lladdr 02:42:0a:5a:00:05 PERMANENT `,
  peerDeleted: `Deleted 10.90.0.5 dev ${VXLAN} FAILED `,
  forwardingDeleted: `Deleted 10.252.1.1 dev ${VXLAN} lladdr 02:42:0a:5a:00:05 NOARP PERMANENT `,
  containerArp: `10.9.0.2 dev ${BRIDGE} lladdr 02:42:0a:09:00:02 REACHABLE `,
  learnedMac: `dev ${VETH} lladdr 02:42:0a:09:00:02 REACHABLE `,
  portMac: `dev ${VETH} lladdr 72:6c:c3:7f:2f:ef PERMANENT `,
  parentPromiscOff: `2: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP group default \\    link/ether 52:54:00:12:34:56`,
};

const judge = (own: Partial<EventJudge> = {}): EventJudge => ({
  ownsLink: (name) => /^ts/.test(name) || name === 'eth1',
  keepsPeers: (name) => name === VXLAN,
  changedLink: () => false,
  changedPorts: () => false,
  changedRules: () => false,
  rulesChangedAt: () => 0,
  ...own,
});

describe('monitor lines the drift watcher looks after', () => {
  it('looks when someone else changes what tsnet keeps: its links, their IPv4 addresses, shim routes, a macvlan parent', () => {
    for (const line of [lines.bridgeUp, lines.vethMaster, lines.vethDeleted, lines.gatewayDeleted, lines.shimRoute, lines.parentPromiscOff]) {
      expect([line, judgeLinkEvent(line, judge())]).toEqual([line, 'look']);
    }
  });

  it('ignores tsnet\'s own changes, links it does not keep, and what it never checks (IPv6 link-local, derived routes)', () => {
    const own = judge({ changedLink: (name) => name === VETH || name === BRIDGE });
    for (const line of [lines.bridgeUp, lines.vethMaster, lines.vethDeleted]) expect([line, judgeLinkEvent(line, own)]).toEqual([line, 'ignore']);
    for (const line of [lines.dockerVeth, lines.linkLocal, lines.v6Route, lines.multicast, lines.localRoute]) {
      expect([line, judgeLinkEvent(line, judge())]).toEqual([line, 'ignore']);
    }
  });

  it('takes a bridge\'s line after a request changed its ports for the carrier catching up, unless the bridge is down', () => {
    const ports = judge({ changedPorts: (name) => name === BRIDGE });
    const noCarrier = `2: ${BRIDGE}: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN group default`;
    const down = `2: ${BRIDGE}: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN group default`;
    expect([judgeLinkEvent(noCarrier, ports), judgeLinkEvent(down, ports), judgeLinkEvent(lines.gatewayDeleted, ports)]).toEqual(['ignore', 'look', 'look']);
  });

  it('looks when someone else changes an overlay\'s peer entries, and at no other neighbour: conversations on a bridge make them all the time', () => {
    for (const line of [lines.peerAdded, lines.peerDeleted, lines.forwardingDeleted]) expect([line, judgeLinkEvent(line, judge())]).toEqual([line, 'look']);
    const own = judge({ changedLink: (name) => name === VXLAN });
    for (const line of [lines.peerAdded, lines.peerDeleted, lines.forwardingDeleted]) expect([line, judgeLinkEvent(line, own)]).toEqual([line, 'ignore']);
    for (const line of [lines.containerArp, lines.learnedMac, lines.portMac]) expect([line, judgeLinkEvent(line, judge())]).toEqual([line, 'ignore']);
  });

  it('looks at a line it cannot read rather than miss drift', () => {
    expect(judgeLinkEvent('something new from iproute2', judge())).toBe('look');
  });

  it('reads nft monitor: tsnet\'s table and the base chains its iptables backend hooks into matter, Docker\'s chains do not', () => {
    expect(judgeRuleEvent('delete table inet tsnet', judge())).toBe('look');
    expect(judgeRuleEvent('add element inet tsnet published { 10.1.0.2 . tcp . 80 }', judge({ changedRules: () => true }))).toBe('ignore');
    expect(judgeRuleEvent('delete rule ip filter FORWARD handle 12', judge())).toBe('look');
    expect(judgeRuleEvent('flush ruleset', judge())).toBe('look');
    expect(judgeRuleEvent('add rule ip nat DOCKER iifname != "docker0" tcp dport 8080 dnat to 172.17.0.2:80', judge())).toBe('ignore');
    expect(judgeRuleEvent('# new generation 42 by process 1234 (dockerd)', judge())).toBe('ignore');
  });
});

describe('tsnet\'s own changes', () => {
  it('are what commands run during a plugin request touch, for a moment', async () => {
    let now = 0;
    const own = new OwnChanges(() => now);
    const runner = own.watch(new RecordingRunner());
    await runner.run('ip', ['link', 'set', 'dev', 'tsvoutside', 'up']); // a repair, not a request
    await own.during(async () => {
      await runner.run('ip', ['-batch', '-'], { input: `link add ${VETH} type veth peer name tsc0123456789ab\nlink set ${VETH} master ${BRIDGE}\n` });
      await runner.run('nft', ['-f', '-'], { input: 'add element inet tsnet published { … }' });
    });
    expect([own.changedLink(VETH), own.changedLink(BRIDGE), own.changedLink('tsc0123456789ab'), own.changedLink('tsvoutside'), own.changedRules()]).toEqual([true, true, true, false, true]);
    now += 301;
    expect([own.changedLink(VETH), own.changedRules()]).toEqual([false, false]);
  });

  it('include the forwarding entries bridge(8) writes', async () => {
    const own = new OwnChanges(() => 0);
    const runner = own.watch(new RecordingRunner());
    await own.during(() => runner.run('bridge', ['-batch', '-'], { input: `fdb replace 02:42:0a:5a:00:05 dev ${VXLAN} dst 10.252.1.1 self permanent\n` }));
    expect(own.changedLink(VXLAN)).toBe(true);
  });

  it('count a request\'s bridge as changing carrier for a while after it', async () => {
    let now = 0;
    const own = new OwnChanges(() => now);
    await own.during(async () => undefined, [BRIDGE]);
    now += 1_000;
    expect([own.changedPorts(BRIDGE), own.changedPorts('tsbr-other00000')]).toEqual([true, false]);
    now += 600;
    expect(own.changedPorts(BRIDGE)).toBe(false);
  });
});

describe('the IPsec tables\' monitor lines', () => {
  // As `ip -o xfrm monitor` prints them (the guest kernel's, 6.1).
  const key = `0x${'0'.repeat(71)}1`;
  const sa = (reqid: number) => `src 10.251.1.1 dst 10.251.2.1\\\tproto esp spi 0x00001000 reqid ${reqid} mode transport\\\treplay-window 0 \\\taead rfc4106(gcm(aes)) ${key} 128\\\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \\`;
  const policy = (priority: number) => `src 10.251.1.1/32 dst 10.251.2.1/32 proto udp dport 4789 \\\tdir out priority ${priority} ptype main \\\ttmpl src 10.251.1.1 dst 10.251.2.1\\\t\\\tproto esp reqid 1951596546 mode transport\\`;

  it('ask for a look at a flush and at a deletion of tsnet\'s own, and at nothing else', () => {
    expect(judgeXfrmEvent('Flushed state proto 0\\')).toBe('look');
    expect(judgeXfrmEvent('Flushed policy ptype main \\')).toBe('look');
    expect(judgeXfrmEvent(`Deleted ${sa(0x74530002)}`)).toBe('look');
    expect(judgeXfrmEvent(`Deleted ${policy(0x7453)}`)).toBe('look');
    // Another program's (an IKE daemon's), and what is added or updated.
    expect(judgeXfrmEvent(`Deleted ${sa(7)}`)).toBe('ignore');
    expect(judgeXfrmEvent(sa(0x74530002))).toBe('ignore');
    expect(judgeXfrmEvent(`Updated ${policy(0x7453)}`)).toBe('ignore');
  });

  it('are logged without an SA\'s key', () => {
    expect(withoutKey(`Deleted ${sa(0x74530002)}`)).not.toContain(key);
    expect(withoutKey(`Deleted ${sa(0x74530002)}`)).toContain('aead …');
  });
});
