import type { Family, Firewall, FirewallNetwork, PortForward } from '../firewall.js';
import type { Runner } from '../runner.js';
import type { Sysctl } from '../sysctl.js';
import { basePlan, dnatRules, type HookPlan, NETWORK_CHAIN_PREFIX, networkChains, networkPlan } from './plan.js';
import { hookText, parseSave, RestoreScript, type SavedTables } from './restore-script.js';

/**
 * Seconds iptables-restore waits for the xtables lock (legacy backend) that
 * dockerd, kube-proxy or fail2ban may hold; older iptables fail at once
 * without --wait, and an unbounded wait would hang dockerd's request.
 */
const LOCK_WAIT_SECONDS = '10';

const TOOLS: Record<Family, { save: string; restore: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

const routeLocalnet = (network: FirewallNetwork) => `net/ipv4/conf/${network.bridge}/route_localnet`;

function families(network: FirewallNetwork): Family[] {
  return ([4, 6] as const).filter((f) => network.subnets[f] !== undefined);
}

/**
 * The firewall on iptables: plain `iptables*` from PATH, as dockerd calls
 * them, so tsnet lands in whichever backend (nft or legacy) dockerd uses.
 * Each call is one `iptables-restore --noflush` per family; reads (to add
 * hooks only once) use `iptables-save`.
 */
export class IptablesFirewall implements Firewall {
  constructor(
    private readonly runner: Runner,
    private readonly sysctl: Sysctl,
  ) {}

  private run(file: string, args: string[], input?: string) {
    return this.runner.run(file, args, input === undefined ? {} : { input });
  }

  private async save(family: Family): Promise<SavedTables> {
    return parseSave((await this.run(TOOLS[family].save, [])).stdout);
  }

  private async restore(family: Family, script: RestoreScript): Promise<void> {
    if (!script.empty) await this.run(TOOLS[family].restore, ['--wait', LOCK_WAIT_SECONDS, '--noflush'], script.text());
  }

  async setupNetwork(network: FirewallNetwork, forwards: readonly PortForward[]): Promise<void> {
    for (const family of families(network)) {
      const saved = await this.save(family);
      const script = new RestoreScript();
      const base = basePlan(family);
      for (const chain of base.chains) if (!saved[chain.table].chains.has(chain.name)) script.replaceChain(chain);
      const own = networkPlan(network, family, forwards);
      own.chains.forEach((chain) => script.replaceChain(chain));
      for (const hook of [...base.hooks, ...own.hooks]) if (!saved[hook.table].rules.has(hookText(hook))) script.addHook(hook);
      await this.restore(family, script);
    }
    // Only now that the 127/8 guard rule is in place.
    await this.enableForwarding(network);
  }

  async setPortForwards(network: FirewallNetwork, forwards: readonly PortForward[]): Promise<void> {
    if (network.internal) return;
    for (const family of families(network)) {
      await this.restore(family, new RestoreScript().replaceChain({ table: 'nat', name: networkChains(network.id).dnat, rules: dnatRules(family, forwards) }));
    }
  }

  async teardownNetwork(network: FirewallNetwork): Promise<void> {
    // Before the guard rule goes: route_localnet=1 without it would open the host's 127/8 services to the bridge.
    if (network.subnets[4] && !network.internal) await this.sysctl.reset({ [routeLocalnet(network)]: network.routeLocalnetBefore ? '1' : '0' });
    for (const family of families(network)) {
      const saved = await this.save(family);
      const script = new RestoreScript();
      const own = networkPlan(network, family, []);
      const exists = (chain: { table: 'filter' | 'nat'; name: string }) => saved[chain.table].chains.has(chain.name);
      const hooked = (hook: HookPlan) => saved[hook.table].rules.has(hookText(hook));
      // The last network takes the shared chains along (flushed first, which drops its hooks): a removed plugin leaves no TSNET chain.
      const last = ![...saved.filter.chains].some((c) => c.startsWith(NETWORK_CHAIN_PREFIX) && c !== networkChains(network.id).forward);
      const base = basePlan(family);
      if (last) base.chains.filter(exists).forEach((chain) => script.replaceChain(chain));
      else own.hooks.filter(hooked).forEach((hook) => script.deleteHook(hook));
      own.chains.filter(exists).forEach((chain) => script.deleteChain(chain.table, chain.name));
      if (last) {
        base.hooks.filter(hooked).forEach((hook) => script.deleteHook(hook));
        base.chains.filter(exists).forEach((chain) => script.deleteChain(chain.table, chain.name));
      }
      await this.restore(family, script);
    }
  }

  /** Routing between the bridge and the rest, and the loopback-source traffic of ports published on 127.0.0.1. */
  private async enableForwarding(network: FirewallNetwork): Promise<void> {
    if (network.internal) return;
    await this.sysctl.set({
      ...(network.subnets[4] ? { 'net/ipv4/ip_forward': '1', [routeLocalnet(network)]: '1' } : {}),
      ...(network.subnets[6] ? { 'net/ipv6/conf/all/forwarding': '1' } : {}),
    });
  }
}
