/**
 * The SQLite state survives a power loss, not only a killed daemon: every
 * commit reaches the disk (an fsync of the write-ahead log) before tsnet
 * answers dockerd, whose own store already holds the change. Watched with
 * strace on a real process committing through the built store.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { REPO_ROOT, runOk } from '../harness/index.js';

const dir = mkdtempSync(join(tmpdir(), 'tsnet-durable-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const COMMITS = 10;

it('syncs the write-ahead log on every commit', async () => {
  const store = join(REPO_ROOT, 'dist/src/store/sqlite.js');
  const script = `
    const { SqliteStore } = await import(${JSON.stringify(store)});
    const s = new SqliteStore(${JSON.stringify(join(dir, 'state'))});
    for (let i = 0; i < ${COMMITS}; i++) await s.commit([{ collection: 'meta', key: 'k' + i, value: i }]);
    process.stdout.write('committed\\n');
    process.exit(0); // no close(): its checkpoint would sync too, and a power loss gives no close either
  `;
  const trace = join(dir, 'trace');
  const r = await runOk('strace', ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, '--input-type=module', '-e', script]);
  expect(r.stdout).toBe('committed');
  const walSyncs = readFileSync(trace, 'utf8').split('\n').filter((line) => /f(data)?sync\(\d+<[^>]*tsnet\.db-wal>\)/.test(line));
  expect(walSyncs.length).toBeGreaterThanOrEqual(COMMITS);
});
