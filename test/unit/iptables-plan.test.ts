import { describe, expect, it } from 'vitest';
import type { FirewallNetwork, PortForward } from '../../src/sys/firewall.js';
import { IptablesFirewall } from '../../src/sys/iptables/iptables-firewall.js';
import { dockerChain, networkChains, networkPlan } from '../../src/sys/iptables/plan.js';
import { parseSave, RestoreScript } from '../../src/sys/iptables/restore-script.js';
import { CommandSysctl, RecordingRunner } from '../../src/sys/index.js';
import { SAMPLE_NETWORK } from './sample-network.js';

const network: FirewallNetwork = { ...SAMPLE_NETWORK, subnets: { 4: '10.1.0.0/24', 6: 'fd01::/64' } };
const forward: PortForward = { family: 4, proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.1.0.2', containerPort: 53 };
const rulesOf = (plan: ReturnType<typeof networkPlan>, name: string) => plan.chains.find((c) => c.name === name)!.rules.map((r) => r.join(' '));

describe('iptables rule plans', () => {
  it('names per-network chains from the network ID within iptables\' 28 characters', () => {
    const names = Object.values(networkChains(network.id));
    expect(names).toEqual(['TSNET-FWD-0123456789', 'TSNET-DNAT-0123456789', 'TSNET-SNAT-0123456789']);
    names.forEach((n) => expect(n.length).toBeLessThanOrEqual(28));
  });

  it('drops everything into the bridge that is not a reply, a published port or the bridge itself, in mangle where no ACCEPT comes first', () => {
    const plan = networkPlan(network, 4, []);
    expect(plan.chains.find((c) => c.name === 'TSNET-FWD-0123456789')!.table).toBe('mangle');
    expect(rulesOf(plan, 'TSNET-FWD-0123456789')).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      '-m conntrack --ctstate DNAT -j RETURN',
      '-i tsbr-0123456789 -j RETURN',
      '-j DROP',
    ]);
    // What the guard lets through, filter accepts; out of the bridge, Docker's bridges are closed.
    const hooks = plan.hooks.map((h) => `${h.table} ${h.chain} ${h.rule.join(' ')}`);
    expect(hooks).toEqual(expect.arrayContaining([
      'mangle TSNET-GUARD -o tsbr-0123456789 -j TSNET-FWD-0123456789',
      'mangle TSNET-GUARD -i tsbr-0123456789 -j TSNET-DOCKER',
      'filter TSNET-FORWARD -o tsbr-0123456789 -j ACCEPT',
      'filter TSNET-FORWARD -i tsbr-0123456789 -j ACCEPT',
    ]));
    expect(rulesOf(networkPlan({ ...network, icc: false }, 4, []), 'TSNET-FWD-0123456789')).toContain('-i tsbr-0123456789 -j DROP');
  });

  it("keeps every network out of Docker's bridges but for replies, in one shared chain", () => {
    expect(dockerChain(['br-0123456789ab', 'docker0']).rules.map((r) => r.join(' '))).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      '-o br-0123456789ab -j DROP',
      '-o docker0 -j DROP',
    ]);
  });

  it('lets internal networks neither out nor NAT anything, whatever forwards are asked for', () => {
    const plan = networkPlan({ ...network, internal: true }, 4, [forward]);
    expect(rulesOf(plan, 'TSNET-FWD-0123456789')).toEqual(['-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN', '-i tsbr-0123456789 -j RETURN', '-j DROP']);
    expect(rulesOf(plan, 'TSNET-DNAT-0123456789')).toEqual([]);
    expect(rulesOf(plan, 'TSNET-SNAT-0123456789')).toEqual([]);
    // What leaves it is dropped in the guard, whose drops no other network's return can undo (a published port through its gateway).
    expect(plan.hooks).toContainEqual({ table: 'mangle', chain: 'TSNET-GUARD', rule: ['-i', 'tsbr-0123456789', '!', '-o', 'tsbr-0123456789', '-j', 'DROP'], first: false });
    expect(plan.hooks.map((h) => h.rule.join(' '))).not.toContain('-i tsbr-0123456789 -j ACCEPT');
  });

  it('lets an internal network reach the host only for its DNS, replies and IPv6 neighbour discovery', () => {
    const input = (family: 4 | 6) => networkPlan({ ...network, internal: true, dnsServer: '10.1.0.1' }, family, []).hooks.filter((h) => h.chain === 'TSNET-INPUT').map((h) => h.rule.join(' '));
    expect(input(4)).toEqual([
      '-d 10.1.0.1/32 -i tsbr-0123456789 -p udp -m udp --dport 53 -j ACCEPT',
      '-d 10.1.0.1/32 ! -i tsbr-0123456789 -p udp -m addrtype ! --src-type LOCAL -m udp --dport 53 -j DROP',
      '-d 10.1.0.1/32 -i tsbr-0123456789 -p tcp -m tcp --dport 53 -j ACCEPT',
      '-d 10.1.0.1/32 ! -i tsbr-0123456789 -p tcp -m addrtype ! --src-type LOCAL -m tcp --dport 53 -j DROP',
      '-i tsbr-0123456789 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      '-i tsbr-0123456789 -j DROP',
    ]);
    expect(input(6)).toEqual([
      '-i tsbr-0123456789 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      '-i tsbr-0123456789 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN',
      '-i tsbr-0123456789 -p ipv6-icmp -m icmp6 --icmpv6-type 136 -j RETURN',
      '-i tsbr-0123456789 -j DROP',
    ]);
  });

  it('lets DNS to the gateway in from the bridge only (and the host), and only when the network has a DNS server', () => {
    const input = (n: FirewallNetwork, family: 4 | 6) => networkPlan(n, family, []).hooks.filter((h) => h.chain === 'TSNET-INPUT').map((h) => h.rule.join(' '));
    const withDns = input({ ...network, dnsServer: '10.1.0.1' }, 4);
    expect(withDns.filter((r) => r.includes('--dport 53'))).toEqual([
      '-d 10.1.0.1/32 -i tsbr-0123456789 -p udp -m udp --dport 53 -j ACCEPT',
      '-d 10.1.0.1/32 ! -i tsbr-0123456789 -p udp -m addrtype ! --src-type LOCAL -m udp --dport 53 -j DROP',
      '-d 10.1.0.1/32 -i tsbr-0123456789 -p tcp -m tcp --dport 53 -j ACCEPT',
      '-d 10.1.0.1/32 ! -i tsbr-0123456789 -p tcp -m addrtype ! --src-type LOCAL -m tcp --dport 53 -j DROP',
    ]);
    expect(input(network, 4).some((r) => r.includes('--dport 53'))).toBe(false);
    expect(input({ ...network, dnsServer: '10.1.0.1' }, 6)).toEqual([]);
  });

  it('forwards per family, with the host address when there is one and brackets for IPv6', () => {
    const v6: PortForward = { family: 6, proto: 'tcp', hostPort: 8080, containerIp: 'fd01::2', containerPort: 80 };
    expect(rulesOf(networkPlan(network, 4, [forward, v6]), 'TSNET-DNAT-0123456789')).toEqual([
      '-d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53',
    ]);
    expect(rulesOf(networkPlan(network, 6, [forward, v6]), 'TSNET-DNAT-0123456789')).toEqual([
      '-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd01::2]:80',
    ]);
  });

  it('SNATs to host_ipv4 when given, masquerades IPv6 only when asked', () => {
    const snat = networkPlan({ ...network, outboundNat: { 4: { kind: 'snat', source: '192.0.2.1' } } }, 4, []);
    expect(rulesOf(snat, 'TSNET-SNAT-0123456789')[0]).toBe('-s 10.1.0.0/24 ! -o tsbr-0123456789 -j SNAT --to-source 192.0.2.1');
    expect(rulesOf(networkPlan(network, 6, []), 'TSNET-SNAT-0123456789')).toEqual(['-s fd01::/64 -o tsbr-0123456789 -m conntrack --ctstate DNAT -j MASQUERADE']);
  });

  it('puts a network with isolation off into TSNET-OPEN and sends traffic into its bridge there', () => {
    const plan = networkPlan({ ...network, isolate: false }, 4, []);
    expect(rulesOf(plan, 'TSNET-FWD-0123456789').slice(-2)).toEqual(['-g TSNET-OPEN', '-j DROP']);
    // On top of TSNET-OPEN's final drop, which the other bridges' traffic reaches.
    expect(plan.hooks).toContainEqual({ table: 'mangle', chain: 'TSNET-OPEN', rule: ['-i', 'tsbr-0123456789', '-j', 'RETURN'], first: true });
  });
});

describe('restore scripts', () => {
  it('declares chains before any rule of their table and inserts first hooks at the top', () => {
    const script = new RestoreScript()
      .addHook({ table: 'filter', chain: 'TSNET-FORWARD', rule: ['-o', 'br', '-j', 'X'], first: true })
      .replaceChain({ table: 'filter', name: 'X', rules: [['-j', 'DROP']] });
    expect(script.text()).toBe('*filter\n:X - [0:0]\n-I TSNET-FORWARD 1 -o br -j X\n-F X\n-A X -j DROP\nCOMMIT\n');
  });

  it('refuses words that could break out of a rule line', () => {
    expect(() => new RestoreScript().replaceChain({ table: 'nat', name: 'X', rules: [['-j', 'DROP\n-A']] })).toThrow(/unsafe word/);
  });

  it('reads chains and rules of iptables-save per table', () => {
    const saved = parseSave('*filter\n:INPUT ACCEPT [0:0]\n:TSNET-FORWARD - [0:0]\n-A FORWARD -j TSNET-FORWARD\nCOMMIT\n*nat\n:TSNET-DNAT - [0:0]\nCOMMIT\n');
    expect([...saved.filter.chains]).toEqual(['INPUT', 'TSNET-FORWARD']);
    expect([...saved.filter.rules]).toEqual(['-A FORWARD -j TSNET-FORWARD']);
    expect([...saved.nat.chains]).toEqual(['TSNET-DNAT']);
  });
});

describe('IptablesFirewall command plan', () => {
  it('changes an endpoint\'s forwards with one iptables-restore per family that changes and no read, waiting a while for the xtables lock', async () => {
    const runner = new RecordingRunner();
    await new IptablesFirewall(runner, new CommandSysctl(runner)).setPortForwards(network, 'e1', [forward]);
    expect(runner.commands.map((c) => [c.file, ...c.args].join(' '))).toEqual(['iptables-restore --wait 10 --noflush']);
    expect(runner.commands[0]!.input).toContain('-A TSNET-DNAT-0123456789 -d 127.0.0.1/32 -p udp');
  });

  it('adds only the hooks iptables-save does not show, and enables forwarding in one sysctl once the 127/8 guard is in', async () => {
    const runner = new RecordingRunner().reply('iptables-save', '*filter\n:TSNET-FORWARD - [0:0]\n-A FORWARD -j TSNET-FORWARD\nCOMMIT\n');
    await new IptablesFirewall(runner, new CommandSysctl(runner)).setupNetwork({ ...network, subnets: { 4: '10.1.0.0/24' } }, new Map());
    expect(runner.lines().map((l) => l.split('\n')[0])).toEqual([
      'iptables-save',
      'iptables-restore --wait 10 --noflush',
      'sysctl -q -w net/ipv4/ip_forward=1 net/ipv4/conf/tsbr-0123456789/route_localnet=1',
    ]);
    const restore = runner.commands.find((c) => c.file === 'iptables-restore')!.input!;
    expect(restore).not.toContain('-I FORWARD 1 -j TSNET-FORWARD');
    expect(restore).not.toContain(':TSNET-FORWARD ');
    expect(restore).toContain('-I INPUT 1 -j TSNET-INPUT');
    expect(restore).toContain('-A TSNET-GUARD -o tsbr-0123456789 -j TSNET-FWD-0123456789');
    expect(restore).toContain('-I FORWARD 1 -j TSNET-GUARD');
    expect(runner.commands.filter((c) => c.file.startsWith('ip6tables'))).toEqual([]);
  });

  it('hooks into FORWARD below Docker\'s jump to DOCKER-USER, at the top without one', async () => {
    const docker = '*filter\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\nCOMMIT\n';
    for (const [saved, position] of [[docker, 2], ['', 1]] as const) {
      const runner = new RecordingRunner().reply('iptables-save', saved);
      await new IptablesFirewall(runner, new CommandSysctl(runner)).setupNetwork({ ...network, subnets: { 4: '10.1.0.0/24' } }, new Map());
      expect(runner.commands.find((c) => c.file === 'iptables-restore')!.input).toContain(`-I FORWARD ${position} -j TSNET-FORWARD`);
    }
  });

  it('changes only the DNAT rules of the endpoint whose forwards changed', async () => {
    const runner = new RecordingRunner();
    const firewall = new IptablesFirewall(runner, new CommandSysctl(runner));
    const v4 = { ...network, subnets: { 4: '10.1.0.0/24' } };
    const other: PortForward = { ...forward, hostPort: 5354, containerIp: '10.1.0.3' };
    await firewall.setupNetwork(v4, new Map([['e1', [forward]]]));
    runner.commands.length = 0;
    await firewall.setPortForwards(v4, 'e2', [other]);
    await firewall.setPortForwards(v4, 'e1', []);
    expect(runner.commands.map((c) => c.input!.split('\n').filter((l) => l.startsWith('-')))).toEqual([
      ['-A TSNET-DNAT-0123456789 -d 127.0.0.1/32 -p udp -m udp --dport 5354 -j DNAT --to-destination 10.1.0.3:53'],
      ['-D TSNET-DNAT-0123456789 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.2:53'],
    ]);
  });

  it('gives route_localnet back before the 127/8 guard goes', async () => {
    // Another network still has its chain: the shared chains stay.
    const runner = new RecordingRunner().reply('iptables-save', '*mangle\n:TSNET-FWD-9876543210 - [0:0]\nCOMMIT\n*filter\n-A TSNET-INPUT -d 127.0.0.0/8 -i tsbr-0123456789 -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP\nCOMMIT\n');
    await new IptablesFirewall(runner, new CommandSysctl(runner)).teardownNetwork({ ...network, subnets: { 4: '10.1.0.0/24' }, routeLocalnetBefore: true });
    expect(runner.lines().map((l) => l.split('\n')[0])).toEqual([
      'sysctl -q -w net/ipv4/conf/tsbr-0123456789/route_localnet=1',
      'iptables-save',
      'iptables-restore --wait 10 --noflush',
    ]);
    expect(runner.commands[2]!.input).toContain('-D TSNET-INPUT -d 127.0.0.0/8 -i tsbr-0123456789');
    expect(runner.commands[2]!.input).not.toContain('-X TSNET-INPUT');
  });

  it('takes the shared chains and their hooks along with the last network, flushing them before its own chains go', async () => {
    const saved = [
      '*mangle', ':TSNET-GUARD - [0:0]', ':TSNET-OPEN - [0:0]', ':TSNET-FWD-0123456789 - [0:0]',
      '-A FORWARD -j TSNET-GUARD', '-A TSNET-GUARD -o tsbr-0123456789 -j TSNET-FWD-0123456789', 'COMMIT',
      '*filter', ':TSNET-FORWARD - [0:0]', ':TSNET-INPUT - [0:0]',
      '-A FORWARD -j TSNET-FORWARD', '-A INPUT -j TSNET-INPUT', '-A TSNET-FORWARD -o tsbr-0123456789 -j ACCEPT', 'COMMIT',
      '*nat', ':TSNET-DNAT - [0:0]', ':TSNET-POSTROUTING - [0:0]', ':TSNET-DNAT-0123456789 - [0:0]', ':TSNET-SNAT-0123456789 - [0:0]',
      '-A POSTROUTING -j TSNET-POSTROUTING', '-A TSNET-POSTROUTING -j TSNET-SNAT-0123456789', 'COMMIT',
    ].join('\n');
    const runner = new RecordingRunner().reply('iptables-save', `${saved}\n`);
    await new IptablesFirewall(runner, new CommandSysctl(runner)).teardownNetwork({ ...network, subnets: { 4: '10.1.0.0/24' } });
    const script = runner.commands.find((c) => c.file === 'iptables-restore')!.input!;
    expect(script).not.toMatch(/^-D TSNET-/m);
    const mangle = script.slice(script.indexOf('*mangle'));
    expect(mangle.indexOf('-F TSNET-GUARD')).toBeLessThan(mangle.indexOf('-X TSNET-FWD-0123456789'));
    for (const line of ['-D FORWARD -j TSNET-GUARD', '-X TSNET-GUARD', '-D FORWARD -j TSNET-FORWARD', '-D INPUT -j TSNET-INPUT', '-X TSNET-FORWARD', '-X TSNET-OPEN', '-X TSNET-INPUT', '-D POSTROUTING -j TSNET-POSTROUTING', '-X TSNET-POSTROUTING', '-X TSNET-DNAT', '-X TSNET-SNAT-0123456789']) {
      expect(script).toContain(`${line}\n`);
    }
  });
});
