import { readFile } from 'node:fs/promises';
import type { Runner } from './runner.js';

/**
 * Kernel parameters, keys in path form (`net/ipv4/ip_forward`: the slash
 * form keeps dots in interface names intact).
 * Reads come from /proc/sys of this process; writes go through the Runner
 * (`sysctl -w`, all keys of a call in one process), so they can target
 * another netns and are recorded in unit tests instead of touching the host.
 */
export class Sysctl {
  constructor(
    private readonly runner: Runner,
    /** Run writes under `ip netns exec <netns>`. */
    private readonly netns?: string,
    private readonly root = '/proc/sys',
  ) {}

  async get(key: string): Promise<string> {
    return (await readFile(`${this.root}/${key}`, 'utf8')).trim();
  }

  /** Writes every key in one `sysctl` process; writing the value a key already has changes nothing. */
  async set(values: Readonly<Record<string, string>>): Promise<void> {
    const words = Object.entries(values).map(([key, value]) => `${key}=${value}`);
    if (words.length === 0) return;
    const args = ['-q', '-w', ...words];
    if (this.netns) await this.runner.run('ip', ['netns', 'exec', this.netns, 'sysctl', ...args]);
    else await this.runner.run('sysctl', args);
  }
}
