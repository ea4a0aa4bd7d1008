// Endpoints whose container went away while tsnet did not hear of it, on a
// real kernel: the sandbox is a netns of the test's own and dockerd's
// teardown is done by hand (the container end handed back to the host netns,
// the sandbox file removed), as dockerd does when DeleteEndpoint fails.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, execInNetnsOk, ipIn, waitUntil } from '../harness/index.js';
import { NetnsPlugin } from './netns-plugin.js';

const hex = () => randomBytes(32).toString('hex');
const id = randomBytes(3).toString('hex');
const netns = `tsst${id}`;
const sandboxNetns = `tsss${id}`;
const dir = mkdtempSync(join(tmpdir(), 'tsnet-stale-'));

describe('stale endpoints', () => {
  const tsnet = new NetnsPlugin(netns);
  const net = hex();

  beforeAll(async () => {
    await createNetns(netns);
    await createNetns(sandboxNetns);
    await tsnet.start();
    await tsnet.post('NetworkDriver.CreateNetwork', {
      NetworkID: net,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.134.0.0/24', Gateway: '10.134.0.1/24' }],
    });
  });
  afterAll(async () => {
    await tsnet.close();
    await deleteNetns(netns);
    await deleteNetns(sandboxNetns);
    rmSync(dir, { recursive: true, force: true });
  });

  /** An endpoint with ports, joined to a "sandbox": its container end moved into the sandbox netns. */
  async function joinedEndpoint(address: string): Promise<{ endpoint: string; sandboxKey: string; containerIf: string }> {
    const endpoint = hex();
    const sandboxKey = join(dir, endpoint.slice(0, 12));
    writeFileSync(sandboxKey, '');
    const ports = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 0, HostPortEnd: 0 }];
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: endpoint, Interface: { Address: address }, Options: { 'com.docker.network.portmap': ports } });
    const joined = await tsnet.post('NetworkDriver.Join', { NetworkID: net, EndpointID: endpoint, SandboxKey: sandboxKey, Options: {} });
    const containerIf = joined.body.InterfaceName.SrcName as string;
    await ipIn(netns, ['link', 'set', containerIf, 'netns', sandboxNetns]);
    return { endpoint, sandboxKey, containerIf };
  }

  /** What dockerd does to a sandbox it destroys: interfaces back to the host under their old names, file gone. */
  async function destroySandbox(e: { sandboxKey: string; containerIf: string }): Promise<void> {
    await execInNetnsOk(sandboxNetns, ['ip', 'link', 'set', e.containerIf, 'netns', netns]);
    rmSync(e.sandboxKey);
  }

  it('tsnet port add never picks the record of a container that is gone', async () => {
    const gone = await joinedEndpoint('10.134.0.5/24');
    await destroySandbox(gone);
    await expect(tsnet.plugin.networks.changePorts('10.134.0.5', (current) => current.map((p) => p.binding))).rejects.toThrow(/no tsnet endpoint has the address 10\.134\.0\.5/);
  });

  it('a live endpoint keeps its record and ports across a restart; a gone one is dropped with its veth, a moment later', async () => {
    const live = await joinedEndpoint('10.134.0.6/24');
    const gone = await joinedEndpoint('10.134.0.7/24');
    await destroySandbox(gone);
    await tsnet.restart();
    const ids = () => tsnet.plugin.networks.listEndpoints().map((e) => e.id);
    await waitUntil(() => !ids().includes(gone.endpoint), { timeoutMs: 5_000, what: 'the gone endpoint to be dropped' });
    expect(ids()).toContain(live.endpoint);
    // Its veth pair goes in the background (see LinkReaper).
    await tsnet.plugin.linkReaper.settled();
    const links = (await ipIn(netns, ['-o', 'link', 'show'])).stdout;
    expect(links).not.toContain(gone.containerIf);
    expect(links).toContain(`tsv${live.endpoint.slice(0, 12)}`);
  });

  it('keeps an endpoint whose container was starting when tsnet went down (joined, its netns not made yet)', async () => {
    // dockerd joins before it makes the netns: no sandbox file yet, the container end still in the host netns.
    const endpoint = hex();
    const sandboxKey = join(dir, endpoint.slice(0, 12));
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: endpoint, Interface: { Address: '10.134.0.8/24' }, Options: {} }).expect(200);
    const joined = await tsnet.post('NetworkDriver.Join', { NetworkID: net, EndpointID: endpoint, SandboxKey: sandboxKey, Options: {} }).expect(200);
    const containerIf = joined.body.InterfaceName.SrcName as string;
    await tsnet.restart();
    // A moment later (runc's prestart hook) the netns is there and the interface moved into it.
    writeFileSync(sandboxKey, '');
    await ipIn(netns, ['link', 'set', containerIf, 'netns', sandboxNetns]);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(tsnet.plugin.networks.listEndpoints().map((e) => e.id)).toContain(endpoint);
    expect((await ipIn(netns, ['-o', 'link', 'show'])).stdout).toContain(`tsv${endpoint.slice(0, 12)}`);
  });
});

describe('stale endpoints right after a restart (before the second look)', () => {
  // The daemon's own grace, and longer: what these tests see happens at once, not at its end.
  const tsnet = new NetnsPlugin(`${netns}q`, undefined, 120_000);
  const quickSandbox = `${sandboxNetns}q`;
  const net = hex();
  const sandboxDir = mkdtempSync(join(tmpdir(), 'tsnet-stale-quick-'));

  beforeAll(async () => {
    await createNetns(`${netns}q`);
    await createNetns(quickSandbox);
    await tsnet.start();
    await tsnet.post('NetworkDriver.CreateNetwork', {
      NetworkID: net,
      Options: { 'com.docker.network.generic': {} },
      IPv4Data: [{ AddressSpace: 'LocalDefault', Pool: '10.135.0.0/24', Gateway: '10.135.0.1/24' }],
    });
  });
  afterAll(async () => {
    await tsnet.close();
    await deleteNetns(`${netns}q`);
    await deleteNetns(quickSandbox);
    rmSync(sandboxDir, { recursive: true, force: true });
  });

  /** An endpoint publishing host port `hostPort`, joined and made its container's gateway, its container end in the sandbox netns. */
  async function publishing(address: string, hostPort: number) {
    const endpoint = hex();
    const sandboxKey = join(sandboxDir, endpoint.slice(0, 12));
    writeFileSync(sandboxKey, '');
    const ports = [{ Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: hostPort, HostPortEnd: hostPort }];
    await tsnet.post('NetworkDriver.CreateEndpoint', { NetworkID: net, EndpointID: endpoint, Interface: { Address: address }, Options: { 'com.docker.network.portmap': ports } }).expect(200);
    const joined = await tsnet.post('NetworkDriver.Join', { NetworkID: net, EndpointID: endpoint, SandboxKey: sandboxKey, Options: {} }).expect(200);
    const containerIf = joined.body.InterfaceName.SrcName as string;
    await ipIn(`${netns}q`, ['link', 'set', containerIf, 'netns', quickSandbox]);
    return { endpoint, sandboxKey, containerIf, connect: () => tsnet.post('NetworkDriver.ProgramExternalConnectivity', { NetworkID: net, EndpointID: endpoint, Options: {} }) };
  }

  const ids = () => tsnet.plugin.networks.listEndpoints().map((e) => e.id);

  it('drops at once, before restoring its port, an endpoint whose veth is gone: no starting container looks so', async () => {
    const gone = await publishing('10.135.0.5/24', 8087);
    await gone.connect().expect(200);
    await execInNetnsOk(quickSandbox, ['ip', 'link', 'del', gone.containerIf]);
    rmSync(gone.sandboxKey);
    await tsnet.restart();
    expect(ids()).not.toContain(gone.endpoint);
    const next = await publishing('10.135.0.6/24', 8087);
    const connected = await next.connect();
    expect(connected.status, JSON.stringify(connected.body)).toBe(200);
  });

  it('looks again at once at a suspect holding the host port a container asks for, and frees it if it is gone', async () => {
    const gone = await publishing('10.135.0.7/24', 8088);
    await gone.connect().expect(200);
    // dockerd's teardown while tsnet is down: the container end handed back, the sandbox file removed (a starting container looks so too).
    await execInNetnsOk(quickSandbox, ['ip', 'link', 'set', gone.containerIf, 'netns', `${netns}q`]);
    rmSync(gone.sandboxKey);
    await tsnet.restart();
    expect(ids()).toContain(gone.endpoint);
    const next = await publishing('10.135.0.8/24', 8088);
    const connected = await next.connect();
    expect(connected.status, JSON.stringify(connected.body)).toBe(200);
    expect(ids()).not.toContain(gone.endpoint);
  });

  it('still refuses a port a live endpoint holds, naming it', async () => {
    const live = await publishing('10.135.0.9/24', 8089);
    await live.connect().expect(200);
    await tsnet.restart();
    const other = await publishing('10.135.0.10/24', 8089);
    const refused = await other.connect();
    expect(refused.status).toBe(500);
    expect(refused.body.Err).toMatch(new RegExp(`HostPort: host port 8089/tcp on all addresses is already published by tsnet endpoint ${live.endpoint.slice(0, 12)}`));
  });
});

