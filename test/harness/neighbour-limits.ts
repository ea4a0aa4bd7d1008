// The kernel's ARP and NDP tables are one per kernel, shared by every netns,
// and their garbage-collection thresholds are set in the initial netns only.
// Simulated hosts of one test all share this VM's kernel: 60 containers that
// each reach 40 others hold 2400 ARP entries, past the default hard limit of
// 1024 (gc_thresh3), and the kernel then refuses new entries ("neighbor table
// overflow") until old ones age out, a minute later. Three real hosts would
// each hold a third. Suites at that scale raise the limits while they run.
import { readFileSync, writeFileSync } from 'node:fs';
import type { CleanupStack } from './cleanup.js';

const THRESHOLDS = ['gc_thresh1', 'gc_thresh2', 'gc_thresh3'] as const;
const path = (family: 'ipv4' | 'ipv6', threshold: string) => `/proc/sys/net/${family}/neigh/default/${threshold}`;

/** Raises the neighbour tables' thresholds to at least `wanted` (never lowers them), restored at cleanup. */
export function raiseNeighbourLimits(cleanup: CleanupStack, wanted: Record<(typeof THRESHOLDS)[number], number> = { gc_thresh1: 1024, gc_thresh2: 4096, gc_thresh3: 8192 }): void {
  for (const family of ['ipv4', 'ipv6'] as const) {
    // The hard limit first, so no threshold is ever above the next (and the cleanup stack lowers them in the reverse order).
    for (const threshold of [...THRESHOLDS].reverse()) {
      const file = path(family, threshold);
      const before = Number(readFileSync(file, 'utf8'));
      if (before >= wanted[threshold]) continue;
      writeFileSync(file, String(wanted[threshold]));
      cleanup.defer(`restore ${family} neighbour ${threshold} to ${before}`, () => writeFileSync(file, String(before)));
    }
  }
}
