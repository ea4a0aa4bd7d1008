// Which bridges tsnet keeps its networks out of: what Docker's API says,
// joined by the kernel's links with dockerd's default names.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { bridgeOf, DockerBridges } from '../../src/docker/docker-bridges.js';

const quiet = pino({ level: 'silent' });

function tracker(links: string[]) {
  const applied: string[][] = [];
  const nft = { fails: false };
  let reads = 0;
  const bridges = new DockerBridges(
    {
      linkNames: async () => {
        reads++;
        return new Set(links);
      },
      apply: async (names) => {
        if (nft.fails) throw new Error('nft failed');
        applied.push([...names]);
      },
    },
    quiet,
  );
  return { bridges, applied, nft, reads: () => reads };
}

describe("Docker's bridges", () => {
  it("names a bridge network's bridge as dockerd does, and no other driver's network", () => {
    expect(bridgeOf({ Id: '0123456789abcdef', Name: 'web', Driver: 'bridge' })).toBe('br-0123456789ab');
    expect(bridgeOf({ Id: 'ffff', Name: 'bridge', Driver: 'bridge' })).toBe('docker0');
    expect(bridgeOf({ Id: 'ffff', Name: 'lan', Driver: 'bridge', Options: { 'com.docker.network.bridge.name': 'lan0' } })).toBe('lan0');
    expect(bridgeOf({ Id: 'ffff', Name: 'ts', Driver: 'tsnet' })).toBeUndefined();
    expect(bridgeOf({ Id: 'ffff', Name: 'host', Driver: 'host' })).toBeUndefined();
  });

  it("joins the API's names with the kernel's default-named bridges, leaving others' links alone", async () => {
    const t = tracker(['eth1', 'docker0', 'br-0123456789ab', 'br-lan', 'tsbr-0123456789']);
    await t.bridges.update();
    expect(t.applied).toEqual([['br-0123456789ab', 'docker0']]);
    await t.bridges.update(['lan0', 'bad name; drop']);
    expect(t.applied.at(-1)).toEqual(['br-0123456789ab', 'docker0', 'lan0']);
  });

  it('reads nothing again when the API says the same (it speaks at every container start)', async () => {
    const t = tracker(['docker0']);
    await t.bridges.update(['lan0']);
    await t.bridges.update(['lan0']);
    expect(t.reads()).toBe(1);
    expect(t.applied).toEqual([['docker0', 'lan0']]);
  });

  it('keeps going after a failed apply, and applies again at the next change', async () => {
    const t = tracker(['docker0']);
    t.nft.fails = true;
    await expect(t.bridges.update()).resolves.toBeUndefined();
    expect(t.applied).toEqual([]);
    t.nft.fails = false;
    await t.bridges.update(['lan0']);
    expect(t.applied).toEqual([['docker0', 'lan0']]);
  });
});
