/**
 * The drift watcher costs nothing on the attach path: endpoints attached and
 * detached through the plugin API (links, addresses, published ports, as
 * for `docker run -p`) make no read-and-compare of the kernel, while a
 * change someone else makes to tsnet's bridge still does, and is repaired.
 * Counted by tsnet_drift_looks_total, in the daemon's own netns.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetns, deleteNetns, execInNetns, httpPostUnix, ipIn, newRunId, run, runDir, startTsnet, type TsnetDaemon, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}q`;
const dir = runDir(id);
const NETWORK = 'd9'.repeat(32);
const BRIDGE = `tsbr-${NETWORK.slice(0, 10)}`;
const METRICS = '127.0.0.1:19471';
const ENDPOINTS = 10;
/** Longer than the watcher's settle, quiet and postpone delays together (100 + 200 + 1000 ms). */
const SETTLED_MS = 3_000;
let tsnet: TsnetDaemon;
const cleanup = new CleanupStack();

const endpointId = (i: number) => `e${String(i).padStart(2, '0')}`.padEnd(64, '9');

async function plugin(method: string, body: unknown): Promise<void> {
  const res = await httpPostUnix(tsnet.socketPath, `/NetworkDriver.${method}`, JSON.stringify(body));
  expect(res.status, `${method}: ${res.body}`).toBe(200);
}

async function looks(): Promise<number> {
  const r = await execInNetns(netns, ['timeout', '5', 'busybox', 'wget', '-qO-', `http://${METRICS}/metrics`]);
  expect(r.exitCode, r.stderr + tsnet.logTail()).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.startsWith('tsnet_drift_looks_total '));
  expect(line, 'tsnet_drift_looks_total in the scrape').toBeDefined();
  return Number(line!.split(' ')[1]);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLED_MS));

describe('the drift watcher on the attach path', () => {
  beforeAll(async () => {
    await createNetns(netns);
    cleanup.defer(`delete netns ${netns}`, () => deleteNetns(netns));
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await ipIn(netns, ['link', 'set', 'lo', 'up']);
    tsnet = await startTsnet({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsq${id}`, extraArgs: ['--metrics', METRICS, '--log-level', 'debug'] });
    cleanup.defer('stop tsnet', () => tsnet.stop());
    await plugin('CreateNetwork', {
      NetworkID: NETWORK,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.155.0.0/24', Gateway: '10.155.0.1/24' }],
      IPv6Data: [],
    });
    await settle();
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('makes no look while endpoints with published ports come and go through the plugin', async () => {
    const before = await looks();
    for (let i = 0; i < ENDPOINTS; i++) {
      const portmap = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18_100 + i, HostPortEnd: 18_100 + i }];
      await plugin('CreateEndpoint', { NetworkID: NETWORK, EndpointID: endpointId(i), Interface: { Address: `10.155.0.${i + 10}/24`, AddressIPv6: '', MacAddress: '' }, Options: { 'com.docker.network.portmap': portmap } });
      await plugin('Join', { NetworkID: NETWORK, EndpointID: endpointId(i), SandboxKey: '', Options: {} });
      await plugin('ProgramExternalConnectivity', { NetworkID: NETWORK, EndpointID: endpointId(i), Options: { 'com.docker.network.portmap': portmap } });
    }
    await settle();
    expect(await looks(), tsnet.logTail(20)).toBe(before);
    for (let i = 0; i < ENDPOINTS; i++) {
      await plugin('RevokeExternalConnectivity', { NetworkID: NETWORK, EndpointID: endpointId(i) });
      await plugin('Leave', { NetworkID: NETWORK, EndpointID: endpointId(i) });
      await plugin('DeleteEndpoint', { NetworkID: NETWORK, EndpointID: endpointId(i) });
    }
    await settle();
    expect(await looks(), tsnet.logTail(20)).toBe(before);
  });

  it('still looks, and repairs, when someone else puts tsnet\'s bridge down', async () => {
    const before = await looks();
    await ipIn(netns, ['link', 'set', BRIDGE, 'down']);
    await waitUntil(async () => (await looks()) > before, { timeoutMs: 10_000, what: 'a look after the bridge went down', diagnostics: () => tsnet.logTail(20) });
    await waitUntil(async () => (await execInNetns(netns, ['ip', '-o', 'link', 'show', BRIDGE])).stdout.includes(',UP'), { timeoutMs: 10_000, what: `${BRIDGE} up again` });
  });
});
