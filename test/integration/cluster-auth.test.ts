/**
 * tsnet against an etcd with authentication enabled (Debian's etcd 3.4, in
 * the daemon's own test netns on its loopback), its user limited by RBAC to
 * tsnet's key prefix as docs/cluster.md sets it up: with the right password
 * (--cluster-store-password-file) the daemon registers and allocates from a
 * shared pool; with a wrong one, or none, requests that need etcd are refused
 * naming the store and the user, and nothing is written.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createNetnsCleanedUp, type EtcdServer, httpPostUnix, newRunId, run, runDir, startEtcd, startTsnet, type TsnetDaemon, waitUntil } from '../harness/index.js';

const id = newRunId();
const netns = `${id}c`;
const dir = runDir(id);
const cleanup = new CleanupStack();
const ROOT = 'root:root-pw-1';
let etcd: EtcdServer;

/** etcdctl as etcd's root user (auth is on). */
async function asRoot(args: readonly string[]): Promise<string> {
  const r = await etcd.etcdctl(['--user', ROOT, ...args]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout;
}

/** A daemon of this netns with the cluster store and the given credentials (a password file, or none). */
async function daemon(name: string, password?: string): Promise<TsnetDaemon> {
  const credentials: string[] = [];
  if (password !== undefined) {
    const file = join(dir, `${name}.password`);
    writeFileSync(file, `${password}\n`, { mode: 0o600 });
    credentials.push('--cluster-store-user', 'tsnet', '--cluster-store-password-file', file);
  }
  return startTsnet({
    netns, pluginDir: join(dir, 'plugins'), stateDir: join(dir, `state-${name}`), logFile: join(dir, `${name}.log`), driver: `ts${name}${id}`,
    extraArgs: ['--cluster-store', etcd.url, '--host-id', name, ...credentials],
  });
}

async function post(tsnet: TsnetDaemon, method: string, body: unknown): Promise<{ status: number; body: Record<string, string> }> {
  const res = await httpPostUnix(tsnet.socketPath, `/${method}`, JSON.stringify(body));
  return { status: res.status, body: JSON.parse(res.body) as Record<string, string> };
}

const sharedPool = (tsnet: TsnetDaemon) => post(tsnet, 'IpamDriver.RequestPool', { AddressSpace: 'tsnet-local', Pool: '10.177.0.0/24', SubPool: '', Options: { 'tsnet.pool': 'authlan' }, V6: false });

describe('etcd with authentication and RBAC', () => {
  beforeAll(async () => {
    cleanup.defer(`remove ${dir}`, () => run('rm', ['-rf', dir]));
    await createNetnsCleanedUp(cleanup, netns);
    etcd = await startEtcd({ name: id, netns, address: '127.0.0.1', dataDir: join(dir, 'etcd'), logFile: join(dir, 'etcd.log') });
    cleanup.defer('stop etcd', () => etcd.destroy());
    // What docs/cluster.md tells operators to run: a role limited to tsnet's prefix, a user with it, then auth on.
    for (const command of [
      ['user', 'add', ROOT],
      ['role', 'add', 'tsnet'],
      ['role', 'grant-permission', 'tsnet', '--prefix=true', 'readwrite', 'tsnet/'],
      ['user', 'add', 'tsnet:tsnet-pw-1'],
      ['user', 'grant-role', 'tsnet', 'tsnet'],
      ['auth', 'enable'],
    ]) {
      const r = await etcd.etcdctl(command);
      expect(r.exitCode, `${command.join(' ')}: ${r.stderr}`).toBe(0);
    }
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('with the right user and password, registers and allocates from a shared pool', async () => {
    const tsnet = await daemon('good', 'tsnet-pw-1');
    try {
      const pool = await sharedPool(tsnet);
      expect(pool.status, pool.body.Err).toBe(200);
      const gateway = await post(tsnet, 'IpamDriver.RequestAddress', { PoolID: pool.body.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
      expect(gateway.status, gateway.body.Err).toBe(200);
      const network = await post(tsnet, 'NetworkDriver.CreateNetwork', {
        NetworkID: 'af'.repeat(32), Options: { 'com.docker.network.generic': {} }, IPv4Data: [{ AddressSpace: 'tsnet-local', Pool: '10.177.0.0/24', Gateway: gateway.body.Address }], IPv6Data: [],
      });
      expect(network.status, network.body.Err).toBe(200);
      const address = await post(tsnet, 'IpamDriver.RequestAddress', { PoolID: pool.body.PoolID, Address: '', Options: {} });
      expect(address.status, address.body.Err).toBe(200);
      const ip = address.body.Address!.split('/')[0];
      expect(await asRoot(['get', '--keys-only', `tsnet/v1/pools/authlan/v4/addresses/${ip}`])).toContain(ip);
      // Its lease-bound membership works under the role too.
      await waitUntil(async () => (await asRoot(['get', '--keys-only', 'tsnet/v1/alive/good'])).includes('alive/good'), { timeoutMs: 20_000, what: 'host good to register in etcd', diagnostics: () => tsnet.logTail() });
    } finally {
      await tsnet.stop();
    }
  });

  it('with a wrong password, refuses what needs etcd, naming the store and the user, and writes nothing', async () => {
    const tsnet = await daemon('bad', 'not-the-password');
    try {
      const refused = await sharedPool(tsnet);
      expect(refused).toEqual({
        status: 500,
        body: { Err: `cluster store: ${etcd.url} refused user tsnet (authentication failed, invalid user ID or password): check --cluster-store-user tsnet and the password in --cluster-store-password-file; nothing was allocated or released` },
      });
      expect(await asRoot(['get', '--prefix', '--keys-only', 'tsnet/v1/hosts/bad'])).toBe('');
    } finally {
      await tsnet.stop();
    }
  });

  it('without credentials, says that etcd wants them', async () => {
    const tsnet = await daemon('none');
    try {
      expect((await sharedPool(tsnet)).body.Err).toBe(
        `cluster store: ${etcd.url} refused tsnet (user name is empty): etcd has authentication enabled: give tsnet its user with --cluster-store-user and --cluster-store-password-file; nothing was allocated or released`,
      );
    } finally {
      await tsnet.stop();
    }
  });
});
