import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';

/** Far above any netlink write; only a wedged process gets near it. */
const EXCHANGE_TIMEOUT_MS = 30_000;

/** The child's pipes are sockets, which can stop (or resume) holding the event loop open. */
const socket = (stream: unknown) => stream as { ref(): void; unref(): void };

/** The process went away before it answered; whether what it was sent ran is unknown. */
export class ProcessGone extends Error {}

/**
 * One long-lived program that reads commands on stdin and reports on
 * stderr (`ip -batch -`, `nft -i`), one exchange at a time. What marks the
 * end of an exchange is the caller's: a command after the real one that
 * fails the same way every time, without touching the kernel.
 */
export class BatchChild {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';
  private waiter: { end: (stderr: string) => number; resolve: () => void; reject: (error: Error) => void } | undefined;
  private gone: Error | undefined;

  constructor(
    private readonly name: string,
    file: string,
    args: readonly string[],
  ) {
    this.child = spawn(file, args, { env: { ...process.env, LC_ALL: 'C' } });
    // Idle, it never keeps the daemon alive; an exchange in flight does (see exchange).
    this.child.unref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) socket(stream).unref();
    this.child.stdout.resume(); // writes print nothing; drain whatever comes
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      if (this.waiter && this.waiter.end(this.stderr) >= 0) this.waiter.resolve();
    });
    this.child.on('exit', (code, signal) => this.fail(new ProcessGone(`${name} exited (${code ?? signal})`)));
    this.child.on('error', (error) => this.fail(new ProcessGone(`${name} failed: ${error.message}`)));
    // A write to a process that just died: EPIPE arrives here instead of crashing the daemon.
    this.child.stdin.on('error', (error) => this.fail(new ProcessGone(`${name} stdin: ${error.message}`)));
  }

  get alive(): boolean {
    return this.gone === undefined;
  }

  private fail(error: Error): void {
    this.gone ??= error;
    this.waiter?.reject(this.gone);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  /**
   * Writes `input`; resolves with what stderr said up to the index `end`
   * returns (-1: not yet), which is consumed. `what` names the exchange in
   * a timeout's error.
   */
  async exchange(input: string, end: (stderr: string) => number, what: string): Promise<string> {
    if (this.gone) throw this.gone;
    const done = new Promise<void>((resolve, reject) => {
      this.waiter = { end, resolve, reject };
    });
    // Awaiting only this pipe, node would otherwise exit mid-request (e.g. during start-up restore).
    socket(this.child.stderr).ref();
    this.child.stdin.write(input);
    // A hung program must not hang dockerd: kill it and fail this request (no retry: it could hang again).
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.kill();
    }, EXCHANGE_TIMEOUT_MS);
    try {
      if (end(this.stderr) < 0) await done;
    } catch (error) {
      if (timedOut) throw new Error(`${this.name}: no answer to "${what}" in ${EXCHANGE_TIMEOUT_MS / 1000} s`);
      throw error;
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
      socket(this.child.stderr).unref();
    }
    const at = end(this.stderr);
    const said = this.stderr.slice(0, at);
    this.stderr = this.stderr.slice(at);
    return said;
  }
}
