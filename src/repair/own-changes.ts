import { AsyncLocalStorage } from 'node:async_hooks';
import type { Runner, RunOptions, RunResult } from '../sys/index.js';

/**
 * How long after tsnet changed something its monitors' lines about it count
 * as its own. The kernel reports a change within milliseconds; a line that
 * comes later (a loaded host) only costs a look. Short, because a change
 * someone else makes to the same link within it passes for tsnet's until the
 * periodic look.
 */
const OWN_FOR_MS = 300;
/**
 * A bridge's carrier follows its ports, and the kernel reports carrier
 * changes up to a second late (linkwatch): that long after a request
 * changed a bridge's ports, a line about the bridge that still shows it up
 * is the port change's echo.
 */
const CARRIER_LAG_MS = 1_500;
/** Programs that write rules (their listing options write nothing, and make no event either). */
const RULE_PROGRAMS = new Set(['nft', 'iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore', 'iptables-legacy', 'ip6tables-legacy', 'iptables-legacy-restore', 'ip6tables-legacy-restore']);

/**
 * What tsnet itself changed in the kernel while serving plugin requests, so
 * the drift watcher can leave its own changes alone instead of reading and
 * comparing every network after each `docker run`. Only plugin requests
 * count: the watcher's own repairs are checked again as before, and nothing
 * another program does at the same time is taken for tsnet's unless it
 * touches the very link tsnet touched within OWN_FOR_MS (the periodic look
 * catches that).
 */
export class OwnChanges {
  private readonly requests = new AsyncLocalStorage<true>();
  private readonly links = new Map<string, number>();
  private readonly carriers = new Map<string, number>();
  private rulesAt = -Infinity;

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Runs a plugin request: what it changes counts as tsnet's own; `bridges`
   * (the request's network's) may see their carrier change after it, as
   * ports come and go.
   */
  async during<T>(work: () => Promise<T>, bridges: readonly string[] = []): Promise<T> {
    try {
      return await this.requests.run(true, work);
    } finally {
      const at = this.now();
      for (const bridge of bridges) this.carriers.set(bridge, at);
    }
  }

  /** A request changed the ports of this bridge lately (see CARRIER_LAG_MS). */
  changedPorts(bridge: string): boolean {
    const at = this.carriers.get(bridge);
    return at !== undefined && this.now() - at <= CARRIER_LAG_MS;
  }

  /** `runner`, noting what each command run during a request changes. */
  watch(runner: Runner): Runner {
    return {
      run: (file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> => {
        if (this.requests.getStore()) this.note(file, args, options?.input);
        return runner.run(file, args, options);
      },
    };
  }

  changedLink(name: string): boolean {
    const at = this.links.get(name);
    return at !== undefined && this.now() - at <= OWN_FOR_MS;
  }

  changedRules(): boolean {
    return this.now() - this.rulesAt <= OWN_FOR_MS;
  }

  rulesChangedAt(): number {
    return Math.max(0, this.rulesAt);
  }

  /** Every word of an ip or bridge command may name a link (`dev X`, `master X`, `peer name X`): noting a few extra words costs nothing. */
  private note(file: string, args: readonly string[], input: string | undefined): void {
    const at = this.now();
    if (RULE_PROGRAMS.has(file)) {
      this.rulesAt = at;
      return;
    }
    if (file === 'ip' || file === 'bridge') this.noteLinks([...args, ...(input?.split(/\s+/) ?? [])]);
  }

  private noteLinks(names: readonly string[]): void {
    const at = this.now();
    this.forgetOld(at);
    for (const name of names) {
      if (name === '') continue;
      // Deleted first, so the map stays in the order of the notes (forgetOld relies on it).
      this.links.delete(name);
      this.links.set(name, at);
    }
  }

  private forgetOld(at: number): void {
    for (const [name, noted] of this.links) {
      if (at - noted <= OWN_FOR_MS) break; // insertion order: the rest are newer
      this.links.delete(name);
    }
  }
}
