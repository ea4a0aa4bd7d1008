import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { CommandError, type RunOptions, type RunResult, type Runner } from './runner.js';

/**
 * A line that always fails the same way without touching the kernel: ip
 * knows no object of that name, whatever links (or altnames) exist. Its
 * "Command failed" marker on stderr tells that the line before it is done.
 */
const SENTINEL = 'tsnet-end-of-line';

/** Far above any netlink write; only a wedged process gets near it. */
const LINE_TIMEOUT_MS = 30_000;

/** The child's pipes are sockets, which can stop (or resume) holding the event loop open. */
const socket = (stream: unknown) => stream as { ref(): void; unref(): void };

/** The ip process went away before answering a line; whether that line ran is unknown. */
class ProcessGone extends Error {}

/**
 * One `ip -force -batch -` process. Lines go one at a time, each followed by
 * the sentinel, so each line's own error (if any) can be told apart.
 */
class IpProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderr = '';
  private lineNumber = 0;
  private waiter: { marker: string; resolve: () => void; reject: (error: Error) => void } | undefined;
  private gone: Error | undefined;

  constructor(prefix: readonly string[]) {
    this.child = spawn('ip', [...prefix, '-force', '-batch', '-'], { env: { ...process.env, LC_ALL: 'C' } });
    // Idle, it never keeps the daemon alive; a line in flight does (see runLine).
    this.child.unref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) socket(stream).unref();
    this.child.stdout.resume(); // write commands print nothing; drain whatever comes
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      if (this.waiter && this.stderr.includes(this.waiter.marker)) this.waiter.resolve();
    });
    this.child.on('exit', (code, signal) => this.fail(new ProcessGone(`ip -batch session exited (${code ?? signal})`)));
    this.child.on('error', (error) => this.fail(new ProcessGone(`ip -batch session failed: ${error.message}`)));
    // A write to a process that just died: EPIPE arrives here instead of crashing the daemon.
    this.child.stdin.on('error', (error) => this.fail(new ProcessGone(`ip -batch session stdin: ${error.message}`)));
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

  /** undefined when the line succeeded, else what ip printed about it. */
  async runLine(line: string): Promise<string | undefined> {
    if (this.gone) throw this.gone;
    const own = ++this.lineNumber;
    const sentinel = ++this.lineNumber;
    const marker = `Command failed -:${sentinel}\n`;
    const done = new Promise<void>((resolve, reject) => {
      this.waiter = { marker, resolve, reject };
    });
    // Awaiting only this pipe, node would otherwise exit mid-request (e.g. during start-up restore).
    socket(this.child.stderr).ref();
    this.child.stdin.write(`${line}\n${SENTINEL}\n`);
    // A hung ip must not hang dockerd: kill it and fail this request (no retry: it could hang again).
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.kill();
    }, LINE_TIMEOUT_MS);
    try {
      if (!this.stderr.includes(marker)) await done;
    } catch (error) {
      if (timedOut) throw new Error(`ip -batch session: no answer to "${line}" in ${LINE_TIMEOUT_MS / 1000} s`);
      throw error;
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
      socket(this.child.stderr).unref();
    }
    const output = this.stderr.slice(0, this.stderr.indexOf(marker));
    this.stderr = this.stderr.slice(this.stderr.indexOf(marker) + marker.length);
    const ownMarker = `Command failed -:${own}\n`;
    return output.includes(ownMarker) ? output.slice(0, output.indexOf(ownMarker)) : undefined;
  }
}

/**
 * How many ip processes one netns gets at most. A request's lines run in
 * order on one process; requests of different networks run on different
 * processes when one is busy, so an attach never waits behind the slow
 * deletion of another network's bridge (the kernel still orders what must be).
 */
const LANES = 4;

/**
 * One long-lived ip process of a netns prefix, replaced when it dies or may
 * be stale. Its requests queue behind each other: the process runs one line
 * at a time, and the first failing line stops its request, as a plain
 * `ip -batch -` would.
 */
class IpLane {
  private process: IpProcess | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  /** Requests queued or running here. */
  pending = 0;

  constructor(
    private readonly prefix: readonly string[],
    private readonly onStart: () => void,
  ) {}

  run(lines: readonly string[], command: string): Promise<void> {
    this.pending++;
    const result = this.tail.then(async () => {
      for (const line of lines) {
        const stderr = await this.runLine(line);
        if (stderr !== undefined) throw new CommandError(command, 1, stderr);
      }
    });
    this.tail = result.catch(() => undefined);
    return result.finally(() => this.pending--);
  }

  private current(): IpProcess {
    if (!this.process?.alive) {
      this.process = new IpProcess(this.prefix);
      this.onStart();
    }
    return this.process;
  }

  /**
   * A failing line gets one more try in a fresh process: ip caches interface
   * indexes by name, so a link that someone else deleted and re-made (a
   * bridge, a VLAN parent) looks missing to an old process. A process that
   * died under a line is replaced the same way.
   */
  private async runLine(line: string): Promise<string | undefined> {
    try {
      const stderr = await this.current().runLine(line);
      if (stderr === undefined) return undefined;
    } catch (error) {
      if (!(error instanceof ProcessGone)) throw error;
    }
    this.process?.kill();
    this.process = undefined;
    return this.current().runLine(line);
  }
}

/** The lanes of one netns prefix: a request goes to the least busy, so an idle daemon runs a single ip process. */
class IpSession {
  private readonly lanes: IpLane[];

  constructor(prefix: readonly string[], onStart: () => void) {
    this.lanes = Array.from({ length: LANES }, () => new IpLane(prefix, onStart));
  }

  run(lines: readonly string[], command: string): Promise<void> {
    const lane = this.lanes.reduce((best, lane) => (lane.pending < best.pending ? lane : best));
    return lane.run(lines, command);
  }
}

/**
 * A Runner that sends `ip [-n ns] -batch -` writes through long-lived ip
 * processes and everything else to the runner it wraps. Writes reach the
 * kernel without starting a program each time, which is most of the cost of
 * an attach.
 */
export class IpSessionRunner implements Runner {
  private readonly sessions = new Map<string, IpSession>();

  /** `onSessionStart`: told of each ip process started (metrics count program starts). */
  constructor(
    private readonly inner: Runner,
    private readonly onSessionStart: () => void = () => {},
  ) {}

  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const batch = file === 'ip' && args.length >= 2 && args.at(-2) === '-batch' && args.at(-1) === '-' && options.input !== undefined;
    if (!batch) return this.inner.run(file, args, options);
    const prefix = args.slice(0, -2);
    const key = prefix.join(' ');
    let session = this.sessions.get(key);
    if (!session) this.sessions.set(key, (session = new IpSession(prefix, this.onSessionStart)));
    const lines = options.input!.split('\n').filter((line) => line.trim() !== '');
    return session.run(lines, [file, ...args].join(' ')).then(() => ({ stdout: '', stderr: '' }));
  }
}
