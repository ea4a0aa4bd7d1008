/**
 * The requests being served. Shutdown cuts the connections of requests that
 * outlast its grace period, but a handler goes on after its connection is
 * gone; the store may close only once every handler has recorded what it
 * did to the kernel.
 */
export class InFlight {
  private readonly running = new Set<Promise<unknown>>();
  private lastSettled = 0;

  /** Runs `work`, counted until it settles. */
  track<T>(work: () => Promise<T>): Promise<T> {
    const promise = work();
    this.running.add(promise);
    const forget = () => {
      this.running.delete(promise);
      this.lastSettled = Date.now();
    };
    promise.then(forget, forget);
    return promise;
  }

  /** How long nothing has been running, in ms (0 while something is). */
  quietForMs(): number {
    return this.running.size > 0 ? 0 : Date.now() - this.lastSettled;
  }

  /** Resolves once nothing is running, including work that started while waiting. */
  async drained(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}
