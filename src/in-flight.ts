/**
 * The requests being served. Shutdown cuts the connections of requests that
 * outlast its grace period, but a handler goes on after its connection is
 * gone; the store may close only once every handler has recorded what it
 * did to the kernel.
 */
export class InFlight {
  private readonly running = new Set<Promise<unknown>>();

  /** Runs `work`, counted until it settles. */
  track<T>(work: () => Promise<T>): Promise<T> {
    const promise = work();
    this.running.add(promise);
    const forget = () => this.running.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /** Resolves once nothing is running, including work that started while waiting. */
  async drained(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}
