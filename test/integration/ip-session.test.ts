// The long-lived `ip -batch` session against a real netns: writes land, the
// first failing line stops its request with ip's own message, and the
// session keeps serving after a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpSessionRunner } from '../../src/sys/ip-session.js';
import { CommandError, ExecaRunner, Ip } from '../../src/sys/index.js';
import { createNetns, deleteNetns, ipIn, newRunId, run } from '../harness/index.js';
import { linkIn } from './link-reads.js';

const ns = `${newRunId()}s`;
const ip = new Ip(new IpSessionRunner(new ExecaRunner()), ns);

beforeAll(() => createNetns(ns));
afterAll(() => deleteNetns(ns));

describe('IpSessionRunner', () => {
  it('runs the lines of a batch', async () => {
    await ip.batch([['link', 'add', 'a1', 'type', 'veth', 'peer', 'name', 'a2'], ['link', 'set', 'dev', 'a1', 'up']]);
    expect((await linkIn(ns, 'a1'))?.flags).toContain('UP');
  });

  it('stops at the first failing line and reports what ip printed', async () => {
    const failing = ip.batch([
      ['link', 'add', 'b1', 'type', 'veth', 'peer', 'name', 'b2'],
      ['link', 'add', 'a1', 'type', 'veth', 'peer', 'name', 'a2'],
      ['link', 'add', 'c1', 'type', 'veth', 'peer', 'name', 'c2'],
    ]);
    await expect(failing).rejects.toBeInstanceOf(CommandError);
    await expect(failing).rejects.toMatchObject({ stderr: expect.stringMatching(/^RTNETLINK answers: File exists\n$/) });
    expect(await linkIn(ns, 'b1')).toBeDefined();
    expect(await linkIn(ns, 'c1')).toBeUndefined();
  });

  it('keeps serving after a failure, and reads still go through a plain ip', async () => {
    await ip.batch([['link', 'add', 'd1', 'type', 'veth', 'peer', 'name', 'd2']]);
    expect(await ip.link('d1')).toMatchObject({ ifname: 'd1' });
  });

  it('runs concurrent requests on processes of their own, each request\'s lines in order', async () => {
    await Promise.all(['e', 'f', 'g'].map((n) => ip.batch([['link', 'add', `${n}1`, 'type', 'veth', 'peer', 'name', `${n}2`], ['link', 'set', 'dev', `${n}1`, 'up']])));
    for (const n of ['e', 'f', 'g']) expect((await linkIn(ns, `${n}1`))?.flags).toContain('UP');
    expect((await sessionPids()).length).toBeGreaterThan(1);
  });
});

/** PIDs of this file's own `ip -n <ns> -force -batch -` processes (the netns name is unique to this run). */
async function sessionPids(): Promise<number[]> {
  const r = await run('pgrep', ['-f', `^ip -n ${ns} -force -batch -$`]);
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

describe('IpSessionRunner when the world changes under it', () => {
  it('attaches to a bridge that was deleted and re-made outside tsnet (ip caches its old index)', async () => {
    await ipIn(ns, ['link', 'add', 'rebr', 'type', 'bridge']);
    await ip.batch([['link', 'add', 'h1', 'master', 'rebr', 'type', 'veth', 'peer', 'name', 'h2']]);
    await ipIn(ns, ['link', 'del', 'rebr']);
    await ipIn(ns, ['link', 'add', 'rebr', 'type', 'bridge']);
    await ip.batch([['link', 'add', 'i1', 'master', 'rebr', 'type', 'veth', 'peer', 'name', 'i2']]);
    expect((await linkIn(ns, 'i1'))?.master).toBe('rebr');
  });

  it('serves the next request after its ip process died, and fails none of the queued ones', async () => {
    await ip.batch([['link', 'add', 'j1', 'type', 'veth', 'peer', 'name', 'j2']]);
    const [pid] = await sessionPids();
    expect(pid).toBeDefined();
    // Requests sent at once, before the daemon has seen the process exit, must not fail or hang.
    process.kill(pid!, 'SIGKILL');
    await Promise.all(['k', 'l', 'm'].map((n) => ip.batch([['link', 'add', `${n}1`, 'type', 'veth', 'peer', 'name', `${n}2`]])));
    for (const n of ['k', 'l', 'm']) expect(await linkIn(ns, `${n}1`)).toBeDefined();
  });

  it('reports a failing line even when a link carries the old sentinel name as an altname', async () => {
    await ipIn(ns, ['link', 'property', 'add', 'dev', 'lo', 'altname', 'tsnet-session-end']);
    await expect(ip.batch([['link', 'set', 'dev', 'no-such-link', 'up']])).rejects.toMatchObject({ stderr: expect.stringMatching(/Cannot find device "no-such-link"/) });
    await ip.batch([['link', 'add', 'n1', 'type', 'veth', 'peer', 'name', 'n2']]);
    expect(await linkIn(ns, 'n1')).toBeDefined();
  });
});
