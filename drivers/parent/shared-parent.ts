import { RequestError } from '../../src/errors.js';
import { KeyedMutex } from '../../src/mutex.js';
import { CommandError, type Ip } from '../../src/sys/index.js';
import { PARENT_OPTIONS, type ParentNetwork } from './parent-config.js';

/** The physical link under a parent: networks on eth1, eth1.10 and eth1.20 all share eth1's pieces. */
const baseOf = (network: ParentNetwork) => network.config.vlan?.base ?? network.config.parent;

/**
 * The parent's shared pieces: the 802.1Q subinterface tsnet creates and the
 * PROMISC flag it holds. Several networks can share them, so what stays and
 * what goes is derived from the stored networks that remain, never from a
 * counter that a crash could leave wrong.
 */
export class SharedParent {
  /** Networks on one base link take and give back its pieces one at a time. */
  private readonly locks = new KeyedMutex();

  constructor(private readonly ip: Ip) {}

  /** Creates the VLAN subinterface if tsnet owns it and it is missing, then sets the held PROMISC flags. */
  acquire(network: ParentNetwork): Promise<void> {
    return this.locks.run(baseOf(network), () => this.acquireNow(network));
  }

  private async acquireNow(network: ParentNetwork): Promise<void> {
    const { parent, vlan, promisc } = network.config;
    if (vlan?.created && !(await this.ip.link(parent))) {
      try {
        await this.ip.batch([
          ['link', 'add', 'link', vlan.base, 'name', parent, 'type', 'vlan', 'id', String(vlan.id)],
          ['link', 'set', 'dev', parent, 'up'],
        ]);
      } catch (error) {
        if (!(error instanceof CommandError)) throw error;
        const key = network.options[PARENT_OPTIONS.vlan] !== undefined ? PARENT_OPTIONS.vlan : PARENT_OPTIONS.parent;
        throw new RequestError(key, `cannot create VLAN interface ${parent} on ${vlan.base} (does the kernel have 8021q?): ${error.stderr.trim()}`);
      }
    }
    await this.ip.batch(promisc.map((hold) => ['link', 'set', 'dev', hold.iface, 'promisc', 'on']));
  }

  /**
   * Gives back what no remaining network needs: PROMISC to its original
   * setting, then the subinterface. `others` is read under the base link's
   * lock, so a network created meanwhile on the same parent keeps its pieces.
   */
  release(network: ParentNetwork, others: () => readonly ParentNetwork[]): Promise<void> {
    return this.locks.run(baseOf(network), () => this.releaseNow(network, others()));
  }

  private async releaseNow(network: ParentNetwork, remaining: readonly ParentNetwork[]): Promise<void> {
    const { parent, vlan, promisc } = network.config;
    for (const hold of promisc) {
      if (remaining.some((n) => n.config.promisc.some((h) => h.iface === hold.iface))) continue;
      await this.ip.undo(['link', 'set', 'dev', hold.iface, 'promisc', hold.wasOn ? 'on' : 'off']);
    }
    const stillUsed = remaining.some((n) => n.config.parent === parent || n.config.vlan?.base === parent);
    if (vlan?.created && !stillUsed) await this.ip.deleteLinks([parent]);
  }
}
