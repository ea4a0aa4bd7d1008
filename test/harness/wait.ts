// Polling with a deadline. Readiness of daemons is observed, never assumed
// after a fixed sleep; the deadline only bounds how long a broken setup can
// hang the suite (it is not a performance assertion).
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** Says what we waited for, in the timeout error. */
  what: string;
  /** Called when the deadline passes; its text is appended to the error (e.g. a log tail). */
  diagnostics?: () => string | Promise<string>;
}

/**
 * Calls `probe` until it returns a value other than undefined/false and
 * returns that value. `probe` may throw a FatalWaitError to give up early
 * (e.g. the process we wait for has exited).
 */
export async function waitUntil<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) {
      const extra = opts.diagnostics ? `\n${await opts.diagnostics()}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${extra}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}
