// The tsnet daemon under test, run as a plugin of one simulated host:
//   ip netns exec <ns> [wrapper…] node <repo>/dist/src/cli.js daemon --name <driver>
//       --socket-dir <pluginDir> --state-dir <stateDir> [--log-level <level>] [extraArgs…]
// `ip netns exec` (unlike a bare nsenter) also gives it a /sys of that netns,
// so /sys/class/net shows the host's links. Its socket lands in the dockerd's
// plugin dir, which is how that dockerd (and only that one) discovers it.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { type CommandResult, type RunOptions, run } from './exec.js';
import { logBlock, tailFile } from './logs.js';
import { assertSocketPath } from './names.js';
import { isAlive, kill9, terminate } from './processes.js';
import { socketAccepts } from './unix-socket.js';
import { waitUntil } from './wait.js';

/** Root of the checkout this harness lives in. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI (`npm run build`). */
export const TSNET_CLI = join(REPO_ROOT, 'dist/src/cli.js');

export interface TsnetOptions {
  /** Netns of the simulated host (the same one its dockerd runs in). */
  netns: string;
  /** The dockerd's plugin dir (`Dockerd.pluginDir`); the socket is `<pluginDir>/<driver>.sock`. */
  pluginDir: string;
  /** Persistent state; kept across restart(). */
  stateDir: string;
  /** Where stdout and stderr go (appended, so a restart keeps the earlier log). */
  logFile: string;
  /** Plugin/driver name, default `tsnet`. */
  driver?: string;
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** Upper bound for the socket to accept connections (default 60 s: a loaded CI machine, not a performance limit). */
  readyTimeoutMs?: number;
  /** Grace period after SIGTERM before stop() resorts to SIGKILL (default 15 s). */
  stopTimeoutMs?: number;
  /** Script that implements the CLI contract; default the build, TSNET_CLI. The harness self-test passes a stand-in. */
  cli?: string;
  /** More `tsnet daemon` flags, e.g. `['--cluster-store', 'etcd://10.0.0.1:2379', '--host-id', 'a']`; kept across restart(). */
  extraArgs?: readonly string[];
  /** Environment of the daemon on top of the test's own, e.g. a PATH with slowed-down tools; kept across restart(). */
  env?: Readonly<Record<string, string>>;
  /**
   * A command the daemon runs under inside its netns, e.g. the service
   * unit's sandbox (serviceSandbox()); it must exec, so pid stays the daemon's.
   */
  wrapper?: readonly string[];
}

export class TsnetDaemon {
  readonly driver: string;
  readonly socketPath: string;
  private child: ResultPromise | undefined;
  private childPid: number | undefined;

  private readonly cli: string;

  constructor(private readonly opts: TsnetOptions) {
    this.driver = opts.driver ?? 'tsnet';
    this.cli = opts.cli ?? TSNET_CLI;
    this.socketPath = assertSocketPath(join(opts.pluginDir, `${this.driver}.sock`));
  }

  get stateDir(): string {
    return this.opts.stateDir;
  }

  get logFile(): string {
    return this.opts.logFile;
  }

  /** PID of the running node process (`ip netns exec` execs, so it is the PID we spawned). */
  get pid(): number {
    if (this.childPid === undefined) throw new Error(`tsnet ${this.driver} is not running`);
    return this.childPid;
  }

  get running(): boolean {
    return this.childPid !== undefined && isAlive(this.childPid);
  }

  /** The command line, as an argv, that start() runs. */
  argv(): string[] {
    const args = ['netns', 'exec', this.opts.netns, ...(this.opts.wrapper ?? []), process.execPath, this.cli, 'daemon',
      '--name', this.driver, '--socket-dir', this.opts.pluginDir, '--state-dir', this.opts.stateDir];
    if (this.opts.logLevel) args.push('--log-level', this.opts.logLevel);
    args.push(...(this.opts.extraArgs ?? []));
    return ['ip', ...args];
  }

  /** Spawns the daemon and waits until its socket accepts connections. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`tsnet ${this.driver} is already running (pid ${this.childPid})`);
    if (!existsSync(this.cli)) throw new Error(`${this.cli} does not exist: run \`npm run build\` first`);
    mkdirSync(this.opts.stateDir, { recursive: true });
    mkdirSync(dirname(this.opts.logFile), { recursive: true });
    const [file, ...args] = this.argv() as [string, ...string[]];
    const log = { file: this.opts.logFile, append: true } as const;
    const child = execa(file, args, { stdin: 'ignore', stdout: log, stderr: log, reject: false, ...(this.opts.env ? { env: this.opts.env } : {}) });
    this.child = child;
    this.childPid = child.pid;
    if (this.childPid === undefined) throw new Error(`could not spawn tsnet\n${this.logBlock()}`);

    await waitUntil(
      async () => {
        if (!isAlive(this.pid)) {
          const exit = await child;
          throw new Error(`tsnet exited during start-up (exit ${exit.exitCode ?? exit.signal})\n${this.logBlock()}`);
        }
        return socketAccepts(this.socketPath);
      },
      { timeoutMs: this.opts.readyTimeoutMs ?? 60_000, what: `tsnet to accept connections on ${this.socketPath}`, diagnostics: () => this.logBlock() },
    );
  }

  /** SIGTERM and wait for exit. Throws if it had to be SIGKILLed (a shutdown bug worth seeing). */
  async stop(): Promise<void> {
    const pid = this.childPid;
    if (pid === undefined) return;
    const how = await terminate(pid, this.opts.stopTimeoutMs ?? 15_000);
    await this.reap();
    if (how === 'killed') throw new Error(`tsnet ignored SIGTERM and was SIGKILLed\n${this.logBlock()}`);
  }

  /** SIGKILL, as in a crash: no shutdown code runs, the socket file stays behind. */
  async kill9(): Promise<void> {
    const pid = this.childPid;
    if (pid === undefined) return;
    await kill9(pid);
    await this.reap();
  }

  /** stop() (if running) then start() with the same arguments and the same state dir. */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Runs another `tsnet` command (e.g. `cluster ls --json`) in the host's netns against this daemon's admin socket. */
  runCli(args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    return run('ip', ['netns', 'exec', this.opts.netns, process.execPath, this.cli, ...args, '--name', this.driver, '--socket-dir', this.opts.pluginDir], opts);
  }

  logTail(lines = 40): string {
    return tailFile(this.opts.logFile, lines);
  }

  private logBlock(): string {
    return logBlock(`tsnet log (driver ${this.driver})`, this.opts.logFile);
  }

  private async reap(): Promise<void> {
    await this.child;
    this.child = undefined;
    this.childPid = undefined;
  }
}

/** Starts tsnet for one simulated host and waits for its socket. */
export async function startTsnet(opts: TsnetOptions): Promise<TsnetDaemon> {
  const daemon = new TsnetDaemon(opts);
  try {
    await daemon.start();
  } catch (err) {
    await daemon.kill9().catch(() => undefined);
    throw err;
  }
  return daemon;
}
