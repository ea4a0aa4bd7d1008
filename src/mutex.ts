/**
 * Serialises async work per key. Calls for one network (or for the IPAM)
 * run one at a time, calls for different keys overlap.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    // Uncontended (the common case): start at once instead of a tick later.
    const result = previous ? previous.then(work, work) : work();
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      // Forget the key once nobody queued behind us, so the map stays small.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
