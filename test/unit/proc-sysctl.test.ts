import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ProcSysctl } from '../../src/sys/index.js';

/** ProcSysctl on a directory standing in for /proc/sys: keys in slash form are files under it. */
describe('ProcSysctl', () => {
  const root = mkdtempSync(join(tmpdir(), 'tsnet-sysctl-'));
  const file = (key: string, value?: string) => {
    const path = join(root, key);
    if (value !== undefined) {
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, value);
    }
    return path;
  };
  afterEach(() => rmSync(join(root, 'net'), { recursive: true, force: true }));

  it('reads a key without its newline and writes each key of a set', async () => {
    file('net/ipv4/ip_local_port_range', '32768\t60999\n');
    file('net/ipv4/ip_forward', '0\n');
    file('net/ipv4/conf/tsbr-0a1b2c3d4e.x/route_localnet', '0\n');
    const sysctl = new ProcSysctl(root);
    expect(await sysctl.get('net/ipv4/ip_local_port_range')).toBe('32768\t60999');
    await sysctl.set({ 'net/ipv4/ip_forward': '1', 'net/ipv4/conf/tsbr-0a1b2c3d4e.x/route_localnet': '1' });
    expect(readFileSync(file('net/ipv4/ip_forward'), 'utf8')).toBe('1\n');
    // The slash form keeps a dot in an interface name part of the name.
    expect(readFileSync(file('net/ipv4/conf/tsbr-0a1b2c3d4e.x/route_localnet'), 'utf8')).toBe('1\n');
  });

  it("fails a set of a missing key, while a reset of a gone interface's key is done", async () => {
    const sysctl = new ProcSysctl(root);
    await expect(sysctl.set({ 'net/ipv4/conf/gone0/route_localnet': '1' })).rejects.toThrow(/ENOENT/);
    await expect(sysctl.reset({ 'net/ipv4/conf/gone0/route_localnet': '0' })).resolves.toBeUndefined();
  });

  it('refuses a key that would leave its root', async () => {
    const sysctl = new ProcSysctl(join(root, 'net'));
    await expect(sysctl.get('../../etc/passwd')).rejects.toThrow(/not a sysctl key/);
    await expect(sysctl.set({ 'ipv4//ip_forward': '1' })).rejects.toThrow(/not a sysctl key/);
  });
});
