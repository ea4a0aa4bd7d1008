// The one place where the harness runs short-lived programs. Always argument
// arrays (never a shell string), never rejects on a non-zero exit by itself:
// callers either inspect the result (`run`) or want an error that shows the
// command line and its stderr (`runOk`).
import { execa } from 'execa';

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  /** Kill the command after this many ms (default 60 s) so a hung step cannot hang the suite. */
  timeoutMs?: number;
  input?: string;
  /** The complete environment of the command (the caller's is not merged in). */
  env?: Record<string, string | undefined>;
}

const DEFAULT_TIMEOUT_MS = 60_000;

export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const r = await execa(file, args, {
    reject: false,
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
    ...(opts.input === undefined ? {} : { input: opts.input }),
    ...(opts.env ? { env: opts.env, extendEnv: false } : {}),
    stripFinalNewline: true,
  });
  if (r.timedOut) {
    return { stdout: r.stdout, stderr: `${r.stderr}\n[harness] timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`, exitCode: 124 };
  }
  if (r.failed && r.exitCode === undefined) {
    // Could not start at all (ENOENT ...) or died from a signal.
    return { stdout: r.stdout, stderr: `${r.stderr}\n[harness] ${r.shortMessage}`, exitCode: 128 };
  }
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? 0 };
}

/** Like `run`, but throws (with the command line, exit code and stderr) unless it exits 0. */
export async function runOk(file: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const r = await run(file, args, opts);
  if (r.exitCode !== 0) throw new Error(describeFailure([file, ...args], r));
  return r;
}

export function describeFailure(argv: readonly string[], r: CommandResult): string {
  const output = (r.stderr.trim() || r.stdout.trim() || '(no output)').slice(-4000);
  return `command failed (exit ${r.exitCode}): ${argv.join(' ')}\n${output}`;
}
