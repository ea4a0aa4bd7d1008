/**
 * One tsnet per network namespace: a second daemon in the netns of a running
 * one (another --name, socket dir and state, as the managed plugin beside the
 * systemd service) refuses to start, naming the first one's plugin socket,
 * and changes nothing of its links and rules; a daemon in another netns
 * starts; once the first is killed (SIGKILL: no clean-up of its own), a new
 * one starts in its netns.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetnsCleanedUp, execInNetns, httpPostUnix, newRunId, run, runDir, startTsnet, TSNET_CLI, type TsnetDaemon } from '../harness/index.js';

const id = newRunId();
const netns = `${id}a`;
const otherNetns = `${id}b`;
const dir = runDir(id);
const cleanup = new CleanupStack();
const NETWORK = 'ab'.repeat(32);
const ENDPOINT = 'cd'.repeat(32);
const BRIDGE = `tsbr-${NETWORK.slice(0, 10)}`;
const VETH = `tsv${ENDPOINT.slice(0, 12)}`;
let first: TsnetDaemon;

/** A daemon of its own name, socket dir and state dir in `ns`. */
const options = (name: string, ns = netns) => ({
  netns: ns, pluginDir: join(dir, `plugins-${name}`), stateDir: join(dir, `state-${name}`), logFile: join(dir, `${name}.log`), driver: `ts${name}${id}`,
  extraArgs: ['--firewall', 'nftables'],
});

async function post(daemon: TsnetDaemon, method: string, body: unknown): Promise<void> {
  const res = await httpPostUnix(daemon.socketPath, `/${method}`, JSON.stringify(body));
  expect(res.status, `${method}: ${res.body}`).toBe(200);
}

/** What the first daemon built that a second one would take for leftovers: its bridge, its veth, its nftables elements. */
async function firstDaemonsWork(): Promise<{ links: boolean; table: string }> {
  const links = await Promise.all([BRIDGE, VETH].map(async (link) => (await execInNetns(netns, ['ip', 'link', 'show', link])).exitCode === 0));
  const table = await execInNetns(netns, ['nft', 'list', 'table', 'inet', 'tsnet']);
  return { links: links.every(Boolean), table: table.stdout };
}

describe('one tsnet per network namespace', () => {
  beforeAll(async () => {
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await createNetnsCleanedUp(cleanup, netns, otherNetns);
    first = await startTsnet(options('1'));
    cleanup.defer('kill the first daemon', () => first.kill9());
    await post(first, 'NetworkDriver.CreateNetwork', {
      NetworkID: NETWORK, Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.175.0.0/24', Gateway: '10.175.0.1/24' }], IPv6Data: [],
    });
    await post(first, 'NetworkDriver.CreateEndpoint', { NetworkID: NETWORK, EndpointID: ENDPOINT, Interface: { Address: '10.175.0.2/24', AddressIPv6: '', MacAddress: '' }, Options: {} });
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('refuses a second daemon in the same netns, naming the first one\'s socket, and leaves its links and rules alone', async () => {
    const before = await firstDaemonsWork();
    expect(before.links).toBe(true);
    expect(before.table).toContain(BRIDGE);
    const second = options('2');
    const r = await run('ip', ['netns', 'exec', netns, process.execPath, TSNET_CLI, 'daemon', '--name', second.driver, '--socket-dir', second.pluginDir, '--state-dir', second.stateDir, ...second.extraArgs]);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toBe(
      `tsnet: another tsnet daemon (pid ${first.pid}) serves ${first.socketPath} in this network namespace; one tsnet per network namespace: a second one would delete the first one's links and rules as leftovers. Stop it first (the managed plugin and the systemd service are two ways to run tsnet: use one)`,
    );
    expect(await firstDaemonsWork()).toEqual(before);
    await post(first, 'NetworkDriver.GetCapabilities', {});
  });

  it('starts a daemon in another netns beside it', async () => {
    const beside = await startTsnet(options('3', otherNetns));
    await beside.stop();
  });

  it('once the first is SIGKILLed, a new daemon starts in its netns', async () => {
    await first.kill9();
    const next = await startTsnet(options('2'));
    await next.stop();
  });
});
