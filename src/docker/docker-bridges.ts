import type { Logger } from 'pino';
import type { NetworkSummary } from './messages.js';

/** dockerd's names for its bridges unless a network names its own: docker0, and br- with the network ID's first 12 digits. */
const DEFAULT_NAME = /^(docker0|br-[0-9a-f]{12})$/;

/** The Linux bridge of one of Docker's own bridge networks; undefined for other drivers' networks. */
export function bridgeOf(network: NetworkSummary): string | undefined {
  if (network.Driver !== 'bridge') return undefined;
  return network.Options?.['com.docker.network.bridge.name'] ?? (network.Name === 'bridge' ? 'docker0' : `br-${network.Id.slice(0, 12)}`);
}

/** Interface names as the kernel takes them: anything else from Docker's API is not a bridge of this host. */
const LINK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

export interface DockerBridgeSources {
  /** The host's link names: the bridges that carry dockerd's default names count without its API. */
  linkNames: () => Promise<ReadonlySet<string>>;
  /** Where the names go: the firewall, which keeps tsnet's networks out of them. */
  apply: (names: readonly string[]) => Promise<void>;
}

/**
 * Keeps the firewall's list of Docker's bridges: from Docker's API (which
 * knows bridges with names of their own) and from the kernel (which knows
 * them while the API is down or not mounted). Updates run one at a time and
 * the last one wins; a failure is logged, and the next change tries again.
 */
export class DockerBridges {
  private running: Promise<void> = Promise.resolve();
  private applied: string | undefined;
  /** What Docker's API said last (nothing before it answered). */
  private fromDocker: readonly string[] = [];

  constructor(
    private readonly sources: DockerBridgeSources,
    private readonly log: Logger,
  ) {}

  /**
   * Takes what Docker's API says now (if given), reads the kernel and
   * applies what changed; resolves when that is done. The same answer of
   * the API again (its listeners hear of every container start) reads nothing.
   */
  update(fromDocker?: readonly string[]): Promise<void> {
    if (fromDocker) {
      const valid = fromDocker.filter((name) => LINK_NAME.test(name));
      if (valid.join(' ') === this.fromDocker.join(' ')) return this.running;
      this.fromDocker = valid;
    }
    this.running = this.running.then(async () => {
      try {
        const kernel = [...(await this.sources.linkNames())].filter((name) => DEFAULT_NAME.test(name));
        const names = [...new Set([...this.fromDocker, ...kernel])].sort();
        if (names.join(' ') === this.applied) return;
        await this.sources.apply(names);
        this.applied = names.join(' ');
        this.log.info({ dockerBridges: names }, "tsnet's networks are kept out of Docker's bridges");
      } catch (error) {
        this.log.warn({ err: error }, "could not update the list of Docker's bridges");
      }
    });
    return this.running;
  }
}
