// The firewall backends' comparison of their records with what the kernel
// shows (pure functions; test/integration/drift.test.ts runs them against a
// real kernel): in sync nothing, each lost or added piece one difference.
import { describe, expect, it } from 'vitest';
import type { FirewallNetwork, PortForward } from '../../src/sys/firewall.js';
import { basePlan, networkPlan, type Table, TABLES } from '../../src/sys/iptables/plan.js';
import { hookText, parseSave, ruleText } from '../../src/sys/iptables/restore-script.js';
import { iptablesDrift, type IptablesSnapshot } from '../../src/sys/iptables/rule-drift.js';
import { type NftSnapshot, nftDrift, parseTable } from '../../src/sys/nftables/table-drift.js';
import { SAMPLE_NETWORK } from './sample-network.js';

const network: FirewallNetwork = { ...SAMPLE_NETWORK, dnsServer: '10.1.0.1' };
const forwards: PortForward[] = [{ family: 4, proto: 'tcp', hostPort: 8080, containerIp: '10.1.0.2', containerPort: 80 }];
const dockerBridges = ['br-0123456789ab', 'docker0'];

/** iptables-save as the kernel would show tsnet's rules for the network (hooks first in their chains). */
function savedText(drop: (line: string) => boolean = () => false, extra: string[] = []): string {
  const base = basePlan(dockerBridges);
  const own = networkPlan(network, 4, forwards);
  const chains = [...base.chains, ...own.chains];
  const lines = (table: Table) => [
    `*${table}`,
    ...['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING'].map((c) => `:${c} ACCEPT [0:0]`),
    ...chains.filter((c) => c.table === table).map((c) => `:${c.name} - [0:0]`),
    ...[...base.hooks, ...own.hooks].filter((h) => h.table === table).map(hookText),
    ...chains.filter((c) => c.table === table).flatMap((c) => c.rules.map((r) => ruleText(c.name, r))),
    ...extra.filter((l) => l.startsWith(`${table} `)).map((l) => l.slice(table.length + 1)),
    'COMMIT',
  ];
  return TABLES.flatMap(lines).filter((l) => !drop(l)).join('\n');
}

const iptablesSnapshot = (text: string): IptablesSnapshot => ({ backend: 'iptables', saved: { 4: parseSave(text), 6: parseSave('') } });

describe('iptables drift', () => {
  it('finds nothing when the kernel holds exactly the plan', () => {
    expect(iptablesDrift(iptablesSnapshot(savedText()), network, forwards, dockerBridges)).toEqual([]);
  });

  it('names a lost rule, a lost hook, a lost chain and a rule someone added', () => {
    const dnat = '-A TSNET-DNAT-0123456789 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80';
    const text = savedText((l) => l === dnat || l === '-A FORWARD -j TSNET-FORWARD' || l === ':TSNET-OPEN - [0:0]', ['mangle -A TSNET-FWD-0123456789 -j ACCEPT']);
    expect(iptablesDrift(iptablesSnapshot(text), network, forwards, dockerBridges).map((d) => `${d.problem} ${d.object} ${d.detail}`)).toEqual([
      'missing chain TSNET-OPEN (mangle, IPv4)',
      'extra rule -A TSNET-FWD-0123456789 -j ACCEPT (mangle, IPv4)',
      `missing rule ${dnat} (nat, IPv4)`,
      'missing hook -A FORWARD -j TSNET-FORWARD (filter, IPv4)',
    ]);
  });

  it("names a Docker bridge missing from TSNET-DOCKER, and one Docker no longer has", () => {
    const text = savedText((l) => l === '-A TSNET-DOCKER -o docker0 -j DROP');
    expect(iptablesDrift(iptablesSnapshot(text), network, forwards, [...dockerBridges, 'br-ffffffffffff']).map((d) => `${d.problem} ${d.object} ${d.detail}`)).toEqual([
      'missing rule -A TSNET-DOCKER -o docker0 -j DROP (mangle, IPv4)',
      'missing rule -A TSNET-DOCKER -o br-ffffffffffff -j DROP (mangle, IPv4)',
    ]);
    expect(iptablesDrift(iptablesSnapshot(savedText()), network, forwards, ['docker0']).map((d) => `${d.problem} ${d.object} ${d.detail}`)).toEqual([
      'extra rule -A TSNET-DOCKER -o br-0123456789ab -j DROP (mangle, IPv4)',
    ]);
  });

  it('says the whole chain is missing, not each of its rules, after a flush that deleted it', () => {
    const text = savedText((l) => l.includes('TSNET-SNAT-0123456789') && !l.startsWith('-A TSNET-POSTROUTING'));
    expect(iptablesDrift(iptablesSnapshot(text), network, forwards, dockerBridges).map((d) => `${d.problem} ${d.object} ${d.detail}`)).toEqual(['missing chain TSNET-SNAT-0123456789 (nat, IPv4)']);
  });
});

/** `nft -j list table inet tsnet` of the network in sync, as nft 1.0.6 prints it (the rules left out: counted per chain below). */
function tableJson(elements: Record<string, unknown[]>, rules: Record<string, number>): string {
  return JSON.stringify({
    nftables: [
      ...Object.entries(elements).map(([name, elem]) => (name.startsWith('ports') || name === 'snat4' ? { map: { name, elem } } : { set: { name, elem } })),
      ...Object.entries(rules).flatMap(([chain, n]) => [{ chain: { name: chain } }, ...Array.from({ length: n }, () => ({ rule: { chain } }))]),
    ],
  });
}

const SKELETON_RULES = { published: 4, forward: 8, input: 6, prerouting: 1, output: 1, postrouting: 6 };
const inSync: Record<string, unknown[]> = {
  bridges: ['tsbr-0123456789'],
  publishing: ['tsbr-0123456789'],
  internal: [],
  open: [],
  localnet: ['tsbr-0123456789'],
  docker_bridges: dockerBridges,
  icc: [{ concat: ['tsbr-0123456789', 'tsbr-0123456789'] }],
  subnets4: [{ concat: ['tsbr-0123456789', { prefix: { addr: '10.1.0.0', len: 24 } }] }],
  masq4: [{ concat: ['tsbr-0123456789', { prefix: { addr: '10.1.0.0', len: 24 } }] }],
  subnets6: [],
  masq6: [],
  snat4: [],
  dns4: [{ concat: ['tsbr-0123456789', '10.1.0.1'] }],
  dnsgw4: ['10.1.0.1'],
  ports4: [],
  ports4_any: [[{ elem: { val: { concat: ['tcp', 8080] }, comment: '0123456789/e1e1e1e1e1e1' } }, { concat: ['10.1.0.2', 80] }]],
  ports6: [],
  ports6_any: [],
};
const nftSnapshot = (json: string | undefined): NftSnapshot => ({ backend: 'nftables', table: json === undefined ? undefined : parseTable(json), gate: undefined });

describe('nftables drift', () => {
  it('finds nothing when the table holds the skeleton and the network\'s elements', () => {
    expect(nftDrift(nftSnapshot(tableJson(inSync, SKELETON_RULES)), network, forwards, dockerBridges)).toEqual([]);
  });

  it('names a lost element, a lost published port and a chain with a rule less', () => {
    const json = tableJson({ ...inSync, icc: [], ports4_any: [], docker_bridges: ['docker0'] }, { ...SKELETON_RULES, forward: 7 });
    expect(nftDrift(nftSnapshot(json), network, forwards, dockerBridges).map((d) => `${d.problem} ${d.object} ${d.detail}`)).toEqual([
      'changed chain forward (inet tsnet) has 7 rules, tsnet wrote 8',
      'missing element tsbr-0123456789 . tsbr-0123456789 in icc (inet tsnet)',
      'missing element tcp . 8080 : 10.1.0.2 . 80 in ports4_any (inet tsnet)',
      'missing element br-0123456789ab in docker_bridges (inet tsnet)',
    ]);
  });

  it('says the table is missing after nft flush ruleset', () => {
    expect(nftDrift(nftSnapshot(undefined), network, forwards, dockerBridges)).toEqual([{ network: network.id, object: 'table', problem: 'missing', detail: 'inet tsnet' }]);
  });
});
