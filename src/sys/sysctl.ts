import { CommandError, type Runner } from './runner.js';

/**
 * Kernel parameters, keys in path form (`net/ipv4/ip_forward`: the slash
 * form keeps dots in interface names intact). Reads and writes go through
 * the Runner (`sysctl`), so they act in the netns the runner targets and are
 * recorded in unit tests instead of touching the host.
 */
export class Sysctl {
  constructor(private readonly runner: Runner) {}

  async get(key: string): Promise<string> {
    return (await this.runner.run('sysctl', ['-n', key])).stdout.trim();
  }

  /** Writes every key in one `sysctl` process; writing the value a key already has changes nothing. */
  async set(values: Readonly<Record<string, string>>): Promise<void> {
    const words = Object.entries(values).map(([key, value]) => `${key}=${value}`);
    if (words.length === 0) return;
    await this.runner.run('sysctl', ['-q', '-w', ...words]);
  }

  /** Like set, for undo: a key whose interface is already gone is done. */
  async reset(values: Readonly<Record<string, string>>): Promise<void> {
    try {
      await this.set(values);
    } catch (error) {
      if (!(error instanceof CommandError) || !/cannot stat .*: No such file or directory/.test(error.stderr)) throw error;
    }
  }
}
