// The docker CLI, always pointed at one private daemon with an explicit -H.
//
// A test must never reach /var/run/docker.sock (another dockerd may listen
// there) and never pull from a registry, so DOCKER_HOST/DOCKER_CONTEXT from
// the caller's environment are dropped, the client gets its own config dir,
// and `run`/`create` without `--pull=never` are refused outright.
import { existsSync } from 'node:fs';
import { type CommandResult, type RunOptions, describeFailure, run } from './exec.js';

/** Debian's docker.io client (20.10) matches the daemon; fall back to whatever is on PATH. */
export const DOCKER_CLIENT = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

const CALLER_ENV_DROPPED = ['DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_CONFIG'];

export class DockerClient {
  constructor(
    /** `unix:///tmp/tsn/<id>/docker.sock` */
    readonly host: string,
    /** Client config dir (keeps ~/.docker untouched). */
    private readonly configDir: string,
  ) {}

  /** Runs `docker -H <host> ...args`; never throws on a non-zero exit. */
  async docker(args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    refuseImplicitPull(args);
    return run(DOCKER_CLIENT, ['-H', this.host, ...args], { ...opts, env: this.env(opts.env) });
  }

  /** Like docker(), but throws with the command line and stderr on failure. */
  async dockerOk(args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const r = await this.docker(args, opts);
    if (r.exitCode !== 0) throw new Error(describeFailure(['docker', '-H', this.host, ...args], r));
    return r;
  }

  /** `docker exec <container> ...cmd`; the result is returned as is (tests often expect failures). */
  execIn(container: string, cmd: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    return this.docker(['exec', container, ...cmd], opts);
  }

  private env(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const k of CALLER_ENV_DROPPED) delete env[k];
    return { ...env, DOCKER_CONFIG: this.configDir, ...extra };
  }
}

/** Throws unless every `run`/`create` carries `--pull=never` (an image pull would leave the machine). */
function refuseImplicitPull(args: readonly string[]): void {
  const verb = args[0] === 'container' ? args[1] : args[0];
  if ((verb === 'run' || verb === 'create') && !args.includes('--pull=never')) {
    throw new Error(`docker ${verb} needs --pull=never (tests must never pull from a registry): docker ${args.join(' ')}`);
  }
}
