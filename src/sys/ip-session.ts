import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { CommandError, type RunOptions, type RunResult, type Runner } from './runner.js';

/**
 * A command that always fails the same way (no link name can be this long):
 * its "Command failed" marker on stderr tells that the line before it is done.
 */
const SENTINEL = 'link show dev tsnet-session-end';

/** Far above any netlink write; only a wedged process gets near it. */
const LINE_TIMEOUT_MS = 30_000;

/** The child's pipes are sockets, which can stop (or resume) holding the event loop open. */
const socket = (stream: unknown) => stream as { ref(): void; unref(): void };

/**
 * One long-lived `ip -force -batch -` per netns prefix. Writes reach the
 * kernel without starting a program each time, which is most of the cost of
 * an attach. Lines go one at a time, each followed by the sentinel; the first
 * failing line stops the request, as a plain `ip -batch -` would.
 */
class IpProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';
  private lineNumber = 0;
  private waiter: { marker: string; resolve: () => void; reject: (error: Error) => void } | undefined;
  /** Requests queue up behind each other: the process runs one line at a time. */
  private tail: Promise<unknown> = Promise.resolve();
  exited = false;

  constructor(prefix: readonly string[]) {
    this.child = spawn('ip', [...prefix, '-force', '-batch', '-'], { env: { ...process.env, LC_ALL: 'C' } });
    // Idle, it never keeps the daemon alive; a request in flight does (see run).
    this.child.unref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) socket(stream).unref();
    this.child.stdout.resume(); // write commands print nothing; drain whatever comes
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      if (this.waiter && this.stderr.includes(this.waiter.marker)) this.waiter.resolve();
    });
    const fail = (why: string) => {
      this.exited = true;
      this.waiter?.reject(new Error(`ip -batch session ${why}`));
    };
    this.child.on('exit', (code) => fail(`exited (${code})`));
    this.child.on('error', (error) => fail(`failed: ${error.message}`));
  }

  /** Runs the lines in order; throws a CommandError with the failing line's stderr. */
  run(lines: readonly string[], command: string): Promise<void> {
    const result = this.tail.then(async () => {
      // Awaiting only this pipe, node would otherwise exit mid-request (e.g. during start-up restore).
      socket(this.child.stderr).ref();
      try {
        for (const line of lines) {
          const stderr = await this.runLine(line);
          if (stderr !== undefined) throw new CommandError(command, 1, stderr);
        }
      } finally {
        socket(this.child.stderr).unref();
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** undefined when the line succeeded, else what ip printed about it. */
  private async runLine(line: string): Promise<string | undefined> {
    const own = ++this.lineNumber;
    const sentinel = ++this.lineNumber;
    const marker = `Command failed -:${sentinel}\n`;
    const done = new Promise<void>((resolve, reject) => {
      this.waiter = { marker, resolve, reject };
    });
    this.child.stdin.write(`${line}\n${SENTINEL}\n`);
    // A hung ip must not hang dockerd: kill it, fail this request, the next one starts a fresh process.
    const timer = setTimeout(() => this.child.kill('SIGKILL'), LINE_TIMEOUT_MS);
    try {
      if (!this.stderr.includes(marker)) await done;
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
    }
    const output = this.stderr.slice(0, this.stderr.indexOf(marker));
    this.stderr = this.stderr.slice(this.stderr.indexOf(marker) + marker.length);
    const ownMarker = `Command failed -:${own}\n`;
    return output.includes(ownMarker) ? output.slice(0, output.indexOf(ownMarker)) : undefined;
  }
}

/**
 * A Runner that sends `ip [-n ns] -batch -` writes through long-lived ip
 * processes and everything else to the runner it wraps.
 */
export class IpSessionRunner implements Runner {
  private readonly processes = new Map<string, IpProcess>();

  constructor(private readonly inner: Runner) {}

  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const batch = file === 'ip' && args.length >= 2 && args.at(-2) === '-batch' && args.at(-1) === '-' && options.input !== undefined;
    if (!batch) return this.inner.run(file, args, options);
    const prefix = args.slice(0, -2);
    const key = prefix.join(' ');
    let session = this.processes.get(key);
    if (!session || session.exited) this.processes.set(key, (session = new IpProcess(prefix)));
    const lines = options.input!.split('\n').filter((line) => line.trim() !== '');
    return session.run(lines, [file, ...args].join(' ')).then(() => ({ stdout: '', stderr: '' }));
  }
}
