import type { Firewall } from './firewall.js';
import { IptablesFirewall, removeIptablesBackend } from './iptables/iptables-firewall.js';
import { NftablesFirewall, removeNftablesBackend } from './nftables/nft-firewall.js';
import { skeleton } from './nftables/ruleset.js';
import { CommandError, type Runner } from './runner.js';
import type { Sysctl } from './sysctl.js';

export const FIREWALL_KINDS = ['nftables', 'iptables'] as const;
export type FirewallKind = (typeof FIREWALL_KINDS)[number];

/**
 * Why nftables cannot carry tsnet's rules here, or undefined when it can:
 * the kernel checks tsnet's table (`nft --check`), which changes nothing.
 */
export async function nftablesProblem(runner: Runner): Promise<string | undefined> {
  try {
    await runner.run('nft', ['--check', '-f', '-'], { input: `${skeleton().join('\n')}\n` });
    return undefined;
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    return error.stderr.trim().split('\n')[0] || error.message;
  }
}

/** The backend asked for (`--firewall`), or nftables where it works and iptables elsewhere. */
export async function chooseFirewall(asked: FirewallKind | undefined, runner: Runner, sysctl: Sysctl): Promise<{ kind: FirewallKind; firewall: Firewall }> {
  const kind = asked ?? ((await nftablesProblem(runner)) === undefined ? 'nftables' : 'iptables');
  if (asked === 'nftables') {
    const problem = await nftablesProblem(runner);
    if (problem) throw new Error(`--firewall nftables: nft cannot set up tsnet's table on this host (${problem}); use --firewall iptables`);
  }
  return { kind, firewall: kind === 'nftables' ? new NftablesFirewall(runner, sysctl) : new IptablesFirewall(runner, sysctl) };
}

/**
 * Removes the rules the other backend left (the host switched backends):
 * the nftables table would otherwise keep dropping what iptables accepts, and
 * iptables' chains would keep forwarding ports that are gone. One tsnet per
 * host (network namespace).
 */
export function removeOtherBackend(kind: FirewallKind, runner: Runner): Promise<void> {
  return kind === 'nftables' ? removeIptablesBackend(runner) : removeNftablesBackend(runner);
}

/** Whether iptables is the legacy backend, which sends no events: its rules must be polled. */
export async function iptablesIsLegacy(runner: Runner): Promise<boolean> {
  try {
    return /legacy/.test((await runner.run('iptables', ['-V'])).stdout);
  } catch {
    return false; // no iptables at all: nothing of it to watch
  }
}
