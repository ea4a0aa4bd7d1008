import type { Collection, Store, Write } from './store.js';

/** A Store that forgets everything on exit: unit tests and in-process benchmarks. */
export class MemoryStore implements Store {
  private readonly data = new Map<Collection, Map<string, string>>();

  async readAll<T>(collection: Collection): Promise<Map<string, T>> {
    const out = new Map<string, T>();
    for (const [key, json] of this.data.get(collection) ?? []) out.set(key, JSON.parse(json) as T);
    return out;
  }

  async commit(writes: readonly Write[]): Promise<void> {
    // Serialise first so a value that cannot be stored fails the whole batch.
    const encoded = writes.map((w) => ({ ...w, json: w.value === null ? null : JSON.stringify(w.value) }));
    for (const { collection, key, json } of encoded) {
      let records = this.data.get(collection);
      if (!records) this.data.set(collection, (records = new Map()));
      if (json === null) records.delete(key);
      else records.set(key, json);
    }
  }

  async close(): Promise<void> {}
}
