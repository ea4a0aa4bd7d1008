// The long-lived `ip -batch` session against a real netns: writes land, the
// first failing line stops its request with ip's own message, and the
// session keeps serving after a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpSessionRunner } from '../../src/sys/ip-session.js';
import { CommandError, ExecaRunner, Ip } from '../../src/sys/index.js';
import { createNetns, deleteNetns, newRunId } from '../harness/index.js';
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

  it('serialises concurrent requests', async () => {
    await Promise.all(['e', 'f', 'g'].map((n) => ip.batch([['link', 'add', `${n}1`, 'type', 'veth', 'peer', 'name', `${n}2`]])));
    for (const n of ['e', 'f', 'g']) expect(await linkIn(ns, `${n}1`)).toBeDefined();
  });
});
