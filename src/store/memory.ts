import type { Collection, Store, Write } from './store.js';

/**
 * A Store that forgets everything on exit: unit tests and in-process
 * benchmarks. It keeps the committed objects themselves, as the services
 * never mutate a record after committing it (they commit a new one).
 */
export class MemoryStore implements Store {
  private readonly data = new Map<Collection, Map<string, unknown>>();

  async readAll<T>(collection: Collection): Promise<Map<string, T>> {
    return new Map(this.data.get(collection) as Map<string, T> | undefined);
  }

  async commit(writes: readonly Write[]): Promise<void> {
    for (const { collection, key, value } of writes) {
      let records = this.data.get(collection);
      if (!records) this.data.set(collection, (records = new Map()));
      if (value === null) records.delete(key);
      else records.set(key, value);
    }
  }

  async close(): Promise<void> {}
}
