import { type Drift, drift } from '../drift.js';
import type { Family, FirewallNetwork, PortForward, RuleSnapshot } from '../firewall.js';
import { basePlan, type ChainPlan, dockerChain, type HookPlan, networkPlan, SHARED_CHAINS } from './plan.js';
import { hookText, ruleText, type SavedTables } from './restore-script.js';

/** Both families' tables as iptables-save showed them. */
export interface IptablesSnapshot extends RuleSnapshot {
  backend: 'iptables';
  saved: Record<Family, SavedTables>;
}

/** A chain's rules as iptables-save shows them. */
const savedRulesOf = (saved: SavedTables, chain: ChainPlan) => [...saved[chain.table].rules].filter((line) => line.startsWith(`-A ${chain.name} `));

function chainDrift(networkId: string, saved: SavedTables, chain: ChainPlan, family: Family): Drift[] {
  const where = `${chain.name} (${chain.table}, IPv${family})`;
  if (!saved[chain.table].chains.has(chain.name)) return [drift(networkId, 'chain', 'missing', where)];
  const wanted = new Set(chain.rules.map((r) => ruleText(chain.name, r)));
  const have = new Set(savedRulesOf(saved, chain));
  return [
    ...[...wanted].filter((line) => !have.has(line)).map((line) => drift(networkId, 'rule', 'missing', `${line} (${chain.table}, IPv${family})`)),
    ...[...have].filter((line) => !wanted.has(line)).map((line) => drift(networkId, 'rule', 'extra', `${line} (${chain.table}, IPv${family})`)),
  ];
}

const hookDrift = (networkId: string, saved: SavedTables, hook: HookPlan, family: Family): Drift[] =>
  saved[hook.table].rules.has(hookText(hook)) ? [] : [drift(networkId, 'hook', 'missing', `${hookText(hook)} (${hook.table}, IPv${family})`)];

/**
 * What the network's rules (its chains, compared rule by rule, and its hooks)
 * and the shared chains and hooks lack in the snapshot, or hold besides.
 * Order within a chain is not compared: tsnet's chains hold rules that never
 * match the same packet with different verdicts, except where a hook must be
 * first, which setup re-inserts when missing.
 */
export function iptablesDrift(snapshot: IptablesSnapshot, network: FirewallNetwork, forwards: readonly PortForward[], dockerBridges: readonly string[]): Drift[] {
  return ([4, 6] as const)
    .filter((family) => network.subnets[family] !== undefined)
    .flatMap((family) => {
      const saved = snapshot.saved[family];
      const base = basePlan(dockerBridges);
      const own = networkPlan(network, family, forwards);
      return [
        ...base.chains.filter((c) => !saved[c.table].chains.has(c.name)).map((c) => drift(network.id, 'chain', 'missing', `${c.name} (${c.table}, IPv${family})`)),
        // Every network's isolation from Docker's networks rests on it.
        ...(saved.mangle.chains.has(SHARED_CHAINS.docker) ? chainDrift(network.id, saved, dockerChain(dockerBridges), family) : []),
        ...own.chains.flatMap((c) => chainDrift(network.id, saved, c, family)),
        ...[...base.hooks, ...own.hooks].flatMap((h) => hookDrift(network.id, saved, h, family)),
      ];
    });
}
