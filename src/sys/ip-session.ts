import { BatchChild, ProcessGone } from './batch-child.js';
import { CommandError, type RunOptions, type RunResult, type Runner } from './runner.js';

/**
 * A line that always fails the same way without touching the kernel: ip
 * knows no object of that name, whatever links (or altnames) exist. Its
 * "Command failed" marker on stderr tells that the line before it is done.
 */
const SENTINEL = 'tsnet-end-of-line';

/**
 * One `ip -force -batch -` process. Lines go one at a time, each followed by
 * the sentinel, so each line's own error (if any) can be told apart.
 */
class IpProcess {
  private readonly child: BatchChild;
  private lineNumber = 0;

  constructor(prefix: readonly string[]) {
    this.child = new BatchChild('ip -batch session', 'ip', [...prefix, '-force', '-batch', '-']);
  }

  get alive(): boolean {
    return this.child.alive;
  }

  kill(): void {
    this.child.kill();
  }

  /** undefined when the line succeeded, else what ip printed about it. */
  async runLine(line: string): Promise<string | undefined> {
    const own = ++this.lineNumber;
    const sentinel = ++this.lineNumber;
    const marker = `Command failed -:${sentinel}\n`;
    const said = await this.child.exchange(`${line}\n${SENTINEL}\n`, (stderr) => {
      const at = stderr.indexOf(marker);
      return at < 0 ? -1 : at + marker.length;
    }, line);
    const ownMarker = `Command failed -:${own}\n`;
    return said.includes(ownMarker) ? said.slice(0, said.indexOf(ownMarker)) : undefined;
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
