/**
 * The daemon process as an operator runs it: the socket's mode, a stale
 * socket replaced, a live one refused, SIGTERM keeping state, kill -9 survived.
 */
import { once } from 'node:events';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, httpPostUnix, newRunId, run, runDir, startTsnet, TSNET_CLI, type TsnetDaemon, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}d`;
const dir = runDir(id);
let tsnet: TsnetDaemon;

const options = () => ({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsn${id}` });

describe('tsnet daemon lifecycle', () => {
  beforeAll(async () => {
    await createNetns(netns);
    tsnet = await startTsnet(options());
  });
  afterAll(async () => {
    await tsnet?.kill9();
    await deleteNetns(netns);
    await run('rm', ['-rf', dir]);
  });

  it('serves the plugin socket with mode 0600', () => {
    expect(statSync(tsnet.socketPath).mode & 0o777).toBe(0o600);
  });

  it('refuses to start a second daemon on a live socket, with a clear message', async () => {
    const second = await run('ip', ['netns', 'exec', netns, 'node', TSNET_CLI, 'daemon', '--name', `tsn${id}`, '--socket-dir', join(dir, 'plugins'), '--state-dir', join(dir, 'state2')]);
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toMatch(/another daemon is already serving .*\.sock/);
    expect((await httpPostUnix(tsnet.socketPath, '/NetworkDriver.GetCapabilities', '')).status).toBe(200);
  });

  it('never closes an idle keep-alive connection itself (dockerd would retry on it with an empty body)', async () => {
    const socket = connect(tsnet.socketPath);
    await once(socket, 'connect');
    let closedByServer = false;
    socket.on('end', () => (closedByServer = true));
    socket.write('POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: \r\nContent-Length: 0\r\n\r\n');
    await once(socket, 'data');
    // Node's default would end the connection after 5 s idle.
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    expect(closedByServer).toBe(false);
    socket.destroy();
  });

  it('keeps its state over SIGTERM and over kill -9, replacing the stale socket', async () => {
    const body = JSON.stringify({ AddressSpace: 'tsnet-local', Pool: '10.250.0.0/24', SubPool: '', Options: {}, V6: false });
    expect((await httpPostUnix(tsnet.socketPath, '/IpamDriver.RequestPool', body)).status).toBe(200);
    const poolId = 'tsnet-local/10.250.0.0/24';
    const ask = () => httpPostUnix(tsnet.socketPath, '/IpamDriver.RequestAddress', JSON.stringify({ PoolID: poolId, Address: '', Options: null }));
    expect(JSON.parse((await ask()).body).Address).toBe('10.250.0.1/24');

    await tsnet.stop();
    expect(existsSync(tsnet.socketPath)).toBe(false);
    await tsnet.start();
    expect(JSON.parse((await ask()).body).Address).toBe('10.250.0.2/24');

    await tsnet.kill9();
    expect(existsSync(tsnet.socketPath)).toBe(true); // what a crash leaves behind
    await tsnet.start();
    expect(JSON.parse((await ask()).body).Address).toBe('10.250.0.3/24');
    expect(tsnet.logTail(200)).toMatch(/"method":"IpamDriver.RequestAddress".*"ms":/);
  });

  it('lets a request it is serving finish and record its work before it stops, however long it takes', async () => {
    // An iptables-restore slower than shutdown's 10 s wait for connections: the handler is between kernel change and commit.
    const bin = join(dir, 'slow-bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'iptables-restore'), '#!/bin/sh\nsleep 12\nexec /usr/sbin/iptables-restore "$@"\n', { mode: 0o755 });
    const opts = { ...options(), stateDir: join(dir, 'state5'), driver: `tss${id}`, env: { PATH: `${bin}:${process.env.PATH}` } };
    const slow = await startTsnet(opts);
    const network = 'c5'.repeat(32);
    const create = JSON.stringify({ NetworkID: network, Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'x', Pool: '10.253.0.0/24', Gateway: '10.253.0.1/24' }] });
    const answer = httpPostUnix(slow.socketPath, '/NetworkDriver.CreateNetwork', create, 30_000).catch(() => undefined);
    await waitUntil(async () => (await run('pgrep', ['-f', `^/bin/sh ${bin}/iptables-restore`])).exitCode === 0, { timeoutMs: 10_000, what: 'the slow iptables-restore to start' });
    await slow.stop();
    await answer;
    // The state kept what the kernel got: restarted, tsnet knows the network and deletes its bridge.
    const again = await startTsnet({ ...opts, env: {} });
    try {
      expect((await httpPostUnix(again.socketPath, '/NetworkDriver.DeleteNetwork', JSON.stringify({ NetworkID: network }))).status).toBe(200);
      expect((await run('ip', ['-n', netns, 'link', 'show', `tsbr-${network.slice(0, 10)}`])).exitCode).not.toBe(0);
    } finally {
      await again.stop();
    }
  });

  it('refuses a malformed --cluster-store before serving anything', async () => {
    const r = await run('ip', ['netns', 'exec', netns, 'node', TSNET_CLI, 'daemon', '--name', `tsx${id}`, '--socket-dir', join(dir, 'plugins'),
      '--state-dir', join(dir, 'state3'), '--cluster-store', 'etcd://nohost']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('tsnet: --cluster-store "etcd://nohost": "nohost" is not HOST:PORT');
    expect(existsSync(join(dir, 'plugins', `tsx${id}.sock`))).toBe(false);
  });

  it('serves without its cluster store, and refuses what needs it naming the store', async () => {
    // Nothing listens on port 1 of the netns: etcd is down.
    const opts = { ...options(), stateDir: join(dir, 'state4'), driver: `tsc${id}`, extraArgs: ['--cluster-store', 'etcd://127.0.0.1:1', '--host-id', 'lonely'] };
    const clustered = await startTsnet(opts);
    try {
      const body = JSON.stringify({ AddressSpace: 'tsnet-local', Pool: '10.251.0.0/24', SubPool: '', Options: { 'tsnet.pool': 'lan' }, V6: false });
      const refused = await httpPostUnix(clustered.socketPath, '/IpamDriver.RequestPool', body);
      expect(refused.status).toBe(500);
      expect(JSON.parse(refused.body).Err).toMatch(/^cluster store: etcd:\/\/127\.0\.0\.1:1 is unreachable \(.*\); nothing was allocated or released$/);
      const local = JSON.stringify({ AddressSpace: 'tsnet-local', Pool: '10.252.0.0/24', SubPool: '', Options: {}, V6: false });
      expect((await httpPostUnix(clustered.socketPath, '/IpamDriver.RequestPool', local)).status).toBe(200);
      const ls = await clustered.runCli(['cluster', 'ls']);
      expect(ls.exitCode).toBe(1);
      expect(ls.stderr).toContain('tsnet: cluster store: etcd://127.0.0.1:1 is unreachable');
    } finally {
      await clustered.stop();
    }
  });
});
