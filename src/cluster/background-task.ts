/**
 * Background work against the cluster store that runs one at a time: asked
 * while it runs, it runs once more afterwards (so it sees every change made
 * meanwhile); a run that throws is reported and tried again after `retryMs`
 * (etcd unreachable). Nothing a plugin request does ever waits for it.
 */
export class BackgroundTask {
  private running: Promise<void> | undefined;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly work: () => Promise<void>,
    private readonly failed: (error: unknown) => void,
    private readonly retryMs: number,
  ) {}

  /** Starts a run, or one more after the run in progress. */
  request(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.work();
        } catch (error) {
          this.failed(error);
          this.retryLater();
          return;
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
  }

  private retryLater(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.request();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  /** Whether a run is in progress or a failed one waits to be tried again. */
  get busy(): boolean {
    return this.running !== undefined || this.retryTimer !== undefined;
  }

  /** Waits for the run in progress and the runs asked meanwhile (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.running) await this.running;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
  }
}

/** The message of whatever was thrown, for a log line. */
export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));
