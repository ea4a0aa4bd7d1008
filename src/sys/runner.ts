import { execa } from 'execa';

/** What a program printed, once it exited with status 0. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the program's standard input (ip -batch -, iptables-restore). */
  input?: string;
}

/**
 * The one door through which tsnet starts programs. Arguments are always an
 * array: no value from a request ever reaches a shell.
 */
export interface Runner {
  run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** A program exited non-zero; carries what it printed so callers can decide. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
    /** What it printed before failing: some programs report their result by exit status and output together (arping). */
    readonly stdout = '',
  ) {
    super(`${command} failed (exit ${exitCode ?? 'signal'}): ${stderr.trim() || 'no output'}`);
    this.name = 'CommandError';
  }
}

/** The program is not installed (not in PATH): nothing ran. */
export class ProgramNotFound extends CommandError {
  constructor(command: string) {
    super(command, undefined, `${command.split(' ')[0]} is not installed (not found in PATH)`);
    this.name = 'ProgramNotFound';
  }
}

export class ExecaRunner implements Runner {
  /** Counts programs started, for metrics and benchmarks. */
  spawned = 0;

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.spawned++;
    const result = await execa(file, args, {
      input: options.input,
      reject: false,
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
    if ((result as { code?: string }).code === 'ENOENT') throw new ProgramNotFound([file, ...args].join(' '));
    if (result.exitCode !== 0) {
      throw new CommandError([file, ...args].join(' '), result.exitCode, String(result.stderr), String(result.stdout));
    }
    return { stdout: String(result.stdout), stderr: String(result.stderr) };
  }
}

/** One program start seen by a RecordingRunner. */
export interface RecordedCommand {
  file: string;
  args: string[];
  input?: string;
}

type Reply = RunResult | Error;

/**
 * Records command plans for unit tests and answers from a script of replies
 * keyed by `file arg0 arg1…` prefixes; unmatched commands succeed silently.
 */
export class RecordingRunner implements Runner {
  readonly commands: RecordedCommand[] = [];
  private readonly replies: Array<{ prefix: string; reply: Reply }> = [];

  reply(prefix: string, reply: Reply | string): this {
    this.replies.push({ prefix, reply: typeof reply === 'string' ? { stdout: reply, stderr: '' } : reply });
    return this;
  }

  async run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.commands.push({ file, args: [...args], ...(options.input !== undefined ? { input: options.input } : {}) });
    const line = [file, ...args].join(' ');
    const match = this.replies.find((r) => line.startsWith(r.prefix));
    if (!match) return { stdout: '', stderr: '' };
    if (match.reply instanceof Error) throw match.reply;
    return match.reply;
  }

  /** The recorded commands as single lines, with batch input appended. */
  lines(): string[] {
    return this.commands.map((c) => [c.file, ...c.args].join(' ') + (c.input ? `\n${c.input.trimEnd()}` : ''));
  }
}
