import { BatchChild, ProcessGone } from './batch-child.js';
import { CommandError, type RunOptions, type RunResult, type Runner } from './runner.js';

/**
 * Sent after each transaction: nft cannot parse it, so it fails at once
 * without touching the kernel, and the parser's report, which echoes it
 * with a caret line under it, tells that the transaction is done.
 */
const SENTINEL = 'tsnet-end-of-line';
const SENTINEL_REPORT = new RegExp(`(?:^|\\n)${SENTINEL}\\n *\\^+\\n`);

/** Where the sentinel's report ends, or -1. */
function reportEnd(stderr: string): number {
  const match = SENTINEL_REPORT.exec(stderr);
  return match ? match.index + match[0].length : -1;
}

/** What the transaction itself printed: all but the sentinel's own "Error: …" line and its echo. */
function ownOutput(said: string): string {
  const sentinelAt = SENTINEL_REPORT.exec(said)!.index;
  const before = said.slice(0, sentinelAt);
  return before.slice(0, before.lastIndexOf('Error:'));
}

/**
 * One `nft -i` process: each transaction is one line, its commands joined
 * by `;`, which nft runs as one batch (all or nothing), as `nft -f` would a
 * file. nft checks the ruleset's generation before each line and reads
 * again what someone else changed meanwhile.
 */
class NftProcess {
  private readonly child: BatchChild;
  /**
   * What nft's line editor prints as it starts goes first, with a sentinel of
   * its own: without a terminfo database (the managed plugin's rootfs) it
   * says "Cannot read termcap database", which is no transaction's error.
   */
  private readonly started: Promise<string>;
  /** It answered its start-up sentinel: it reads commands (a later death is not the build's). */
  startedFine = false;

  constructor(via: readonly string[]) {
    const [file = 'nft', ...args] = [...via, 'nft', '-i'];
    this.child = new BatchChild('nft -i session', file, args);
    this.started = this.child.exchange(`${SENTINEL}\n`, reportEnd, 'start-up');
    this.started.then(
      () => (this.startedFine = true),
      () => undefined, // a process that dies at once fails its first transaction instead
    );
  }

  get alive(): boolean {
    return this.child.alive;
  }

  kill(): void {
    this.child.kill();
  }

  /** undefined when the transaction went in, else what nft printed about it. */
  async transact(commands: readonly string[]): Promise<string | undefined> {
    await this.started;
    const line = commands.join('; ');
    const said = await this.child.exchange(`${line}\n${SENTINEL}\n`, reportEnd, line.length > 200 ? `${line.slice(0, 200)}…` : line);
    const own = ownOutput(said);
    return own.trim() === '' ? undefined : own;
  }
}

/**
 * A Runner that sends `nft -f -` transactions through one long-lived
 * `nft -i` process and everything else (listings, other programs) to the
 * runner it wraps: a firewall change costs a write and a netlink batch
 * (~0.5 ms) instead of a program start (~5 ms, more from a large daemon on
 * a busy host). Transactions queue behind each other; the kernel runs
 * them one at a time anyway.
 */
export class NftSessionRunner implements Runner {
  private process: NftProcess | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  /** `nft -i` cannot serve here (see transact). */
  private unsupported = false;

  /**
   * `onSessionStart`: told of each nft process started (metrics count
   * program starts); `via`: what runs nft (`ip netns exec NS` for another
   * netns than the daemon's; tests).
   */
  constructor(
    private readonly inner: Runner,
    private readonly onSessionStart: () => void = () => {},
    private readonly via: readonly string[] = [],
  ) {}

  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    if (file !== 'nft' || args.length !== 2 || args[0] !== '-f' || args[1] !== '-' || options.input === undefined) return this.inner.run(file, args, options);
    const commands = options.input.split('\n').filter((line) => line.trim() !== '');
    const result = this.tail.then(() => this.transact(commands));
    this.tail = result.catch(() => undefined);
    return result;
  }

  /**
   * A process that died under a transaction is replaced, and the transaction
   * sent again: it either ran whole or not at all. One that dies again at
   * once (an nft built without its interactive CLI) is given up for good:
   * transactions go to `nft -f -` processes as before.
   */
  private async transact(commands: readonly string[]): Promise<RunResult> {
    if (this.unsupported) return this.inner.run('nft', ['-f', '-'], { input: `${commands.join('\n')}\n` });
    let said: string | undefined;
    try {
      said = await this.current().transact(commands);
    } catch (error) {
      if (!(error instanceof ProcessGone)) throw error;
      this.process = undefined;
      const session = this.current();
      try {
        said = await session.transact(commands);
      } catch (again) {
        if (!(again instanceof ProcessGone) || session.startedFine) throw again;
        this.unsupported = true;
        return this.transact(commands);
      }
    }
    if (said !== undefined) throw new CommandError('nft -f -', 1, said);
    return { stdout: '', stderr: '' };
  }

  private current(): NftProcess {
    if (!this.process?.alive) {
      this.process = new NftProcess(this.via);
      this.onSessionStart();
    }
    return this.process;
  }
}
