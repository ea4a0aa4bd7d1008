/**
 * In-process IPAM benchmark: allocate every address of a /16 (and of a /20
 * with an ip-range), then release them all, through IpamService — once over
 * the memory store (the allocator and service alone) and once over the
 * SQLite store the daemon uses (every allocation one committed transaction).
 * Each row is the median of RUNS fresh runs: this machine is noisy.
 *
 *   npm run build && node dist/bench/ipam.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IpamService, LOCAL_ADDRESS_SPACE } from '../src/ipam/ipam-service.js';
import { MemoryStore } from '../src/store/memory.js';
import { SqliteStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/store.js';

interface Scenario {
  name: string;
  pool: string;
  subPool: string;
}

const SCENARIOS: Scenario[] = [
  { name: '/16', pool: '10.100.0.0/16', subPool: '' },
  { name: '/20 with a /21 ip-range', pool: '10.101.0.0/20', subPool: '10.101.8.0/21' },
];

async function run(scenario: Scenario, store: Store): Promise<{ count: number; allocateMs: number; releaseMs: number }> {
  const ipam = new IpamService(store);
  await ipam.load();
  const { poolId } = await ipam.requestPool({ addressSpace: LOCAL_ADDRESS_SPACE, pool: scenario.pool, subPool: scenario.subPool, options: {}, v6: false });
  const addresses: string[] = [];
  let started = performance.now();
  for (;;) {
    try {
      addresses.push((await ipam.requestAddress({ poolId, address: '', options: {} })).address.split('/')[0]!);
    } catch {
      break; // the pool is exhausted: every address was handed out
    }
  }
  const allocateMs = performance.now() - started;
  started = performance.now();
  for (const address of addresses) await ipam.releaseAddress(poolId, address);
  const releaseMs = performance.now() - started;
  await store.close();
  return { count: addresses.length, allocateMs, releaseMs };
}

const RUNS = 5;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function medianRun(scenario: Scenario, kind: 'memory' | 'sqlite') {
  const results = [];
  for (let i = 0; i < RUNS; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'tsnet-bench-'));
    try {
      results.push(await run(scenario, kind === 'memory' ? new MemoryStore() : new SqliteStore(dir)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { count: results[0]!.count, allocateMs: median(results.map((r) => r.allocateMs)), releaseMs: median(results.map((r) => r.releaseMs)) };
}

const rows: string[][] = [['scenario', 'store', 'addresses', 'allocate all (s)', 'alloc ops/s', 'release all (s)', 'release ops/s']];
for (const scenario of SCENARIOS) {
  for (const kind of ['memory', 'sqlite'] as const) {
    const r = await medianRun(scenario, kind);
    rows.push([
      scenario.name,
      kind,
      String(r.count),
      (r.allocateMs / 1000).toFixed(3),
      Math.round((r.count / r.allocateMs) * 1000).toLocaleString('en'),
      (r.releaseMs / 1000).toFixed(3),
      Math.round((r.count / r.releaseMs) * 1000).toLocaleString('en'),
    ]);
  }
}
console.log(`median of ${RUNS} runs each`);
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
