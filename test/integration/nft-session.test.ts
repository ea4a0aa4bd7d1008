// The long-lived `nft -i` session against a real netns: a transaction goes
// in whole or not at all with nft's own message, a long one (a restore's)
// fits on its line, the session follows changes someone else made, and a
// session that dies is replaced without losing the transaction; an nft
// that cannot run a session gets its transactions as `nft -f -` again.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NftSessionRunner } from '../../src/sys/nft-session.js';
import { CommandError, ExecaRunner, RecordingRunner } from '../../src/sys/index.js';
import { createNetns, deleteNetns, execInNetnsOk, netnsPath, newRunId, run } from '../harness/index.js';

const ns = `${newRunId()}f`;
let starts = 0;
const runner = new NftSessionRunner(new ExecaRunner(), () => starts++, ['ip', 'netns', 'exec', ns]);
const nft = (...lines: string[]) => runner.run('nft', ['-f', '-'], { input: `${lines.join('\n')}\n` });
const elements = async (set: string) => {
  const shown = JSON.parse((await execInNetnsOk(ns, ['nft', '-j', 'list', 'set', 'inet', 'tst', set])).stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  return shown.nftables.find((o) => o.set)?.set?.elem ?? [];
};

/** The `nft -i` processes in this file's netns (other tests' daemons have theirs elsewhere). */
async function sessionPids(): Promise<number[]> {
  const ours = `net:[${statSync(netnsPath(ns)).ino}]`;
  const pids = (await run('pgrep', ['-x', 'nft'])).stdout.split('\n').filter(Boolean).map(Number);
  return pids.filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/ns/net`) === ours && readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'nft\0-i\0';
    } catch {
      return false; // exited meanwhile
    }
  });
}

beforeAll(async () => {
  await createNetns(ns);
  await nft('add table inet tst', 'add set inet tst names { type ifname; }', 'add set inet tst nets { type ifname . ipv4_addr; flags interval; }', 'add chain inet tst fw { type filter hook forward priority filter; policy accept; }');
});
afterAll(() => deleteNetns(ns));

describe('NftSessionRunner', () => {
  it('runs a transaction of several commands, chains with their own semicolons among them', async () => {
    await nft('add element inet tst names { "a1" }', 'add element inet tst nets { "a1" . 10.1.0.0/24 }', 'add rule inet tst fw iifname @names accept');
    expect(await elements('names')).toEqual(['a1']);
    expect(await elements('nets')).toHaveLength(1);
    expect(starts).toBe(1);
  });

  it('takes none of a failing transaction, and reports what nft printed', async () => {
    const failing = nft('add element inet tst names { "b1" }', 'delete element inet tst names { "nosuch" }');
    await expect(failing).rejects.toBeInstanceOf(CommandError);
    await expect(failing).rejects.toMatchObject({ stderr: expect.stringMatching(/^Error: Could not process rule: No such file or directory\n/) });
    expect(await elements('names')).toEqual(['a1']);
    // The same session goes on.
    await nft('add element inet tst names { "c1" }');
    expect(await elements('names')).toEqual(['a1', 'c1']);
    expect(starts).toBe(1);
  });

  it('takes a transaction of 2000 elements (~120 KB on its line)', async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `add element inet tst nets { "x${i}" . 10.${100 + (i >> 8)}.${i & 255}.0/24 }`);
    await nft(...lines);
    expect(await elements('nets')).toHaveLength(2001);
  });

  it('follows a ruleset someone else flushed, and replaces a session that died without losing the transaction', async () => {
    await execInNetnsOk(ns, ['nft', 'flush', 'ruleset']);
    await nft('add table inet tst', 'add set inet tst names { type ifname; }', 'add element inet tst names { "d1" }');
    expect(await elements('names')).toEqual(['d1']);
    const pids = await sessionPids();
    expect(pids).toHaveLength(1);
    process.kill(pids[0]!, 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await nft('add element inet tst names { "e1" }');
    expect(await elements('names')).toEqual(['d1', 'e1']);
    expect(starts).toBe(2);
  });
});

describe('NftSessionRunner where nft has no interactive CLI', () => {
  it('falls back to one `nft -f -` per transaction once a session dies at its start twice', async () => {
    let tries = 0;
    const plain = new RecordingRunner();
    // `false nft -i`: a process that exits before it reads a line, as an nft built without its CLI.
    const fallback = new NftSessionRunner(plain, () => tries++, ['false']);
    await fallback.run('nft', ['-f', '-'], { input: 'add table inet t\nadd set inet t s { type ifname; }\n' });
    await fallback.run('nft', ['-f', '-'], { input: 'add element inet t s { "a" }\n' });
    expect(plain.lines()).toEqual(['nft -f -\nadd table inet t\nadd set inet t s { type ifname; }', 'nft -f -\nadd element inet t s { "a" }']);
    expect(tries).toBe(2);
  });
});
