import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Ip } from '../../src/sys/index.js';
import { LinkReaper } from '../../src/sys/index.js';

/** An Ip whose deletions finish when the test says so: each call's names, and its resolve. */
function heldIp() {
  const calls: Array<{ names: string[]; finish: () => void }> = [];
  const ip = {
    deleteLinks: (names: readonly string[]) => new Promise<void>((finish) => calls.push({ names: [...names], finish })),
  } as unknown as Ip;
  return { ip, calls };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('LinkReaper', () => {
  it('deletes what is retired while a batch runs in the next, at most 8 a batch', async () => {
    const { ip, calls } = heldIp();
    const reaper = new LinkReaper(ip, pino({ level: 'silent' }));
    reaper.retire(['a']);
    reaper.retire(Array.from({ length: 10 }, (_, i) => `b${i}`));
    expect(calls.map((c) => c.names.length)).toEqual([1]);
    calls[0]!.finish();
    await tick();
    expect(calls.map((c) => c.names.length)).toEqual([1, 8]);
    calls[1]!.finish();
    await tick();
    expect(calls[2]!.names).toEqual(['b8', 'b9']);
    expect(reaper.has('b9')).toBe(true);
  });

  it('settles once the links retired before are gone, whatever is retired after (exiting containers never hold a create back)', async () => {
    const { ip, calls } = heldIp();
    const reaper = new LinkReaper(ip, pino({ level: 'silent' }));
    reaper.retire(['bridge']);
    let settled = false;
    const waiting = reaper.settled().then(() => (settled = true));
    reaper.retire(['veth1']);
    calls[0]!.finish();
    await waiting;
    expect(settled).toBe(true);
    // veth1's batch is still running: a later settled() waits for it.
    let later = false;
    void reaper.settled().then(() => (later = true));
    await tick();
    expect(later).toBe(false);
    calls[1]!.finish();
    await tick();
    expect(later).toBe(true);
  });
});
