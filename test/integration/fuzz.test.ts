/**
 * Hostile requests against the real daemon process: generated from a fixed
 * seed (so a failure replays), each must be answered with a clean
 * `{"Err": "<field>: <reason>"}` (404 for unknown methods), the daemon must
 * stay up, and its SQLite state must be byte-identical afterwards.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, httpPostUnix, isAlive, newRunId, run, runDir, startTsnet, type TsnetDaemon, seededRandom } from '../harness/index.js';

const id = newRunId();
const netns = `${id}f`;
const dir = runDir(id);
let tsnet: TsnetDaemon;

const REQUESTS = 600;
const SEED = 0x7577_6e74;


const NET = 'f0'.repeat(32);
const EP = 'e0'.repeat(32);

/** Values no field of the protocol accepts where a string ID, address or option is due. */
const HOSTILE = [
  42, -1, 1e308, true, null, [], [1, [2]], { a: { b: {} } }, '', ' ', '$(reboot)', '`id`', '; rm -rf /', 'a|b', '../../etc/passwd',
  'x'.repeat(70_000), 'ünïcödé', '\u0000', 'fd00::1', '::ffff:10.0.0.1', '10.0.0.300', '10.0.0.1/33', '256.1.1.1/24', 'eth0.0', 'eth0.4095', '-1',
];

/** One request that must be refused: a method, and a body breaking it in one way. */
interface Case {
  method: string;
  body: string;
  /** Unknown methods answer 404; everything else 500. */
  status: 404 | 500;
}

const json = (value: unknown) => JSON.stringify(value);

/** Bodies that are refused whatever the method (beyond those taking no arguments). */
function garbage(pick: <T>(items: readonly T[]) => T, next: () => number): string {
  switch (pick(['malformed', 'array', 'scalar', 'deep', 'huge', 'binary', 'random'] as const)) {
    case 'malformed':
      return pick(['{', '{"NetworkID": ', '{"a":1,}', "{'single': 1}", 'NaN', '{"NetworkID": "x"} trailing']);
    case 'array':
      return json([NET, EP]);
    case 'scalar':
      return json(pick([1, 'NetworkDriver', true, null]));
    case 'deep':
      return `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    case 'huge':
      return json({ NetworkID: NET, Options: { blob: 'x'.repeat(2 * 1024 * 1024) } });
    case 'binary':
      return Buffer.from(Array.from({ length: 64 }, () => Math.floor(next() * 256))).toString('latin1');
    case 'random':
      return json(Object.fromEntries(Array.from({ length: 1 + Math.floor(next() * 5) }, (_, i) => [`k${i}`, pick(HOSTILE)])));
  }
}

/**
 * A request of the right shape with one field made hostile, so it must be
 * refused. New IDs each time: a retried create of a known ID answers {} (it
 * is idempotent), which would hide a wrongly accepted case behind the first.
 */
function brokenField(pick: <T>(items: readonly T[]) => T, freshId: () => string): { method: string; body: unknown } {
  const bad = pick(HOSTILE);
  const generic = (options: Record<string, unknown>) => ({ 'com.docker.network.generic': options });
  const network = { NetworkID: freshId(), Options: generic({}), IPv4Data: [{ AddressSpace: 'x', Pool: '10.219.0.0/24', Gateway: '10.219.0.1/24' }], IPv6Data: [] };
  const endpoint = { NetworkID: NET, EndpointID: freshId(), Interface: { Address: '10.218.0.30/24', AddressIPv6: '', MacAddress: '' }, Options: {} };
  const choices: Array<() => { method: string; body: unknown }> = [
    () => ({ method: 'NetworkDriver.CreateNetwork', body: { ...network, NetworkID: bad } }),
    () => ({ method: 'NetworkDriver.CreateNetwork', body: { ...network, IPv4Data: [{ Pool: bad, Gateway: bad }] } }),
    () => ({ method: 'NetworkDriver.CreateNetwork', body: { ...network, Options: generic({ [pick(['com.docker.network.driver.mtu', 'com.docker.network.bridge.name', 'com.docker.network.bridge.enable_icc', 'tsnet.isolate', 'parent', 'tsnet.vlan', 'tsnet.host_shim'])]: typeof bad === 'string' ? bad : json(bad) }) } }),
    () => ({ method: 'NetworkDriver.CreateNetwork', body: { ...network, Options: generic({ parent: pick(['lo.0', 'lo.4095', 'nosuch.0', 'nosuch.4095', '$(reboot)']) }) } }),
    // null is dockerd's empty map: not hostile there.
    () => ({ method: 'NetworkDriver.CreateNetwork', body: { ...network, Options: { 'com.docker.network.generic': bad ?? 'null' } } }),
    () => ({ method: 'NetworkDriver.CreateEndpoint', body: { ...endpoint, Interface: { ...endpoint.Interface, Address: pick(['fd00::5/64', '10.0.0.300/24', '$(reboot)', 'x'.repeat(5000)]) } } }),
    () => ({ method: 'NetworkDriver.CreateEndpoint', body: { ...endpoint, Interface: { ...endpoint.Interface, MacAddress: pick(['zz:zz', '$(id)', '02:42:0a:da:00:1e:ff']) } } }),
    () => ({ method: 'NetworkDriver.CreateEndpoint', body: { ...endpoint, Options: { 'com.docker.network.portmap': [{ Proto: pick([1, 99, 6]), Port: pick([0, 70_000, -5]), HostPort: pick([70_000, -1]), HostPortEnd: 0 }] } } }),
    () => ({ method: 'NetworkDriver.CreateEndpoint', body: { ...endpoint, EndpointID: bad } }),
    () => ({ method: 'NetworkDriver.Join', body: { NetworkID: NET, EndpointID: bad, SandboxKey: '/x', Options: {} } }),
    () => ({ method: 'NetworkDriver.ProgramExternalConnectivity', body: { NetworkID: bad, EndpointID: EP, Options: {} } }),
    () => ({ method: pick(['NetworkDriver.DeleteNetwork', 'NetworkDriver.DeleteEndpoint', 'NetworkDriver.Leave', 'NetworkDriver.RevokeExternalConnectivity']), body: { NetworkID: bad, EndpointID: bad } }),
    () => ({ method: 'IpamDriver.RequestPool', body: { AddressSpace: pick(['tsnet-local', bad]), Pool: pick(['10.0.0.0/33', '::/0', '0.0.0.0/0', '10.0.0.1/24', bad]), SubPool: '', Options: {}, V6: false } }),
    () => ({ method: 'IpamDriver.RequestPool', body: { AddressSpace: 'tsnet-local', Pool: '', SubPool: '', Options: { 'tsnet.pool': pick(['my lan', 'a/b', 'p'.repeat(64)]) }, V6: false } }),
    () => ({ method: 'IpamDriver.RequestAddress', body: { PoolID: pick(['', 'no such pool', bad]), Address: pick(['', '10.218.0.77', bad]), Options: {} } }),
    () => ({ method: 'IpamDriver.RequestAddress', body: { PoolID: 'tsnet-local/10.218.0.0/24', Address: pick(['10.217.0.5', 'fd00::1', '10.218.0.0', '10.218.0.255', '$(id)']), Options: {} } }),
    () => ({ method: 'IpamDriver.ReleasePool', body: { PoolID: pick(['', 42, null]) } }),
  ];
  return pick(choices)();
}

function cases(): Case[] {
  const next = seededRandom(SEED);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const methods = ['NetworkDriver.CreateNetwork', 'NetworkDriver.CreateEndpoint', 'NetworkDriver.Join', 'NetworkDriver.DeleteEndpoint', 'IpamDriver.RequestPool', 'IpamDriver.RequestAddress', 'IpamDriver.ReleaseAddress'];
  return Array.from({ length: REQUESTS }, (): Case => {
    const kind = next();
    if (kind < 0.05) return { method: pick(['NetworkDriver.Nope', 'IpamDriver.Steal', 'Plugin.Deactivate', 'NetworkDriver.CreateNetwork/../x', 'x'.repeat(300)]), body: '{}', status: 404 };
    if (kind < 0.4) return { method: pick(methods), body: garbage(pick, next), status: 500 };
    const broken = brokenField(pick, () => Array.from({ length: 64 }, () => Math.floor(next() * 16).toString(16)).join(''));
    return { method: broken.method, body: json(broken.body), status: 500 };
  });
}

/** The bytes of every SQLite file of the state dir (database and write-ahead log). */
function stateDigest(): string {
  const hash = createHash('sha256');
  const state = join(dir, 'state');
  for (const file of readdirSync(state).sort()) hash.update(file).update(readFileSync(join(state, file)));
  return hash.digest('hex');
}

const post = (method: string, body: string) => httpPostUnix(tsnet.socketPath, `/${method}`, body, 30_000);

describe('hostile requests against the daemon', () => {
  beforeAll(async () => {
    await createNetns(netns);
    tsnet = await startTsnet({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsf${id}`, logLevel: 'error' });
    // Something to protect: a pool with a gateway, a network and an endpoint.
    const ok = async (method: string, body: unknown) => expect((await post(method, json(body))).status, method).toBe(200);
    await ok('IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.218.0.0/24', SubPool: '', Options: {}, V6: false });
    await ok('IpamDriver.RequestAddress', { PoolID: 'tsnet-local/10.218.0.0/24', Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
    await ok('NetworkDriver.CreateNetwork', { NetworkID: NET, Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: '10.218.0.0/24', Gateway: '10.218.0.1/24' }] });
    await ok('NetworkDriver.CreateEndpoint', { NetworkID: NET, EndpointID: EP, Interface: { Address: '10.218.0.2/24' }, Options: {} });
  });
  afterAll(async () => {
    await tsnet?.kill9();
    await deleteNetns(netns);
    await run('rm', ['-rf', dir]);
  });

  it(`answers ${REQUESTS} generated hostile requests with clean refusals, stays up and changes no byte of its state`, async () => {
    const before = stateDigest();
    const unclean: string[] = [];
    for (const [i, c] of cases().entries()) {
      const res = await post(c.method, c.body);
      let err: unknown;
      try {
        err = (JSON.parse(res.body) as { Err?: unknown }).Err;
      } catch {
        err = undefined;
      }
      const clean = res.status === c.status && typeof err === 'string' && (c.status === 404 || /^[\w.-]+(\.[\w.-]+)*: \S/.test(err));
      if (!clean) unclean.push(`#${i} ${c.method} ${c.body.slice(0, 400)} → ${res.status} ${res.body.slice(0, 200)}`);
    }
    expect(unclean).toEqual([]);
    expect(isAlive(tsnet.pid)).toBe(true);
    expect(stateDigest()).toBe(before);
    // Still serving real work afterwards.
    expect((await post('NetworkDriver.Join', json({ NetworkID: NET, EndpointID: EP, SandboxKey: '', Options: {} }))).status).toBe(200);
  });
});
