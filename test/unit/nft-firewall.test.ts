import { describe, expect, it } from 'vitest';
import type { FirewallNetwork, PortForward } from '../../src/sys/firewall.js';
import { CommandError, NftablesFirewall, CommandSysctl, RecordingRunner } from '../../src/sys/index.js';
import { networkLines, networkRemovalLines, portElement } from '../../src/sys/nftables/ruleset.js';
import { SAMPLE_NETWORK } from './sample-network.js';

const network: FirewallNetwork = SAMPLE_NETWORK;
const other: FirewallNetwork = { ...network, id: 'fedcba9876543210'.repeat(4), bridge: 'tsbr-fedcba9876', subnets: { 4: '10.2.0.0/24' } };
const forward = (hostPort: number, containerIp = '10.1.0.2'): PortForward => ({ family: 4, proto: 'tcp', hostPort, containerIp, containerPort: 80 });
const EMPTY_KERNEL = '{"nftables": []}';
const EP_1 = 'e1'.repeat(32);
const EP_2 = 'e2'.repeat(32);

function fixture(kernel = EMPTY_KERNEL) {
  const runner = new RecordingRunner().reply('nft -j list maps', kernel);
  return { runner, firewall: new NftablesFirewall(runner, new CommandSysctl(runner)) };
}

/** The `nft -f -` transactions sent, as lists of lines. */
const transactions = (runner: RecordingRunner) => runner.commands.filter((c) => c.file === 'nft' && c.args[0] === '-f').map((c) => c.input!.trimEnd().split('\n'));

describe('nftables ruleset', () => {
  it('makes a network a handful of set elements, nothing else', () => {
    expect(networkLines(network)).toEqual([
      'add element inet tsnet bridges { "tsbr-0123456789" }',
      'add element inet tsnet publishing { "tsbr-0123456789" }',
      'add element inet tsnet icc { "tsbr-0123456789" . "tsbr-0123456789" }',
      'add element inet tsnet localnet { "tsbr-0123456789" }',
      'add element inet tsnet subnets4 { "tsbr-0123456789" . 10.1.0.0/24 }',
      'add element inet tsnet masq4 { "tsbr-0123456789" . 10.1.0.0/24 }',
    ]);
    const internal = networkLines({ ...network, internal: true, icc: false, isolate: false });
    expect(internal).toEqual(['add element inet tsnet bridges { "tsbr-0123456789" }', 'add element inet tsnet internal { "tsbr-0123456789" }']);
    const snat = networkLines({ ...network, outboundNat: { 4: { kind: 'snat', source: '192.0.2.1' } } });
    expect(snat).toContain('add element inet tsnet snat4 { "tsbr-0123456789" . 10.1.0.0/24 : 192.0.2.1 }');
  });

  it('removes whatever of a network exists: each element is added right before it is deleted', () => {
    const lines = networkRemovalLines(network);
    expect(lines.slice(0, 2)).toEqual(['add element inet tsnet bridges { "tsbr-0123456789" }', 'delete element inet tsnet bridges { "tsbr-0123456789" }']);
    expect(lines.slice(-2)).toEqual(['add element inet tsnet masq4 { "tsbr-0123456789" . 10.1.0.0/24 }', 'delete element inet tsnet masq4 { "tsbr-0123456789" . 10.1.0.0/24 }']);
  });

  it('makes a published port one element, keyed by host address when there is one', () => {
    expect(portElement(forward(8080))).toEqual({ map: 'ports4_any', key: 'tcp . 8080', value: '10.1.0.2 . 80' });
    expect(portElement({ ...forward(53), proto: 'udp', hostIp: '127.0.0.1' })).toEqual({ map: 'ports4', key: '127.0.0.1 . udp . 53', value: '10.1.0.2 . 80' });
    expect(portElement({ family: 6, proto: 'sctp', hostPort: 9, containerIp: 'fd01::2', containerPort: 9 })).toMatchObject({ map: 'ports6_any', value: 'fd01::2 . 9' });
  });

  it('refuses words that could break out of a rule', () => {
    expect(() => networkLines({ ...network, bridge: 'x" accept #' })).toThrow(/unsafe word/);
    expect(() => portElement(forward(1, '10.1.0.2 } ; flush ruleset'))).toThrow(/unsafe word/);
  });
});

describe('NftablesFirewall command plan', () => {
  it('sets a network up in one transaction, then lets it through iptables\' FORWARD, then turns forwarding on', async () => {
    const { runner, firewall } = fixture();
    await firewall.setupNetwork(network, new Map([[EP_1, [forward(8080)]]]));
    const order = runner.lines().map((l) => l.split('\n')[0]!.split(' ').slice(0, 3).join(' '));
    expect(order).toEqual(['nft -f -', 'nft -j list', 'iptables-save -t filter', 'iptables-restore --wait 10', 'ip6tables-save -t filter', 'ip6tables-restore --wait 10', 'nft -f -', 'ip -batch -', 'sysctl -q -w']);
    expect(runner.lines()[7]).toBe('ip -batch -\nlink set dev tsbr-0123456789 group 0x7473');
    const [skeleton, setup] = transactions(runner);
    expect(skeleton![0]).toBe('add table inet tsnet');
    expect(setup).toContain('add element inet tsnet ports4_any { tcp . 8080 comment "0123456789/e1e1e1e1e1e1" : 10.1.0.2 . 80 }');
  });

  it('writes only the ports that changed: one endpoint\'s publish or revoke touches no other endpoint\'s elements', async () => {
    const { runner, firewall } = fixture();
    await firewall.setupNetwork(network, new Map([[EP_1, [forward(8080)]]]));
    await firewall.setPortForwards(network, EP_2, [forward(8081, '10.1.0.3')]);
    await firewall.setPortForwards(network, EP_1, []);
    await firewall.setPortForwards(network, EP_2, [forward(8081, '10.1.0.3')]);
    const [, , publish, revoke, ...none] = transactions(runner);
    expect(publish).toEqual(['add element inet tsnet ports4_any { tcp . 8081 comment "0123456789/e2e2e2e2e2e2" : 10.1.0.3 . 80 }']);
    expect(revoke).toEqual(['add element inet tsnet ports4_any { tcp . 8080 comment "0123456789/e1e1e1e1e1e1" : 10.1.0.2 . 80 }', 'delete element inet tsnet ports4_any { tcp . 8080 }']);
    expect(none).toEqual([]);
    // Nothing is read again after start-up.
    expect(runner.commands.filter((c) => c.args.includes('list'))).toHaveLength(1);
  });

  it('starts from what the kernel has, and when a change fails puts the table\'s skeleton back before it tries again', async () => {
    const kernel = JSON.stringify({ nftables: [{ map: { table: 'tsnet', name: 'ports4_any', elem: [[{ elem: { val: { concat: ['tcp', 9090] }, comment: '0123456789/e9e9e9e9e9e9' } }, { concat: ['10.1.0.9', 80] }]] } }] });
    const { runner, firewall } = fixture(kernel);
    await firewall.setupNetwork(network, new Map());
    // The restore of start-up already removed the stale 9090; a port someone else took meanwhile makes the next change fail once.
    runner.reply('nft -f -', new CommandError('nft -f -', 1, 'Error: Could not process rule: File exists'));
    await expect(firewall.setPortForwards(network, EP_1, [forward(8080)])).rejects.toThrow(/File exists/);
    const [, setup, change, retry] = transactions(runner);
    expect(change).toEqual(['add element inet tsnet ports4_any { tcp . 8080 comment "0123456789/e1e1e1e1e1e1" : 10.1.0.2 . 80 }']);
    expect(retry![0]).toBe('add table inet tsnet');
    expect(setup).toContain('delete element inet tsnet ports4_any { tcp . 9090 }');
  });

  it('gives route_localnet and the interface group back before the rules go', async () => {
    const { runner, firewall } = fixture();
    await firewall.setupNetwork(network, new Map());
    await firewall.setupNetwork(other, new Map());
    runner.commands.length = 0;
    await firewall.teardownNetwork({ ...network, routeLocalnetBefore: true, groupBefore: '7' });
    expect(runner.lines().map((l) => l.split('\n').slice(0, 2).join(' | '))).toEqual([
      'sysctl -q -w net/ipv4/conf/tsbr-0123456789/route_localnet=1',
      'ip -batch - | link set dev tsbr-0123456789 group 7',
      'nft -f - | add element inet tsnet bridges { "tsbr-0123456789" }',
    ]);
  });

  it('takes its table and the iptables gate along with the last network', async () => {
    const { runner, firewall } = fixture();
    await firewall.setupNetwork(network, new Map());
    await firewall.setupNetwork(other, new Map());
    await firewall.teardownNetwork(other);
    expect(transactions(runner).flat()).not.toContain('delete table inet tsnet');
    runner.commands.length = 0;
    await firewall.teardownNetwork(network);
    expect(transactions(runner).at(-1)).toEqual(['add table inet tsnet', 'delete table inet tsnet']);
    // The next network builds the table again.
    runner.commands.length = 0;
    await firewall.setupNetwork(network, new Map());
    expect(transactions(runner)[0]).toContain('add table inet tsnet');
  });
});
