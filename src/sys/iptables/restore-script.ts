import type { Family } from '../firewall.js';
import { ProgramNotFound, type Runner } from '../runner.js';
import { type ChainPlan, type HookPlan, type Rule, type Table, TABLES } from './plan.js';

/**
 * Seconds iptables-restore waits for the xtables lock (legacy backend) that
 * dockerd, kube-proxy or fail2ban may hold; older iptables fail at once
 * without --wait, and an unbounded wait would hang dockerd's request.
 */
const LOCK_WAIT_SECONDS = '10';

/** Plain `iptables*` from PATH, as dockerd calls them, so tsnet lands in whichever backend (nft or legacy) dockerd uses. */
const TOOLS: Record<Family, { save: string; restore: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

/** What iptables-save shows of the family's tables (or of one of them). */
export async function iptablesSave(runner: Runner, family: Family, table?: Table): Promise<SavedTables> {
  return parseSave((await runner.run(TOOLS[family].save, table ? ['-t', table] : [])).stdout);
}

/**
 * Removes tsnet's chains that `ours` picks, and the rules of other chains
 * that jump to them, in one transaction per family. Without iptables on the
 * host there is nothing to remove.
 */
export async function removeIptablesChains(runner: Runner, ours: (chain: string) => boolean): Promise<void> {
  for (const family of [4, 6] as const) {
    let saved: SavedTables;
    try {
      saved = await iptablesSave(runner, family);
    } catch (error) {
      if (error instanceof ProgramNotFound) return;
      throw error;
    }
    const script = new RestoreScript();
    for (const table of TABLES) {
      const chains = [...saved[table].chains].filter(ours);
      const jumpsIn = [...saved[table].rules].filter((line) => {
        const words = line.split(' ');
        const target = words.indexOf('-j') >= 0 ? words[words.indexOf('-j') + 1]! : '';
        return !chains.includes(words[1]!) && chains.includes(target);
      });
      jumpsIn.forEach((line) => script.deleteSaved(table, line));
      if (chains.length > 0) script.deleteChains(table, chains);
    }
    await iptablesRestore(runner, family, script);
  }
}

/** Runs the script as one `iptables-restore --noflush` transaction; an empty script runs nothing. */
export async function iptablesRestore(runner: Runner, family: Family, script: RestoreScript): Promise<void> {
  if (!script.empty) await runner.run(TOOLS[family].restore, ['--wait', LOCK_WAIT_SECONDS, '--noflush'], { input: script.text() });
}

/** What iptables-save shows of one table: chain names and rules as text (`-A CHAIN …`). */
export interface SavedTable {
  chains: Set<string>;
  rules: Set<string>;
}

export type SavedTables = Record<Table, SavedTable>;

/** Reads `iptables-save` output; tables not in it are empty. */
export function parseSave(text: string): SavedTables {
  const tables = Object.fromEntries(TABLES.map((t) => [t, { chains: new Set<string>(), rules: new Set<string>() }])) as SavedTables;
  let current: SavedTable | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) current = tables[line.slice(1).trim() as Table];
    else if (!current) continue;
    else if (line.startsWith(':')) current.chains.add(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) current.rules.add(line.trim());
  }
  return tables;
}

function checkWord(word: string): string {
  // iptables-restore splits on blanks and honours quotes; tsnet only writes
  // generated names, numbers and addresses, so anything else is a bug.
  if (word === '' || /[\s"'\\#]/.test(word)) throw new Error(`unsafe word in an iptables rule: ${JSON.stringify(word)}`);
  return word;
}

export const ruleText = (chain: string, rule: Rule) => ['-A', chain, ...rule].map(checkWord).join(' ');
export const hookText = (hook: HookPlan) => ruleText(hook.chain, hook.rule);

const DOCKER_USER_HOOK = '-A FORWARD -j DOCKER-USER';

/**
 * Where tsnet's hook into FORWARD goes: the top, but below Docker's jump to
 * DOCKER-USER when there is one, so the user's rules there see tsnet's
 * traffic first, as they see Docker's (dockerd puts that jump back on top
 * whenever it starts, so this is also the order after a reboot).
 */
export function forwardHookPosition(filter: SavedTable): number {
  const forward = [...filter.rules].filter((rule) => rule.startsWith('-A FORWARD '));
  return forward.indexOf(DOCKER_USER_HOOK) + 2;
}

/** Lines of one `iptables-restore --noflush` transaction, grouped per table. */
export class RestoreScript {
  /** Chain declarations go before every rule of their table, whatever order callers use. */
  private readonly declarations: Record<Table, string[]> = { filter: [], nat: [], mangle: [] };
  private readonly lines: Record<Table, string[]> = { filter: [], nat: [], mangle: [] };

  /** Declares a chain (created, or flushed if it exists) and fills it. */
  replaceChain(chain: ChainPlan): this {
    this.declarations[chain.table].push(`:${checkWord(chain.name)} - [0:0]`);
    this.lines[chain.table].push(`-F ${chain.name}`, ...chain.rules.map((r) => ruleText(chain.name, r)));
    return this;
  }

  /** Appends the hook, or inserts it at `position` (1: the top) when it must come first. */
  addHook(hook: HookPlan, position = 1): this {
    const text = hookText(hook);
    this.lines[hook.table].push(hook.first ? text.replace(/^-A (\S+)/, `-I $1 ${position}`) : text);
    return this;
  }

  deleteHook(hook: HookPlan): this {
    this.lines[hook.table].push(hookText(hook).replace(/^-A /, '-D '));
    return this;
  }

  appendRule(table: Table, chain: string, rule: Rule): this {
    this.lines[table].push(ruleText(chain, rule));
    return this;
  }

  deleteRule(table: Table, chain: string, rule: Rule): this {
    this.lines[table].push(ruleText(chain, rule).replace(/^-A /, '-D '));
    return this;
  }

  /** Deletes a rule as iptables-save shows it (`-A CHAIN …`). */
  deleteSaved(table: Table, line: string): this {
    this.lines[table].push(line.replace(/^-A /, '-D '));
    return this;
  }

  /** Flushes all the chains first, then deletes them: they may jump to each other. */
  deleteChains(table: Table, names: readonly string[]): this {
    this.lines[table].push(...names.map((n) => `-F ${checkWord(n)}`), ...names.map((n) => `-X ${n}`));
    return this;
  }

  deleteChain(table: Table, name: string): this {
    this.lines[table].push(`-F ${checkWord(name)}`, `-X ${name}`);
    return this;
  }

  get empty(): boolean {
    return TABLES.every((table) => this.lines[table].length === 0);
  }

  text(): string {
    return TABLES.filter((table) => this.lines[table].length > 0)
      .map((table) => [`*${table}`, ...this.declarations[table], ...this.lines[table], 'COMMIT'].join('\n'))
      .join('\n') + '\n';
  }
}
