import { ProgramNotFound, type Runner } from './runner.js';

/**
 * A link's offload features, through ethtool(8): iproute2 cannot change
 * them. Only needed by the options that turn one off, so a host without
 * ethtool is refused when such a network is created, never before.
 */
export class Offloads {
  constructor(private readonly runner: Runner) {}

  /** Whether ethtool is there to change features. */
  async available(): Promise<boolean> {
    try {
      await this.runner.run('ethtool', ['--version']);
      return true;
    } catch (error) {
      if (error instanceof ProgramNotFound) return false;
      throw error;
    }
  }

  /** `ethtool -K dev feature on|off …`; setting a feature to what it is already is no error. */
  async set(dev: string, features: Readonly<Record<string, boolean>>): Promise<void> {
    const args = Object.entries(features).flatMap(([feature, on]) => [feature, on ? 'on' : 'off']);
    await this.runner.run('ethtool', ['-K', dev, ...args]);
  }
}
