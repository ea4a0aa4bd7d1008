import type { Drift } from '../drift.js';
import type { EndpointForwards, Family, Firewall, FirewallNetwork, PortForward, RuleSnapshot } from '../firewall.js';
import { KeyedMutex } from '../../mutex.js';
import type { Runner } from '../runner.js';
import { enableForwarding, giveBackRouteLocalnet } from '../forwarding.js';
import type { Sysctl } from '../sysctl.js';
import { basePlan, type ChainPlan, dnatRules, dockerChain, type HookPlan, NETWORK_CHAIN_PREFIX, NETWORK_CHAIN, networkChains, networkPlan, type Rule, SHARED_CHAINS, TABLES } from './plan.js';
import { forwardHookPosition, hookText, iptablesRestore, iptablesSave, removeIptablesChains, RestoreScript, ruleText, type SavedTables } from './restore-script.js';
import { iptablesDrift, type IptablesSnapshot } from './rule-drift.js';

/** The key of the shared chains' lock. */
const SHARED = 'shared chains';

function families(network: FirewallNetwork): Family[] {
  return ([4, 6] as const).filter((f) => network.subnets[f] !== undefined);
}

/** The key of a rule among a chain's rules. */
const textOf = (rule: Rule) => rule.join(' ');

/**
 * The firewall on iptables: plain `iptables*` from PATH, as dockerd calls
 * them, so tsnet lands in whichever backend (nft or legacy) dockerd uses.
 * Each call is one `iptables-restore --noflush` per family; reads (to add
 * hooks only once) use `iptables-save`. For hosts without nftables; the cost
 * of a restore grows with the host's whole rule set (see ../nftables/).
 */
export class IptablesFirewall implements Firewall {
  /** Setting up and tearing down read the shared chains, then write them: one network at a time. */
  private readonly shared = new KeyedMutex();
  /** The DNAT rules written per network, endpoint and family: a change of an endpoint's ports writes only its difference. */
  private readonly dnat = new Map<string, Map<string, Partial<Record<Family, Rule[]>>>>();
  /** Docker's bridges: TSNET-DOCKER's drops, written whole whenever a network is set up. */
  private dockerBridges: readonly string[] = [];

  constructor(
    private readonly runner: Runner,
    private readonly sysctl: Sysctl,
  ) {}

  private save(family: Family): Promise<SavedTables> {
    return iptablesSave(this.runner, family);
  }

  private restore(family: Family, script: RestoreScript): Promise<void> {
    return iptablesRestore(this.runner, family, script);
  }

  async setupNetwork(network: FirewallNetwork, forwards: EndpointForwards): Promise<void> {
    const all = [...forwards.values()].flat();
    await this.shared.run(SHARED, async () => {
      for (const family of families(network)) {
        const saved = await this.save(family);
        const script = new RestoreScript();
        const base = basePlan(this.dockerBridges);
        for (const chain of base.chains) if (!saved[chain.table].chains.has(chain.name) || chain.name === SHARED_CHAINS.docker) script.replaceChain(chain);
        const own = networkPlan(network, family, all);
        own.chains.forEach((chain) => script.replaceChain(chain));
        for (const hook of [...base.hooks, ...own.hooks]) {
          if (!saved[hook.table].rules.has(hookText(hook))) script.addHook(hook, hook.table === 'filter' && hook.chain === 'FORWARD' ? forwardHookPosition(saved.filter) : 1);
        }
        await this.restore(family, script);
      }
    });
    const written = new Map([...forwards].map(([endpointId, mine]) => [endpointId, this.dnatOf(network, mine)]));
    this.dnat.set(network.id, network.internal ? new Map() : written);
    await enableForwarding(this.sysctl, network);
  }

  private dnatOf(network: FirewallNetwork, forwards: readonly PortForward[]): Partial<Record<Family, Rule[]>> {
    return Object.fromEntries(families(network).map((f) => [f, dnatRules(f, forwards)]));
  }

  /**
   * Deletes the endpoint's DNAT rules that went and appends its new ones;
   * other endpoints' rules are not touched. When that fails (the chain is not
   * what tsnet wrote: someone changed it), the chain is written whole.
   */
  async setPortForwards(network: FirewallNetwork, endpointId: string, forwards: readonly PortForward[]): Promise<void> {
    if (network.internal) return;
    const chain = networkChains(network.id).dnat;
    const written = this.dnat.get(network.id) ?? new Map<string, Partial<Record<Family, Rule[]>>>();
    const before = written.get(endpointId) ?? {};
    const next = new Map(written).set(endpointId, this.dnatOf(network, forwards));
    if (forwards.length === 0) next.delete(endpointId);
    for (const family of families(network)) {
      const rules = next.get(endpointId)?.[family] ?? [];
      const keep = new Set(rules.map(textOf));
      const had = new Set((before[family] ?? []).map(textOf));
      const script = new RestoreScript();
      (before[family] ?? []).filter((r) => !keep.has(textOf(r))).forEach((r) => script.deleteRule('nat', chain, r));
      rules.filter((r) => !had.has(textOf(r))).forEach((r) => script.appendRule('nat', chain, r));
      const whole = new RestoreScript().replaceChain({ table: 'nat', name: chain, rules: [...next.values()].flatMap((r) => r[family] ?? []) });
      await this.restore(family, script).catch(() => this.restore(family, whole));
    }
    this.dnat.set(network.id, next);
  }

  async setDockerBridges(names: readonly string[]): Promise<void> {
    await this.shared.run(SHARED, async () => {
      this.dockerBridges = [...names];
      for (const family of [4, 6] as const) {
        // Without the chain (no network yet) the names wait for the first setupNetwork.
        if ((await this.save(family)).mangle.chains.has(SHARED_CHAINS.docker)) await this.restore(family, new RestoreScript().replaceChain(dockerChain(this.dockerBridges)));
      }
    });
  }

  async teardownNetwork(network: FirewallNetwork): Promise<void> {
    await giveBackRouteLocalnet(this.sysctl, network);
    await this.shared.run(SHARED, async () => {
      for (const family of families(network)) {
        const saved = await this.save(family);
        const script = new RestoreScript();
        const own = networkPlan(network, family, []);
        const exists = (chain: ChainPlan) => saved[chain.table].chains.has(chain.name);
        const hooked = (hook: HookPlan) => saved[hook.table].rules.has(hookText(hook));
        // The last network takes the shared chains along (flushed first, which drops its hooks): a removed plugin leaves no TSNET chain.
        const last = ![...saved.mangle.chains].some((c) => c.startsWith(NETWORK_CHAIN_PREFIX) && c !== networkChains(network.id).forward);
        const base = basePlan(this.dockerBridges);
        if (last) base.chains.filter(exists).forEach((chain) => script.replaceChain(chain));
        else own.hooks.filter(hooked).forEach((hook) => script.deleteHook(hook));
        own.chains.filter(exists).forEach((chain) => script.deleteChain(chain.table, chain.name));
        if (last) {
          base.hooks.filter(hooked).forEach((hook) => script.deleteHook(hook));
          base.chains.filter(exists).forEach((chain) => script.deleteChain(chain.table, chain.name));
        }
        await this.restore(family, script);
      }
    });
    this.dnat.delete(network.id);
  }

  async snapshot(): Promise<IptablesSnapshot> {
    const [v4, v6] = await Promise.all([this.save(4), this.save(6)]);
    return { backend: 'iptables', saved: { 4: v4, 6: v6 } };
  }

  drift(snapshot: RuleSnapshot, network: FirewallNetwork, forwards: EndpointForwards): Drift[] {
    return iptablesDrift(snapshot as IptablesSnapshot, network, network.internal ? [] : [...forwards.values()].flat(), this.dockerBridges);
  }

  /** setupNetwork reads the kernel each time and replaces the network's chains whole: nothing cached to forget. */
  forgetKernel(): void {}

  /**
   * The per-network chains (TSNET-FWD-, -DNAT-, -SNAT- with 10 hex digits) of
   * no known network, with the jumps into them, and the rules in tsnet's
   * shared chains that no known network has (e.g. a lost network's DNS
   * rules in TSNET-INPUT).
   */
  async removeUnknown(known: readonly FirewallNetwork[]): Promise<string[]> {
    // A chain is tsnet's where its plan puts it: one of an older layout (in another table) goes too.
    const placed = (chains: readonly ChainPlan[]) => chains.map((c) => `${c.table} ${c.name}`);
    const mine = new Set([...placed(basePlan().chains), ...known.flatMap((n) => placed(networkPlan(n, n.subnets[4] ? 4 : 6, []).chains))]);
    // TSNET-DOCKER belongs to no network: setupNetwork writes it whole.
    const shared = new Set<string>(Object.values(SHARED_CHAINS).filter((c) => c !== SHARED_CHAINS.docker));
    const removed: string[] = [];
    await this.shared.run(SHARED, async () => {
      for (const family of [4, 6] as const) {
        const saved = await this.save(family);
        const plans = [basePlan(), ...known.map((n) => networkPlan(n, family, []))];
        const wanted = new Set(plans.flatMap((p) => [...p.hooks.map(hookText), ...p.chains.flatMap((c) => c.rules.map((r) => ruleText(c.name, r)))]));
        const script = new RestoreScript();
        for (const table of TABLES) {
          const unknown = [...saved[table].chains].filter((c) => (NETWORK_CHAIN.test(c) || shared.has(c)) && !mine.has(`${table} ${c}`));
          for (const line of saved[table].rules) {
            const [, chain, ...words] = line.split(' ');
            const jump = words.findIndex((w) => w === '-j' || w === '-g');
            const target = jump >= 0 ? words[jump + 1] : undefined;
            if (unknown.includes(chain!)) continue; // goes with its chain
            if ((shared.has(chain!) && !wanted.has(line)) || (target !== undefined && unknown.includes(target))) {
              script.deleteSaved(table, line);
              removed.push(`${line} (${table}, IPv${family})`);
            }
          }
          if (unknown.length > 0) script.deleteChains(table, unknown);
          removed.push(...unknown.map((c) => `chain ${c} (${table}, IPv${family})`));
        }
        await this.restore(family, script);
      }
    });
    return removed;
  }
}

/**
 * Removes what the iptables backend made (a host switching to nftables): its
 * shared and per-network chains, by their exact names (a user's TSNET-mine
 * stays), and the hooks into them.
 */
export function removeIptablesBackend(runner: Runner): Promise<void> {
  const shared = new Set<string>(Object.values(SHARED_CHAINS));
  return removeIptablesChains(runner, (chain) => shared.has(chain) || NETWORK_CHAIN.test(chain));
}
