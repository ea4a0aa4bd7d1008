// Network namespaces the tests own. Nothing here ever touches the root netns:
// every `ip` call is scoped with `-n <ns>` or runs under `ip netns exec`.
import { existsSync } from 'node:fs';
import type { CleanupStack } from './cleanup.js';
import { type CommandResult, type RunOptions, run, runOk } from './exec.js';
import { assertLinkName } from './names.js';

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

export function netnsExists(name: string): boolean {
  return existsSync(netnsPath(name));
}

/** Creates netns `name` with `lo` up. Fails if it already exists (names are per run, so that is a bug). */
export async function createNetns(name: string): Promise<void> {
  await runOk('ip', ['netns', 'add', name]);
  await runOk('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Creates each netns (createNetns) and puts its deletion on `cleanup`. */
export async function createNetnsCleanedUp(cleanup: CleanupStack, ...names: string[]): Promise<void> {
  for (const name of names) {
    await createNetns(name);
    cleanup.defer(`delete netns ${name}`, () => deleteNetns(name));
  }
}

/** Deletes netns `name` (and with it every link whose end is inside). Idempotent. */
export async function deleteNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  await runOk('ip', ['netns', 'del', name]);
}

/** Runs argv inside netns `ns` (`ip netns exec`, which also gives it a /sys of that netns). */
export function execInNetns(ns: string, argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
  return run('ip', ['netns', 'exec', ns, ...argv], opts);
}

/** Like execInNetns, but throws with stderr unless the command exits 0. */
export function execInNetnsOk(ns: string, argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
  return runOk('ip', ['netns', 'exec', ns, ...argv], opts);
}

/** `ip -n <ns> <args>`; throws on failure. */
export function ipIn(ns: string, args: readonly string[]): Promise<CommandResult> {
  return runOk('ip', ['-n', ns, ...args]);
}

export interface VethEnd {
  netns: string;
  name: string;
  /** Optional address in CIDR form, e.g. `198.51.100.1/24`. */
  address?: string;
}

/**
 * Creates a veth pair with one end in each netns (a "wire" between two
 * simulated hosts), assigns the optional addresses and sets both ends up.
 * Deleting either netns removes the pair.
 */
export async function createVethPair(a: VethEnd, b: VethEnd): Promise<void> {
  assertLinkName(a.name);
  assertLinkName(b.name);
  await ipIn(a.netns, ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name, 'netns', b.netns]);
  for (const end of [a, b]) {
    if (end.address) await ipIn(end.netns, ['addr', 'add', end.address, 'dev', end.name]);
    await ipIn(end.netns, ['link', 'set', end.name, 'up']);
  }
}
