/**
 * The daemon process as an operator runs it: the sockets' mode from their
 * first moment, a stale socket replaced, a live one refused, SIGTERM keeping
 * state, kill -9 survived.
 */
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNetns, deleteNetns, httpPostUnix, newRunId, processState, run, runDir, socketAccepts, startTsnet, terminate, TSNET_CLI, type TsnetDaemon, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}d`;
/** Where this file's other daemons run: one tsnet per netns (one-per-netns.test.ts). */
const otherNetns = `${id}e`;
const dir = runDir(id);
let tsnet: TsnetDaemon;

const options = () => ({ netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, 'state'), logFile: join(dir, 'tsnet.log'), driver: `tsn${id}` });

describe('tsnet daemon lifecycle', () => {
  beforeAll(async () => {
    await createNetns(netns);
    await createNetns(otherNetns);
    tsnet = await startTsnet(options());
  });
  afterAll(async () => {
    await tsnet?.kill9();
    await deleteNetns(netns);
    await deleteNetns(otherNetns);
    await run('rm', ['-rf', dir]);
  });

  it('serves the plugin socket with mode 0600', () => {
    expect(statSync(tsnet.socketPath).mode & 0o777).toBe(0o600);
  });

  it('creates its plugin and admin sockets 0600: no moment in which anyone else could connect', async () => {
    // strace stops the daemon (SIGSTOP) at every listen(2), when a socket file is as bind(2) made it;
    // each stop's modes are noted, then it goes on. A umask of 022 would make them 0755.
    const plugins = join(dir, 'plugins-m');
    const admin = join(dir, 'admin-m', 'tsm.admin.sock');
    const plugin = join(plugins, 'tsm.sock');
    const strace = ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=listen', '-e', 'inject=listen:signal=SIGSTOP'];
    const daemon = [process.execPath, TSNET_CLI, 'daemon', '--name', 'tsm', '--socket-dir', plugins, '--state-dir', join(dir, 'state-m'), '--admin-socket', admin];
    const child = execa('ip', ['netns', 'exec', otherNetns, 'sh', '-c', 'umask 022 && exec "$@"', 'sh', ...strace, ...daemon], { reject: false, stdin: 'ignore' });
    const tracer = child.pid!;
    const node = await waitUntil(() => Number(readFileSync(`/proc/${tracer}/task/${tracer}/children`, 'utf8').trim().split(' ')[0]) || undefined, { timeoutMs: 10_000, what: 'strace to start the daemon' });
    const stopped = () => ['t', 'T'].includes(processState(node));
    const modes = new Map<string, Set<string>>([[plugin, new Set()], [admin, new Set()]]);
    try {
      await waitUntil(async () => {
        if (stopped()) {
          for (const [path, seen] of modes) if (existsSync(path)) seen.add((statSync(path).mode & 0o777).toString(8));
          process.kill(node, 'SIGCONT');
          return false;
        }
        return modes.get(admin)!.size > 0 && socketAccepts(admin);
      }, { timeoutMs: 60_000, intervalMs: 20, what: 'the traced daemon to listen on both sockets' });
    } finally {
      process.kill(node, 'SIGCONT');
      await terminate(node, 15_000);
      await child;
    }
    expect(Object.fromEntries([...modes].map(([path, seen]) => [path, [...seen]]))).toEqual({ [plugin]: ['600'], [admin]: ['600'] });
  });

  it('refuses to start a second daemon on a live socket, with a clear message', async () => {
    // From another netns (a plugin dir two hosts share): in the same one, the netns claim refuses first.
    const second = await run('ip', ['netns', 'exec', otherNetns, 'node', TSNET_CLI, 'daemon', '--name', `tsn${id}`, '--socket-dir', join(dir, 'plugins'), '--state-dir', join(dir, 'state2')]);
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
    const opts = { ...options(), netns: otherNetns, stateDir: join(dir, 'state5'), driver: `tss${id}`, env: { PATH: `${bin}:${process.env.PATH}` } };
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
      expect((await run('ip', ['-n', otherNetns, 'link', 'show', `tsbr-${network.slice(0, 10)}`])).exitCode).not.toBe(0);
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
    const opts = { ...options(), netns: otherNetns, stateDir: join(dir, 'state4'), driver: `tsc${id}`, extraArgs: ['--cluster-store', 'etcd://127.0.0.1:1', '--host-id', 'lonely'] };
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
