// The bridge driver's firewall against real iptables and nftables in
// throwaway netns, for both backends: the exact rules of each scenario
// (golden files under test/golden/, `nft-` ones for nftables; rewrite them
// with TSNET_UPDATE_GOLDEN=1), hooks added once, teardown leaving nothing,
// restore after the rules were lost, and refused requests leaving rules and
// state as they were.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { execa } from 'execa';
import type { FirewallKind } from '../../src/sys/index.js';
import { CleanupStack, createNetns, deleteNetns, execInNetns, execInNetnsOk, ipIn, REPO_ROOT, waitUntil } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const GOLDEN_DIR = join(REPO_ROOT, 'test/golden');
const UPDATE = process.env.TSNET_UPDATE_GOLDEN === '1';

const NET_A = 'a1'.repeat(32);
const NET_B = 'b2'.repeat(32);
const EP_1 = 'e1'.repeat(32);
const EP_2 = 'e2'.repeat(32);
const BACKENDS: FirewallKind[] = ['iptables', 'nftables'];

interface PortSpec {
  Proto: number;
  HostIP?: string;
  HostPort: number;
  HostPortEnd?: number;
  Port: number;
}

const portmap = (ports: PortSpec[]) => ports.map((p) => ({ IP: '', HostIP: '', HostPortEnd: p.HostPort, ...p }));

function networkBody(id: string, subnet: string, generic: Record<string, string> = {}, extra: { internal?: boolean; ipv6?: string } = {}) {
  return {
    NetworkID: id,
    Options: {
      'com.docker.network.enable_ipv6': extra.ipv6 !== undefined,
      'com.docker.network.internal': extra.internal ?? false,
      'com.docker.network.generic': generic,
    },
    IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: `${subnet}.0/24`, Gateway: `${subnet}.1/24` }],
    IPv6Data: extra.ipv6 ? [{ AddressSpace: 'LocalDefault', Pool: `${extra.ipv6}/64`, Gateway: `${extra.ipv6}1/64` }] : [],
  };
}

function endpointBody(network: string, endpoint: string, address: string, ports: PortSpec[] = [], addressIPv6 = '') {
  return {
    NetworkID: network,
    EndpointID: endpoint,
    Interface: { Address: address, AddressIPv6: addressIPv6, MacAddress: '' },
    Options: { 'com.docker.network.portmap': portmap(ports) },
  };
}

/** One tsnet on a fresh netns per test. */
class Scene {
  readonly netns = `tsfw${randomBytes(3).toString('hex')}`;
  readonly tsnet: NetnsPlugin;

  constructor(readonly firewall: FirewallKind) {
    this.tsnet = new NetnsPlugin(this.netns, firewall);
  }

  async start(cleanup: CleanupStack): Promise<this> {
    await createNetns(this.netns);
    cleanup.defer(`delete netns ${this.netns}`, () => deleteNetns(this.netns));
    // An uplink address, so host IPs other than loopback can be published on.
    await ipIn(this.netns, ['link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'uplink-peer']);
    await ipIn(this.netns, ['address', 'add', '198.51.100.1/24', 'dev', 'uplink']);
    await this.tsnet.start();
    cleanup.defer('close tsnet', () => this.tsnet.close());
    return this;
  }

  async ok(method: string, body: unknown): Promise<unknown> {
    const res = await this.tsnet.post(method, body);
    expect(res.body, `${method} answered ${JSON.stringify(res.body)}`).not.toHaveProperty('Err');
    expect(res.status).toBe(200);
    return res.body;
  }

  async save(family: 4 | 6): Promise<string> {
    return (await execInNetnsOk(this.netns, [family === 4 ? 'iptables-save' : 'ip6tables-save'])).stdout;
  }

  /** tsnet's part of both families' rules, counters and IDs replaced, as a reviewer reads it. */
  async rules(): Promise<string> {
    const out: string[] = [];
    if (this.firewall === 'nftables') {
      const table = await execInNetns(this.netns, ['nft', 'list', 'table', 'inet', 'tsnet']);
      out.push('# nft list table inet tsnet', ...(table.exitCode === 0 ? nftLines(table.stdout) : []));
    }
    for (const family of [4, 6] as const) out.push(`# ${family === 4 ? 'iptables' : 'ip6tables'}`, ...tsnetLines(await this.save(family)));
    return `${out.join('\n')}\n`;
  }
}

const IDS: Array<[string, string]> = [[NET_A.slice(0, 10), '<NET_A>'], [NET_B.slice(0, 10), '<NET_B>']];
const withNames = (line: string) => IDS.reduce((l, [id, name]) => l.replaceAll(id, name), line);

/**
 * `nft list table` as a reviewer reads it: IDs replaced, and the elements of
 * each map or set one per line in sorted order (the kernel lists a hash set
 * in an order of its own).
 */
function nftLines(listing: string): string[] {
  const joined = listing.replace(/elements = \{([^}]*)\}/g, (_, inner: string) => `elements = {${inner.replace(/\s*\n\s*/g, ' ')}}`);
  return joined.split('\n').flatMap((line) => {
    const match = /^(\s*)elements = \{ (.*) \}$/.exec(line);
    if (!match) return [withNames(line.replace(/\t/g, '  '))];
    const indent = match[1]!.replace(/\t/g, '  ');
    const elements = match[2]!.split(/,\s*/).map(withNames).sort();
    return [`${indent}elements = {`, ...elements.map((e) => `${indent}  ${e}`), `${indent}}`];
  });
}

/** tsnet's lines per table, tables in a fixed order (legacy's save lists nat before filter, nft the reverse). */
function tsnetLines(save: string): string[] {
  const tables = new Map<string, string[]>();
  let current: string[] = [];
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) tables.set(line, (current = []));
    else if (/^:TSNET-/.test(line)) current.push(line.replace(/ \[\d+:\d+\]$/, ''));
    else if (line.startsWith('-A ') && line.includes('TSNET')) current.push(line);
  }
  return ['*filter', '*nat', '*mangle'].flatMap((table) => (tables.get(table)?.length ? [table, ...tables.get(table)!] : [])).map(withNames);
}

function expectGolden(name: string, actual: string): void {
  const file = join(GOLDEN_DIR, `${name}.rules`);
  if (UPDATE) writeFileSync(file, actual);
  expect(existsSync(file), `${file} missing: run with TSNET_UPDATE_GOLDEN=1 and review it`).toBe(true);
  expect(actual).toBe(readFileSync(file, 'utf8'));
}

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function scene(firewall: FirewallKind): Promise<Scene> {
  return new Scene(firewall).start(cleanup);
}

/** The golden file of a scenario: `<name>.rules` for iptables, `nft-<name>.rules` for nftables. */
const golden = (s: Scene, name: string) => (s.firewall === 'iptables' ? name : `nft-${name}`);

describe.each(BACKENDS)('golden rules (%s)', (firewall) => {
  it('plain: masquerade, isolation, no ports', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0'));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24'));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    expectGolden(golden(s, 'plain'), await s.rules());
    expect((await execInNetnsOk(s.netns, ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout).toBe('1');
    expect((await execInNetnsOk(s.netns, ['sysctl', '-n', `net/ipv4/conf/tsbr-${NET_A.slice(0, 10)}/route_localnet`])).stdout).toBe('1');
  });

  it('ports: tcp, udp on an address, sctp range, any port; two networks; host_ipv4 SNAT', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', { 'com.docker.network.host_ipv4': '198.51.100.1' }));
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_B, '10.61.0', { 'com.docker.network.bridge.host_binding_ipv4': '127.0.0.1' }));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [
      { Proto: 6, HostPort: 8080, Port: 80 },
      { Proto: 17, HostIP: '198.51.100.1', HostPort: 5353, Port: 53 },
      { Proto: 132, HostPort: 9000, HostPortEnd: 9001, Port: 90 },
      { Proto: 132, HostPort: 9000, HostPortEnd: 9001, Port: 91 },
      { Proto: 6, HostPort: 0, Port: 443 },
    ]));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_B, EP_2, '10.61.0.2/24', [{ Proto: 6, HostPort: 8081, Port: 80 }]));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_B, EndpointID: EP_2, Options: {} });
    expectGolden(golden(s, 'ports'), await s.rules());
    const flags = (await ipIn(s.netns, ['-d', 'link', 'show', `tsv${EP_1.slice(0, 12)}`])).stdout;
    expect(flags).toContain('hairpin on');

    // Revoke takes the forwards away and leaves the rest.
    await s.ok('NetworkDriver.RevokeExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1 });
    const afterRevoke = await s.rules();
    // A forward's target: `10.60.0.2:80` in a DNAT rule, `10.60.0.2 . 80` in a port map.
    expect(afterRevoke).not.toMatch(/10\.60\.0\.2(:| \. )/);
    expect(afterRevoke).toMatch(/10\.61\.0\.2(:| \. )80/);
  });

  it('internal: no way out, no NAT, no ports', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', {}, { internal: true }));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }]));
    expectGolden(golden(s, 'internal'), await s.rules());
  });

  it('icc off, masquerade off, isolation off', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', {
      'com.docker.network.bridge.enable_icc': 'false',
      'com.docker.network.bridge.enable_ip_masquerade': 'false',
      'tsnet.isolate': 'off',
    }));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24'));
    expectGolden(golden(s, 'icc-off'), await s.rules());
    const flags = (await ipIn(s.netns, ['-d', 'link', 'show', `tsv${EP_1.slice(0, 12)}`])).stdout;
    expect(flags).toContain('isolated on');
  });

  it('IPv6: ip6tables isolation, IPv6 masquerade, ports for both families', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', { 'tsnet.masquerade6': 'on' }, { ipv6: 'fd60::' }));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }], 'fd60::2/64'));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    expectGolden(golden(s, 'ipv6'), await s.rules());
    expect((await execInNetnsOk(s.netns, ['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout).toBe('1');
  });
});

describe('on iptables-legacy', () => {
  // tsnet calls plain `iptables*` from PATH, as dockerd does; a PATH that
  // resolves them to the legacy tools must give the very same rules.
  function useLegacyTools(): void {
    const bin = mkdtempSync(join(tmpdir(), 'tsnet-legacy-'));
    const path = process.env.PATH;
    cleanup.defer('restore PATH', () => {
      process.env.PATH = path;
      rmSync(bin, { recursive: true, force: true });
    });
    for (const family of ['iptables', 'ip6tables']) {
      for (const tool of ['', '-save', '-restore']) symlinkSync(`/usr/sbin/${family}-legacy${tool}`, join(bin, `${family}${tool}`));
    }
    process.env.PATH = `${bin}:${path}`;
  }

  it('writes the same rules as with nft', async () => {
    useLegacyTools();
    const s = await scene('iptables');
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', { 'tsnet.masquerade6': 'on' }, { ipv6: 'fd60::' }));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }], 'fd60::2/64'));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    expect((await execInNetnsOk(s.netns, ['iptables-legacy-save'])).stdout).toContain('TSNET-DNAT-');
    expect((await execInNetnsOk(s.netns, ['iptables-nft-save'])).stdout).not.toContain('TSNET');
    expect(await s.rules()).toBe(readFileSync(join(GOLDEN_DIR, 'ipv6.rules'), 'utf8'));
  });

  it('waits for the xtables lock that another program (dockerd, kube-proxy, fail2ban) holds', async () => {
    useLegacyTools();
    // A lock file of this test's own (XTABLES_LOCKFILE), so the machine's /run/xtables.lock is never held.
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-xtlock-'));
    const lockFile = join(dir, 'xtables.lock');
    const previous = process.env.XTABLES_LOCKFILE;
    process.env.XTABLES_LOCKFILE = lockFile;
    cleanup.defer('restore XTABLES_LOCKFILE', () => {
      if (previous === undefined) delete process.env.XTABLES_LOCKFILE;
      else process.env.XTABLES_LOCKFILE = previous;
      rmSync(dir, { recursive: true, force: true });
    });
    const holder = execa('flock', [lockFile, 'sleep', '2'], { reject: false });
    cleanup.defer('stop the lock holder', async () => {
      holder.kill('SIGKILL');
      await holder;
    });
    await waitUntil(async () => (await execa('flock', ['-n', lockFile, 'true'], { reject: false })).exitCode !== 0, { timeoutMs: 5_000, what: 'the lock to be held' });
    const s = await scene('iptables');
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0'));
    expect((await execInNetnsOk(s.netns, ['iptables-legacy-save'])).stdout).toContain(`TSNET-FWD-${NET_A.slice(0, 10)}`);
  });
});

describe('tsnet port add whose state cannot be written', () => {
  it('takes its rules back: the kernel keeps matching the state', async () => {
    const s = await scene('iptables');
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0'));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }]));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    const before = await s.rules();
    vi.spyOn(s.tsnet.store, 'commit').mockRejectedValueOnce(new Error('disk full'));
    const add = s.tsnet.plugin.networks.changePorts('10.60.0.2', (current) => [...current.map((p) => p.binding), { proto: 'tcp', hostIp: '', hostPort: 8081, hostPortEnd: 8081, port: 81 }]);
    await expect(add).rejects.toThrow('disk full');
    expect(await s.rules()).toBe(before);
    expect(s.tsnet.plugin.networks.listEndpoints()[0]!.portBindings).toHaveLength(1);
  });
});

describe.each(BACKENDS)('rule lifecycle (%s)', (firewall) => {
  it('adds hooks once, rebuilds lost rules on restore, and deleting the last network takes the shared chains along', async () => {
    const s = await scene(firewall);
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', {}, { ipv6: 'fd60::' }));
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_B, '10.61.0'));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }], 'fd60::2/64'));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    const before = await s.rules();

    await s.tsnet.restart();
    expect(await s.rules()).toBe(before);

    // A reboot (or `iptables -F`, `nft flush ruleset`) loses every rule; restore builds the same ones again.
    for (const tool of ['iptables', 'ip6tables']) {
      for (const table of ['filter', 'nat', 'mangle']) {
        await execInNetnsOk(s.netns, [tool, '-t', table, '-F']);
        await execInNetnsOk(s.netns, [tool, '-t', table, '-X']);
      }
    }
    if (firewall === 'nftables') await execInNetnsOk(s.netns, ['nft', 'delete', 'table', 'inet', 'tsnet']);
    await s.tsnet.restart();
    expect(await s.rules()).toBe(before);

    await s.ok('NetworkDriver.DeleteEndpoint', { NetworkID: NET_A, EndpointID: EP_1 });
    await s.ok('NetworkDriver.DeleteNetwork', { NetworkID: NET_A });
    await s.ok('NetworkDriver.DeleteNetwork', { NetworkID: NET_B });
    const left = await s.rules();
    // The last network took tsnet's shared chains and hooks along (the nftables backend its table and the iptables gate).
    expect(left).toBe(`${firewall === 'nftables' ? '# nft list table inet tsnet\n' : ''}# iptables\n# ip6tables\n`);
  });
});

describe('nftables transactions', () => {
  it('apply all of a request\'s elements or none, and the daemon keeps serving', async () => {
    const s = await scene('nftables');
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0'));
    // Someone else's element on 7001/tcp: the publish of 7000 and 7001 cannot be applied whole.
    await execInNetnsOk(s.netns, ['nft', 'add element inet tsnet ports4_any { tcp . 7001 : 10.99.0.9 . 80 }']);
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 7000, Port: 80 }, { Proto: 6, HostPort: 7001, Port: 81 }]));
    const ports = async () => (await execInNetnsOk(s.netns, ['nft', 'list', 'map', 'inet', 'tsnet', 'ports4_any'])).stdout;
    const refused = await s.tsnet.post('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    expect(refused.status).toBe(500);
    expect(refused.body.Err).toMatch(/File exists/);
    expect(await ports()).not.toContain('tcp . 7000');
    expect(s.tsnet.plugin.networks.listEndpoints()[0]!.state).toMatchObject({ published: false });

    await execInNetnsOk(s.netns, ['nft', 'delete element inet tsnet ports4_any { tcp . 7001 }']);
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    const published = await ports();
    for (const port of ['7000', '7001']) expect(published).toContain(`tcp . ${port} comment "${NET_A.slice(0, 10)}/${EP_1.slice(0, 12)}"`);
  });
});

describe('switching backends', () => {
  it('leaves none of the other backend\'s rules, whichever way', async () => {
    const s = await scene('iptables');
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0'));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_A, EP_1, '10.60.0.2/24', [{ Proto: 6, HostPort: 8080, Port: 80 }]));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_A, EndpointID: EP_1, Options: {} });
    const onIptables = await s.rules();

    await s.tsnet.restart('nftables');
    const iptables = (await s.save(4)) + (await s.save(6));
    expect(iptables).not.toMatch(/TSNET-(?!GATE)/);
    expect(iptables).toContain('-A FORWARD -j TSNET-GATE');
    expect((await execInNetnsOk(s.netns, ['nft', 'list', 'map', 'inet', 'tsnet', 'ports4_any'])).stdout).toContain('tcp . 8080');

    await s.tsnet.restart('iptables');
    expect((await execInNetns(s.netns, ['nft', 'list', 'table', 'inet', 'tsnet'])).exitCode).not.toBe(0);
    expect(await s.rules()).toBe(onIptables);
  });
});

describe.each(BACKENDS)('refused requests change no rule and no state (%s)', (firewall) => {
  /** [what, -o options, -p list, the error]: options are refused by CreateNetwork, a -p list's syntax by CreateEndpoint, its host ports by ProgramExternalConnectivity. */
  const cases: Array<[string, Record<string, string>, PortSpec[], RegExp]> = [
    ['icc not a boolean', { 'com.docker.network.bridge.enable_icc': 'maybe' }, [], /^com\.docker\.network\.bridge\.enable_icc: /],
    ['masquerade not a boolean', { 'com.docker.network.bridge.enable_ip_masquerade': 'yes please' }, [], /^com\.docker\.network\.bridge\.enable_ip_masquerade: /],
    ['host_ipv4 not IPv4', { 'com.docker.network.host_ipv4': 'fd00::1' }, [], /^com\.docker\.network\.host_ipv4: /],
    ['isolate not on/off', { 'tsnet.isolate': 'no' }, [], /^tsnet\.isolate: /],
    ['host port above 65535', {}, [{ Proto: 6, HostPort: 70000, Port: 80 }], /^com\.docker\.network\.portmap\.0\.HostPort: /],
    ['unknown protocol number', {}, [{ Proto: 1, HostPort: 8080, Port: 80 }], /^com\.docker\.network\.portmap\.0\.Proto: /],
    ['host IP not on the host', {}, [{ Proto: 6, HostIP: '192.0.2.77', HostPort: 8080, Port: 80 }], /^com\.docker\.network\.portmap\.0\.HostIP: 192\.0\.2\.77 is not an address of this host/],
    ['the same host port twice', {}, [{ Proto: 6, HostPort: 8080, Port: 80 }, { Proto: 6, HostPort: 8080, Port: 81 }], /^com\.docker\.network\.portmap\.1\.HostPort: .*8080/],
    ['a host port of another endpoint', {}, [{ Proto: 6, HostIP: '198.51.100.1', HostPort: 7000, Port: 80 }], /^com\.docker\.network\.portmap\.0\.HostPort: .*7000.*already published by tsnet endpoint e2e2/],
  ];

  it.each(cases)('%s', async (_what, generic, ports, error) => {
    const s = await scene(firewall);
    // Another endpoint holds 7000/tcp on every address.
    await s.ok('NetworkDriver.CreateNetwork', networkBody(NET_B, '10.61.0'));
    await s.ok('NetworkDriver.CreateEndpoint', endpointBody(NET_B, EP_2, '10.61.0.2/24', [{ Proto: 6, HostPort: 7000, Port: 80 }]));
    await s.ok('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_B, EndpointID: EP_2, Options: {} });
    const links = async () => (await ipIn(s.netns, ['-o', 'link', 'show'])).stdout.split('\n').map((l) => l.split(' ')[1]).join(' ');
    const snapshot = async () => JSON.stringify([await s.rules(), await links(), s.tsnet.plugin.networks.listNetworks(), s.tsnet.plugin.networks.listEndpoints()]);
    let before = await snapshot();
    let res = ports.length === 0
      ? await s.tsnet.post('NetworkDriver.CreateNetwork', networkBody(NET_A, '10.60.0', generic))
      : await s.tsnet.post('NetworkDriver.CreateEndpoint', endpointBody(NET_B, EP_1, '10.61.0.3/24', ports));
    // Host ports are taken when the endpoint becomes its container's gateway: a list CreateEndpoint took is refused there.
    if (res.status === 200 && ports.length > 0) {
      before = await snapshot();
      res = await s.tsnet.post('NetworkDriver.ProgramExternalConnectivity', { NetworkID: NET_B, EndpointID: EP_1, Options: {} });
    }
    expect(res.status).toBe(500);
    expect(res.body.Err).toMatch(error);
    expect(await snapshot()).toBe(before);
  });
});
