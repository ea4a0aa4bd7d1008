import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CommandError, type Runner } from './runner.js';

/**
 * Kernel parameters, keys in path form (`net/ipv4/ip_forward`: the slash
 * form keeps dots in interface names intact). Writing the value a key
 * already has changes nothing.
 */
export interface Sysctl {
  get(key: string): Promise<string>;
  set(values: Readonly<Record<string, string>>): Promise<void>;
  /** Like set, for undo: a key whose interface is already gone is done. */
  reset(values: Readonly<Record<string, string>>): Promise<void>;
}

/**
 * The daemon's own netns, through /proc/sys: no program start on the
 * request path (a `sysctl` process cost a create and a delete ~5 ms each).
 * /proc/sys/net shows the netns of the process that opens it.
 */
export class ProcSysctl implements Sysctl {
  /** `root`: /proc/sys, or a directory standing in for it (unit tests). */
  constructor(private readonly root = '/proc/sys') {}

  async get(key: string): Promise<string> {
    return (await readFile(this.path(key), 'utf8')).trim();
  }

  async set(values: Readonly<Record<string, string>>): Promise<void> {
    for (const [key, value] of Object.entries(values)) await writeFile(this.path(key), `${value}\n`);
  }

  async reset(values: Readonly<Record<string, string>>): Promise<void> {
    try {
      await this.set(values);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  private path(key: string): string {
    // Keys are tsnet's own, with generated interface names; a `..` would leave /proc/sys.
    if (key.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new Error(`not a sysctl key: ${JSON.stringify(key)}`);
    return join(this.root, key);
  }
}

/**
 * Through the `sysctl` program and a Runner: for a plugin that programs
 * another netns than its own (the integration tests run every program there
 * with `ip netns exec`), and for recorded command plans.
 */
export class CommandSysctl implements Sysctl {
  constructor(private readonly runner: Runner) {}

  async get(key: string): Promise<string> {
    return (await this.runner.run('sysctl', ['-n', key])).stdout.trim();
  }

  /** Every key in one `sysctl` process. */
  async set(values: Readonly<Record<string, string>>): Promise<void> {
    const words = Object.entries(values).map(([key, value]) => `${key}=${value}`);
    if (words.length === 0) return;
    await this.runner.run('sysctl', ['-q', '-w', ...words]);
  }

  async reset(values: Readonly<Record<string, string>>): Promise<void> {
    try {
      await this.set(values);
    } catch (error) {
      if (!(error instanceof CommandError) || !/cannot stat .*: No such file or directory/.test(error.stderr)) throw error;
    }
  }
}
