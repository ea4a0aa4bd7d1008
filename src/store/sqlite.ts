import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Collection, Store, Write } from './store.js';

/**
 * The embedded default store: one SQLite file in the state directory.
 * WAL with synchronous=FULL: every commit is on disk before tsnet answers.
 * dockerd has already stored the network or endpoint by then, so a commit
 * lost to a power cut would leave dockerd holding what tsnet forgot
 * ("unknown pool", networks back from the dead).
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly select: Database.Statement;
  private readonly apply: (writes: readonly Write[]) => void;

  constructor(stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(stateDir, 'tsnet.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS records (
      collection TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (collection, key)
    ) WITHOUT ROWID`);
    this.upsert = this.db.prepare(
      'INSERT INTO records (collection, key, value) VALUES (?, ?, ?) ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value',
    );
    this.remove = this.db.prepare('DELETE FROM records WHERE collection = ? AND key = ?');
    this.select = this.db.prepare('SELECT key, value FROM records WHERE collection = ?');
    this.apply = this.db.transaction((writes: readonly Write[]) => {
      for (const { collection, key, value } of writes) {
        if (value === null) this.remove.run(collection, key);
        else this.upsert.run(collection, key, JSON.stringify(value));
      }
    });
  }

  async readAll<T>(collection: Collection): Promise<Map<string, T>> {
    const rows = this.select.all(collection) as Array<{ key: string; value: string }>;
    return new Map(rows.map((row) => [row.key, JSON.parse(row.value) as T]));
  }

  async commit(writes: readonly Write[]): Promise<void> {
    if (writes.length > 0) this.apply(writes);
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
