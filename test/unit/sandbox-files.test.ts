import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxFiles } from '../../drivers/sandbox.js';

const dir = mkdtempSync(join(tmpdir(), 'tsnet-sandbox-'));
const netns = join(dir, 'seen-from-plugin', 'netns');
mkdirSync(netns, { recursive: true });
writeFileSync(join(netns, 'live0123'), '');
writeFileSync(join(dir, 'plain-live'), '');

describe('SandboxFiles', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('looks at the path dockerd gave when no netns dir is set', () => {
    const files = new SandboxFiles();
    expect(files.exists(join(dir, 'plain-live'))).toBe(true);
    expect(files.exists(join(dir, 'plain-gone'))).toBe(false);
  });

  it("finds dockerd's sandbox by its name in the netns dir this daemon sees", () => {
    const files = new SandboxFiles(netns);
    expect(files.exists('/var/run/docker/netns/live0123')).toBe(true);
    expect(files.exists('/var/run/docker/netns/gone4567')).toBe(false);
  });

  it('counts every sandbox alive when the netns dir is not there (a wrong mount must not drop running containers)', () => {
    const files = new SandboxFiles(join(dir, 'no-such-dir'));
    expect(files.exists('/var/run/docker/netns/gone4567')).toBe(true);
  });
});
