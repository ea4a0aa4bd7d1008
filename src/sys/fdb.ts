import { CommandError, type Runner } from './runner.js';

/**
 * bridge(8)'s forwarding table: `bridge -batch -`, one process per change
 * set (the ip session cannot take fdb lines). Entries are always replaced,
 * never appended: `append` would leave a moved MAC sent to both hosts.
 */
export class ForwardingTable {
  constructor(
    private readonly runner: Runner,
    /** `bridge -n <netns>`: inside a named netns (tests). */
    private readonly netns?: string,
  ) {}

  async batch(lines: ReadonlyArray<readonly string[]>): Promise<void> {
    if (lines.length === 0) return;
    await this.runner.run('bridge', [...(this.netns ? ['-n', this.netns] : []), '-batch', '-'], { input: lines.map((l) => l.join(' ')).join('\n') + '\n' });
  }

  /** The destinations the device's own (`self`) entries send MACs to: MAC → underlay address. */
  async destinations(device: string): Promise<Map<string, string>> {
    const { stdout } = await this.runner.run('bridge', [...(this.netns ? ['-n', this.netns] : []), '-json', 'fdb', 'show', 'dev', device]);
    const entries = JSON.parse(stdout) as Array<{ mac: string; dst?: string; flags?: string[] }>;
    return new Map(entries.filter((e) => e.dst !== undefined && e.flags?.includes('self')).map((e) => [e.mac, e.dst!]));
  }

  /** Deletes a MAC's entry on `device`; one already gone is success. */
  async remove(device: string, mac: string): Promise<void> {
    try {
      await this.batch([['fdb', 'del', mac, 'dev', device, 'self']]);
    } catch (error) {
      if (!(error instanceof CommandError) || !/No such file or directory/.test(error.stderr)) throw error;
    }
  }
}
