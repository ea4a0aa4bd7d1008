import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import supertest from 'supertest';
import { createPlugin, type Plugin, type PluginOptions } from '../../src/plugin.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { CommandError, CommandSysctl, ExecaRunner, type FirewallKind, ProgramNotFound, type RunOptions, type RunResult, type Runner, UncheckedHostPorts } from '../../src/sys/index.js';

/** Runs every program of the plugin inside one test netns, so the real kernel is used but the host is untouched. */
export class NetnsRunner implements Runner {
  private readonly inner = new ExecaRunner();

  constructor(private readonly netns: string) {}

  async run(file: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    try {
      return await this.inner.run('ip', ['netns', 'exec', this.netns, file, ...args], options);
    } catch (error) {
      // `ip netns exec` of a program that is not installed: as ExecaRunner says it.
      if (error instanceof CommandError && error.stderr.includes(`exec of "${file}" failed: No such file or directory`)) throw new ProgramNotFound(file);
      throw error;
    }
  }
}

/** A plugin on a real SQLite state dir, programming a real netns; `restart` reopens the same state. */
export class NetnsPlugin {
  /** Exposed so a test can make a commit fail. */
  store!: SqliteStore;
  plugin!: Plugin;
  readonly stateDir = mkdtempSync(join(tmpdir(), 'tsnet-it-'));

  /** `firewall`: the backend, as --firewall; absent: the daemon's default choice. */
  constructor(
    private readonly netns: string,
    private firewall?: FirewallKind,
    /** How long endpoints that look gone at start-up are kept (the daemon's 10 s would only slow the tests). */
    private readonly staleGraceMs = 300,
    /** More of the daemon's options (the cluster's shared pools and segments). */
    private readonly extra: Pick<PluginOptions, 'sharedPools' | 'segments'> = {},
  ) {}

  async start(): Promise<this> {
    this.store = new SqliteStore(this.stateDir);
    const runner = new NetnsRunner(this.netns);
    // Its sockets would hold ports of the test process's netns, not the plugin's: host ports are left to the e2e tests.
    this.plugin = await createPlugin({ store: this.store, runner, hostPorts: new UncheckedHostPorts(), sysctl: new CommandSysctl(runner) }, { staleGraceMs: this.staleGraceMs, ...this.extra, ...(this.firewall ? { firewall: this.firewall } : {}) }, pino({ level: 'silent' }));
    return this;
  }

  /** Reopens the same state; `firewall` switches the backend, as a daemon restarted with another --firewall. */
  async restart(firewall?: FirewallKind): Promise<void> {
    this.plugin.networks.stop();
    this.plugin.dhcp.leases.stop();
    await this.plugin.linkReaper.settled();
    await this.store.close();
    if (firewall) this.firewall = firewall;
    await this.start();
  }

  post(method: string, body: unknown): supertest.Test {
    return supertest(this.plugin.app).post(`/${method}`).send(Buffer.from(JSON.stringify(body)));
  }

  async close(): Promise<void> {
    this.plugin?.networks.stop();
    this.plugin?.dhcp.leases.stop();
    await this.plugin?.linkReaper.settled();
    await this.store.close();
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
