import type { Logger } from 'pino';
import type { DriftView } from '../../drivers/driver.js';
import type { NetworkService } from '../core/network-service.js';
import type { Xfrm } from '../sys/xfrm.js';
import { describeDrift, type Drift, type Firewall, type ForwardingTable, type Ip, isRuleDrift, readKernelView } from '../sys/index.js';

/** Enough to keep both cores busy with programs (ip, nft, iptables-restore) while one waits on the kernel. */
const REPAIRS_AT_ONCE = 4;

/** What one repair pass found and did. */
export interface RepairReport {
  /** The differences found, per network, that its restore repaired. */
  repaired: Drift[];
  /** What still differs afterwards (a repair that failed or could not help). */
  remaining: Drift[];
}

/**
 * Compares every network's record with the kernel (`tsnet doctor`) and makes
 * the kernel match again where it differs (`doctor --fix`, the drift
 * watcher). One read of links, addresses, routes, overlay entries and rules serves every
 * network; a network is read again under its lock only if a request changed
 * it meanwhile.
 */
export class Reconciler {
  constructor(
    private readonly networks: NetworkService,
    private readonly ip: Ip,
    private readonly fdb: ForwardingTable,
    private readonly xfrm: Xfrm,
    private readonly firewall: Firewall,
    private readonly log: Logger,
    /** Told of every difference repaired (metrics). */
    private readonly onRepaired: (found: readonly Drift[]) => void = () => undefined,
  ) {}

  private readonly read = async (): Promise<DriftView> => {
    const [kernel, rules] = await Promise.all([readKernelView(this.ip, this.fdb, this.xfrm), this.firewall.snapshot()]);
    return { kernel, rules };
  };

  /** The differences now; changes nothing. */
  async check(): Promise<Drift[]> {
    return this.networks.drift(await this.read());
  }

  /** Repairs every network that differs, each under its lock, a few at a time; then looks again. */
  async fix(reason: string): Promise<RepairReport> {
    const generations = this.networks.generationsNow();
    const view = await this.read();
    const found = this.networks.drift(view);
    if (found.length === 0) return { repaired: [], remaining: [] };
    // Someone changed tsnet's rules: the backend must not trust what it believes they are.
    if (found.some(isRuleDrift)) this.firewall.forgetKernel();
    const repaired: Drift[] = [];
    // Networks repair independently (each under its own lock); a few at a time, as a flushed ruleset touches them all.
    const queue = [...new Set(found.map((d) => d.network))];
    const worker = async () => {
      for (let networkId = queue.shift(); networkId !== undefined; networkId = queue.shift()) {
        try {
          const mine = await this.networks.repair(networkId, view, generations, this.read);
          for (const d of mine) this.log.warn({ network: networkId, object: d.object, problem: d.problem, detail: d.detail, reason }, `repaired: ${describeDrift(d)}`);
          repaired.push(...mine);
        } catch (error) {
          this.log.error({ err: error, network: networkId, reason }, 'could not repair the network');
        }
      }
    };
    await Promise.all(Array.from({ length: REPAIRS_AT_ONCE }, worker));
    this.onRepaired(repaired);
    return { repaired, remaining: await this.check() };
  }
}
