// A private dockerd per simulated host: its own netns AND its own mount
// namespace, data-root, exec-root, pidfile, API socket, managed containerd,
// /run/docker/plugins and /etc/docker. It shares nothing with any other
// dockerd on the machine (recipe: reference/harness/nsdockerd.sh).
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { DockerClient } from './docker-client.js';
import type { CommandResult, RunOptions } from './exec.js';
import { removeLeftovers, type LeftoverReport } from './leftovers.js';
import { logBlock, tailFile } from './logs.js';
import { assertSocketPath, cgroupParent, newRunId, runDir } from './names.js';
import { createNetns, deleteNetns, execInNetns, netnsExists, netnsPath } from './netns.js';
import { isAlive, terminate } from './processes.js';
import { httpGetUnix } from './unix-socket.js';
import { waitUntil } from './wait.js';

export const DOCKERD_BINARY = '/usr/sbin/dockerd';

// Runs inside `nsenter --net=<netns> unshare --mount --propagation private`.
// A constant script: every value arrives as a positional argument.
// Why not `ip netns exec`: it remounts /sys, which hides /sys/fs/cgroup, and
// dockerd then dies with "Devices cgroup isn't mounted". So: keep the cgroup
// tree aside, mount a sysfs of this netns, put the cgroup tree back.
const IN_PRIVATE_MOUNT_NS = `
set -e
dir=$1; dockerd=$2; shift 2
mount --rbind /sys/fs/cgroup "$dir/cg"
mount -t sysfs sysfs /sys
mount --move "$dir/cg" /sys/fs/cgroup
mount --bind "$dir/plugins" /run/docker/plugins
mount --bind "$dir/etc" /etc/docker
exec "$dockerd" "$@"
`;

export interface DockerdOptions {
  /** Run id; names the dir, the cgroup parent and (unless `netns` is given) the netns. Default: a fresh id. */
  id?: string;
  /** Existing netns to run in (kept on destroy). Default: a new netns named after the id (deleted on destroy). */
  netns?: string;
  /** Extra dockerd flags, e.g. `['--bridge=none']`. */
  extraArgs?: readonly string[];
  /** Upper bound for the API to answer /_ping (default 60 s). */
  readyTimeoutMs?: number;
}

/**
 * A running private dockerd. Create with `startDockerd()`. As a DockerClient
 * it has `docker()`, `dockerOk()` and `execIn()` aimed at this daemon.
 */
export class Dockerd extends DockerClient {
  readonly dir: string;
  readonly socketPath: string;
  /** Host path that this dockerd sees as /run/docker/plugins: plugins put `<driver>.sock` here. */
  readonly pluginDir: string;
  /** Host path that this dockerd sees as /etc/docker (plugins/*.spec would go to `<etcDir>/plugins`). */
  readonly etcDir: string;
  readonly logFile: string;
  readonly cgroupParent: string;
  private child: ResultPromise | undefined;
  private childPid: number | undefined;
  private destroyed = false;

  constructor(
    readonly id: string,
    readonly netns: string,
    private readonly ownsNetns: boolean,
    private readonly extraArgs: readonly string[],
  ) {
    const dir = runDir(id);
    const socketPath = assertSocketPath(join(dir, 'docker.sock'));
    super(`unix://${socketPath}`, join(dir, 'client'));
    this.dir = dir;
    this.socketPath = socketPath;
    this.pluginDir = join(this.dir, 'plugins');
    this.etcDir = join(this.dir, 'etc');
    this.logFile = join(this.dir, 'dockerd.log');
    this.cgroupParent = cgroupParent(id);
  }

  /** PID of the dockerd process (nsenter, unshare and bash all exec, so it is the PID we spawned). */
  get pid(): number {
    if (this.childPid === undefined) throw new Error(`dockerd ${this.id} is not running`);
    return this.childPid;
  }

  /** Runs a command in this host's netns (as the host itself, not in a container). */
  execInHost(argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    return execInNetns(this.netns, argv, opts);
  }

  logTail(lines = 40): string {
    return tailFile(this.logFile, lines);
  }

  /** Spawns dockerd and waits for /_ping. Called by startDockerd(). */
  async start(readyTimeoutMs: number): Promise<void> {
    for (const sub of ['data', 'exec', 'plugins', 'etc', 'cg', 'client']) mkdirSync(join(this.dir, sub), { recursive: true });
    // Mount points for the private bind mounts; creating them leaves the host's own contents untouched.
    mkdirSync('/run/docker/plugins', { recursive: true });
    mkdirSync('/etc/docker', { recursive: true });

    const dockerdArgs = [
      '--data-root', join(this.dir, 'data'),
      '--exec-root', join(this.dir, 'exec'),
      '--pidfile', join(this.dir, 'docker.pid'),
      '-H', this.host,
      '--cgroup-parent', this.cgroupParent,
      ...this.extraArgs,
    ];
    const child = execa(
      'nsenter',
      [`--net=${netnsPath(this.netns)}`, 'unshare', '--mount', '--propagation', 'private',
        'bash', '-c', IN_PRIVATE_MOUNT_NS, 'tsn-dockerd', this.dir, DOCKERD_BINARY, ...dockerdArgs],
      { stdin: 'ignore', stdout: { file: this.logFile, append: true }, stderr: { file: this.logFile, append: true }, reject: false },
    );
    this.child = child;
    this.childPid = child.pid;
    if (this.childPid === undefined) throw new Error(`could not spawn dockerd for ${this.id}:\n${this.logTail()}`);

    await waitUntil(
      async () => {
        if (!isAlive(this.pid)) throw new Error(`dockerd ${this.id} exited during start-up\n${logBlock('dockerd log', this.logFile)}`);
        return httpGetUnix(this.socketPath, '/_ping', 2_000).then((r) => r.status === 200, () => false);
      },
      { timeoutMs: readyTimeoutMs, what: `dockerd ${this.id} to answer /_ping on ${this.socketPath}`, diagnostics: () => logBlock('dockerd log', this.logFile) },
    );
  }

  /**
   * Stops only this dockerd: SIGTERM to its PID (it stops its containers and
   * its containerd), SIGKILL if it is still alive after 30 s. Throws if it
   * needed SIGKILL, so an unclean shutdown is visible.
   */
  async stop(): Promise<void> {
    const pid = this.childPid;
    if (pid === undefined) return;
    // dockerd waits up to 15 s (its shutdown-timeout) for containers; allow for that plus containerd.
    const how = await terminate(pid, 30_000);
    await this.child;
    this.child = undefined;
    this.childPid = undefined;
    if (how === 'killed') throw new Error(`dockerd ${this.id} ignored SIGTERM for 30 s and was SIGKILLed\n${logBlock('dockerd log', this.logFile)}`);
  }

  /**
   * stop() + kill whatever of this run survived + rmdir its cgroups + delete
   * the netns (if this dockerd created it) + remove its dir. Idempotent. Every
   * step runs even if an earlier one failed; the first failure is rethrown.
   */
  async destroy(): Promise<LeftoverReport | undefined> {
    if (this.destroyed) return undefined;
    this.destroyed = true;
    const errors: unknown[] = [];
    const attempt = async <T>(step: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await step();
      } catch (err) {
        errors.push(err);
        return undefined;
      }
    };
    await attempt(() => this.stop());
    const report = await attempt(() => removeLeftovers(this.dir, this.cgroupParent));
    if (this.ownsNetns) await attempt(() => deleteNetns(this.netns));
    await attempt(async () => rmSync(this.dir, { recursive: true, force: true }));
    if (errors.length > 0) throw errors[0];
    return report;
  }
}

/**
 * Starts a private dockerd and waits until its API answers. If start-up
 * fails, everything created so far is removed before the error is thrown.
 */
export async function startDockerd(opts: DockerdOptions = {}): Promise<Dockerd> {
  const id = opts.id ?? newRunId();
  const ownsNetns = opts.netns === undefined;
  const netns = opts.netns ?? id;
  if (existsSync(runDir(id))) throw new Error(`${runDir(id)} already exists: run ids must be unique`);
  if (ownsNetns) await createNetns(netns);
  else if (!netnsExists(netns)) throw new Error(`netns ${netns} does not exist`);

  const dockerd = new Dockerd(id, netns, ownsNetns, opts.extraArgs ?? []);
  try {
    await dockerd.start(opts.readyTimeoutMs ?? 60_000);
  } catch (err) {
    await dockerd.destroy().catch(() => undefined);
    throw err;
  }
  return dockerd;
}
