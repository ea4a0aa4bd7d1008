// A "simulated Docker host": one netns with its own dockerd, the test image
// imported, and (optionally) tsnet running as that host's plugin. Meant for
// beforeAll/afterAll:
//
//   const host = await createDockerHost();       // beforeAll
//   await host.dockerOk(['network', 'create', '-d', host.driver, ...]);
//   await host.destroy();                        // afterAll
import { join } from 'node:path';
import { CleanupStack } from './cleanup.js';
import { DockerClient } from './docker-client.js';
import type { CommandResult, RunOptions } from './exec.js';
import { type Dockerd, startDockerd } from './dockerd.js';
import { importTestImage } from './image.js';
import { newRunId } from './names.js';
import { createVethPair } from './netns.js';
import { assertPreflight } from './preflight.js';
import { startTsnet, type TsnetDaemon, type TsnetOptions } from './tsnet.js';

export interface DockerHostOptions {
  /** Run id (netns, dir, cgroup parent). Default: a fresh id. */
  id?: string;
  /** Extra dockerd flags, e.g. `['--bridge=none']`. */
  dockerdArgs?: readonly string[];
  /** Start tsnet as this host's plugin (default true). `false` gives a plain docker host. */
  tsnet?: boolean;
  driver?: string;
  logLevel?: TsnetOptions['logLevel'];
  /** Stand-in for dist/src/cli.js (harness self-test only). */
  tsnetCli?: string;
  /** More `tsnet daemon` flags (`--cluster-store …`); `--docker-host` of this host's dockerd is always passed. */
  tsnetArgs?: readonly string[];
  /** Import tsn-busybox:latest (default true). */
  image?: boolean;
}

/** As a DockerClient it has `docker()`, `dockerOk()` and `execIn()` aimed at the host's dockerd. */
export class DockerHost extends DockerClient {
  private readonly cleanup = new CleanupStack();
  private tsnetDaemon: TsnetDaemon | undefined;

  private constructor(readonly dockerd: Dockerd) {
    super(dockerd.host, join(dockerd.dir, 'client'));
  }

  /** Builds the host step by step; if a step fails, undoes the earlier ones before throwing. */
  static async create(opts: DockerHostOptions = {}): Promise<DockerHost> {
    const wantTsnet = opts.tsnet ?? true;
    assertPreflight({ tsnet: wantTsnet && opts.tsnetCli === undefined });
    const dockerd = await startDockerd({ id: opts.id ?? newRunId(), extraArgs: opts.dockerdArgs ?? [] });
    const host = new DockerHost(dockerd);
    host.cleanup.defer(`destroy dockerd ${dockerd.id}`, () => dockerd.destroy());
    try {
      if (opts.image ?? true) await importTestImage(dockerd);
      if (wantTsnet) {
        host.tsnetDaemon = await startTsnet({
          netns: dockerd.netns,
          pluginDir: dockerd.pluginDir,
          stateDir: join(dockerd.dir, 'state'),
          logFile: join(dockerd.dir, 'tsnet.log'),
          ...(opts.driver ? { driver: opts.driver } : {}),
          ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
          ...(opts.tsnetCli ? { cli: opts.tsnetCli } : {}),
          // Container names for DNS come from this host's private dockerd, never the machine's.
          extraArgs: ['--docker-host', dockerd.host, ...(opts.tsnetArgs ?? [])],
        });
        host.cleanup.defer('stop tsnet', () => host.tsnetDaemon?.stop());
      }
      // Runs first on destroy: containers leave their networks while dockerd
      // AND tsnet are still up, so dockerd's own shutdown has nothing to wait for.
      host.cleanup.defer('remove containers', () => host.removeAllContainers());
    } catch (err) {
      await host.destroy().catch(() => undefined);
      throw err;
    }
    return host;
  }

  get id(): string {
    return this.dockerd.id;
  }

  get netns(): string {
    return this.dockerd.netns;
  }

  get dir(): string {
    return this.dockerd.dir;
  }

  /** The tsnet daemon; throws if the host was created with `tsnet: false`. */
  get tsnet(): TsnetDaemon {
    if (!this.tsnetDaemon) throw new Error(`host ${this.id} runs no tsnet (created with tsnet: false)`);
    return this.tsnetDaemon;
  }

  /** Driver name to pass to `docker network create -d`. */
  get driver(): string {
    return this.tsnet.driver;
  }

  /** Runs a command in the host's netns (e.g. `['ip', '-j', 'link']`, `['iptables-save']`). */
  execInHost(argv: readonly string[], opts?: RunOptions): Promise<CommandResult> {
    return this.dockerd.execInHost(argv, opts);
  }

  /** `docker rm -f` of every container on this host. */
  async removeAllContainers(): Promise<void> {
    const ids = (await this.dockerOk(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (ids.length > 0) await this.dockerOk(['rm', '-f', ...ids], { timeoutMs: 60_000 });
  }

  /** Tears down everything (containers, tsnet, dockerd, leftovers, netns, dir). Idempotent. */
  destroy(): Promise<void> {
    return this.cleanup.run();
  }
}

export interface WireOptions {
  /** Interface name on both ends (default `eth1`, like a second NIC). */
  ifname?: string;
  /** Optional CIDR addresses for the two ends, e.g. `192.0.2.1/24`. */
  addressA?: string;
  addressB?: string;
}

/**
 * Joins two simulated hosts with a veth pair: the "physical wire" that
 * macvlan parents or bridge uplinks sit on. It disappears with either netns,
 * so destroy() of a host also removes it.
 */
export async function wireHosts(a: DockerHost, b: DockerHost, opts: WireOptions = {}): Promise<void> {
  const ifname = opts.ifname ?? 'eth1';
  await createVethPair(
    { netns: a.netns, name: ifname, ...(opts.addressA ? { address: opts.addressA } : {}) },
    { netns: b.netns, name: ifname, ...(opts.addressB ? { address: opts.addressB } : {}) },
  );
}

/** Shorthand for DockerHost.create(). */
export function createDockerHost(opts?: DockerHostOptions): Promise<DockerHost> {
  return DockerHost.create(opts);
}
