import type { Logger } from 'pino';
import { iptablesSave, KernelMonitor, type Runner } from '../sys/index.js';
import { withoutKey, Xfrm } from '../sys/xfrm.js';
import { type EventJudge, judgeLinkEvent, judgeRuleEvent, judgeXfrmEvent, type Verdict } from './kernel-events.js';
import type { RepairReport } from './reconciler.js';

/** Where the watcher learns that someone changed the kernel. */
export interface DriftWatcherOptions {
  /**
   * iptables-legacy tells nobody of changes: its rules are read every
   * POLL_MS as well (one family a time: one program start per poll).
   * Everything else (links, nftables, iptables-nft) sends events.
   */
  pollRules: boolean;
  /**
   * How long the plugin has served no request, in ms: a look waits for a
   * quiet moment, so it never competes with dockerd's requests (whose own
   * link and rule changes are what most events are), but no longer than
   * MAX_POSTPONE_MS after the first event.
   */
  quietForMs?: () => number;
  /** Tells tsnet's own changes, and what tsnet does not keep, from drift. */
  judge: EventJudge;
  /** Told of every look (metrics). */
  onLook?: () => void;
}

/** Events come in bursts (a bridge deleted takes its addresses and routes along): one look after the burst. */
const SETTLE_MS = 100;
/** iptables-legacy's rules are read this often (one family a time). */
const POLL_MS = 1000;
/** A look waits for this much quiet … */
const QUIET_MS = 200;
/** … but never longer than this after the event that asked for it. */
const MAX_POSTPONE_MS = 1000;

/** The shell's exit status when the monitor program does not exist. */
const COMMAND_NOT_FOUND = 127;

/** A failing repair is tried again after 1 s, 2 s, 4 s … up to a minute, not at every event its own writes cause. */
const MAX_BACKOFF_MS = 60_000;
/** The safety net under the judged events: a look every so often whatever they said. */
const PERIODIC_LOOK_MS = 2 * 60_000;

/**
 * Watches the kernel for changes tsnet did not make and has them repaired:
 * one long-lived `ip -o monitor` for links, addresses, routes and the
 * neighbour and forwarding entries of overlays, one `nft
 * monitor` for rules (and a poll of iptables-save on iptables-legacy). An
 * event schedules one look at every network only when it may be drift: a
 * change to what tsnet keeps in place that tsnet did not just make itself
 * (kernel-events.ts). A `docker run` on a tsnet network makes no look. A
 * periodic look every few minutes is the safety net.
 */
export class DriftWatcher {
  private readonly monitors = new Set<KernelMonitor>();
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private pending: string | undefined;
  /** When the first event the next look answers came. */
  private pendingSince = 0;
  private backoffMs = 0;
  /** What the last look left unrepaired, to tell drift that stays from drift that is new. */
  private lastRemaining: string | undefined;
  private stopped = false;
  private readonly saved: Partial<Record<4 | 6, string>> = {};
  /** When each family was read last. */
  private readonly readAt: Record<4 | 6, number> = { 4: 0, 6: 0 };
  private periodic: NodeJS.Timeout | undefined;

  constructor(
    private readonly repair: (reason: string) => Promise<RepairReport>,
    private readonly runner: Runner,
    private readonly log: Logger,
    private readonly options: DriftWatcherOptions,
  ) {}

  start(): void {
    this.follow('ip', ['-o', 'monitor', 'link', 'address', 'route', 'neigh'], 'a link, address, route or overlay peer entry changed', (line) => judgeLinkEvent(line, this.options.judge));
    // nftables (tsnet's table, and iptables-nft's) sends events; iptables-legacy does not.
    this.follow('nft', ['monitor'], 'a rule changed', (line) => judgeRuleEvent(line, this.options.judge));
    void this.followXfrm();
    if (this.options.pollRules) this.pollRules(4);
    this.periodic = setInterval(() => this.soon('periodic look'), PERIODIC_LOOK_MS);
    this.periodic.unref();
  }

  /** Stops the monitors and waits for a repair in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.poller);
    clearInterval(this.periodic);
    for (const monitor of this.monitors) monitor.stop();
    await this.running;
  }

  /**
   * Encrypted overlays: a flush of the IPsec tables stops their traffic (it
   * never leaves in clear), repaired at once rather than at the next
   * periodic look. A kernel without XFRM has no such tables, and no monitor.
   */
  private async followXfrm(): Promise<void> {
    if (!(await new Xfrm(this.runner).hasTables())) {
      this.log.info('this kernel has no IPsec (XFRM) tables: not watching them');
      return;
    }
    if (!this.stopped) this.follow('ip', ['-o', 'xfrm', 'monitor'], 'an IPsec SA or policy changed', judgeXfrmEvent, withoutKey);
  }

  /** `shown`: the line as the log may show it. */
  private follow(file: string, args: string[], reason: string, judge: (line: string) => Verdict, shown: (line: string) => string = (line) => line): void {
    const monitor = new KernelMonitor(file, args, {
      onEvent: (line) => judge(line) === 'look' && this.soon(`${reason}: ${shown(line).slice(0, 120)}`),
      onError: (error) => this.log.error({ err: error, command: file }, 'cannot watch the kernel for changes'),
      onExit: (code, signal) => {
        this.monitors.delete(monitor);
        if (this.stopped) return;
        if (code === COMMAND_NOT_FOUND) {
          // No nft on this host (iptables-legacy only): its rules are polled instead.
          this.log.warn({ command: file }, `${file} is not installed: ${file === 'nft' ? 'polling iptables rules instead' : 'not watching links'}`);
          if (file === 'nft' && this.poller === undefined) this.pollRules(4);
          return;
        }
        // A monitor killed by someone else: start another, and look at once for what it missed.
        this.log.warn({ command: file, code, signal }, 'kernel monitor ended; starting it again');
        setTimeout(() => !this.stopped && this.follow(file, args, reason, judge, shown), 1000).unref();
        this.soon(`${file} monitor restarted`);
      },
    });
    this.monitors.add(monitor);
  }

  /**
   * Reads one family's rules per poll and looks at every network when they
   * changed since the last read of that family, or when tsnet wrote rules
   * since: a read after its own write cannot tell its write from someone
   * else's change in the same second, so it looks (legacy iptables only).
   */
  private pollRules(family: 4 | 6): void {
    this.poller = setTimeout(async () => {
      try {
        const startedAt = Date.now();
        // The chains and rules, not the counters, which change with every packet.
        const saved = await iptablesSave(this.runner, family);
        const rules = JSON.stringify(Object.values(saved).flatMap((table) => [[...table.chains], [...table.rules]]));
        const others = this.saved[family] !== undefined && this.saved[family] !== rules;
        if (others || this.options.judge.rulesChangedAt() >= this.readAt[family]) this.soon('iptables rules changed');
        this.saved[family] = rules;
        this.readAt[family] = startedAt;
      } catch (error) {
        this.log.debug({ err: error }, 'could not read iptables rules');
      }
      if (!this.stopped) this.pollRules(family === 4 ? 6 : 4);
    }, POLL_MS);
    this.poller.unref();
  }

  /** One look after the burst settles (or after the backoff of a failing repair); events meanwhile join it. */
  private soon(reason: string): void {
    if (this.stopped) return;
    this.note(reason);
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => void this.look(), Math.max(SETTLE_MS, this.backoffMs));
    this.timer.unref();
  }

  /** Remembers why the next look is due, and since when. */
  private note(reason: string): void {
    if (this.pending !== undefined) return;
    this.pending = reason;
    this.pendingSince = Date.now();
  }

  private async look(): Promise<void> {
    this.timer = undefined;
    const quiet = this.options.quietForMs?.() ?? Infinity;
    if (quiet < QUIET_MS && Date.now() - this.pendingSince < MAX_POSTPONE_MS) {
      this.timer = setTimeout(() => void this.look(), QUIET_MS - quiet);
      this.timer.unref();
      return;
    }
    const reason = this.pending ?? 'kernel changed';
    this.pending = undefined;
    this.options.onLook?.();
    this.log.debug({ reason }, 'looking for drift');
    this.running = this.repair(reason).then(
      (report) => {
        // Drift right after a repair is usually new (someone is still at work): look again soon.
        // The same drift again means the repair cannot remove it: back off rather than loop on it.
        const remaining = JSON.stringify(report.remaining);
        if (report.remaining.length === 0 || remaining !== this.lastRemaining) this.backoffMs = 0;
        else {
          this.backoffMs = Math.min(Math.max(1000, this.backoffMs * 2), MAX_BACKOFF_MS);
          this.log.error({ remaining: report.remaining, retryInMs: this.backoffMs }, 'drift that repair did not remove');
        }
        this.lastRemaining = report.remaining.length === 0 ? undefined : remaining;
        if (report.remaining.length > 0) this.note('drift left after a repair');
      },
      (error: unknown) => this.log.error({ err: error }, 'could not check the kernel for drift'),
    );
    await this.running;
    this.running = undefined;
    // Events during the look (its own repairs among them) get one more.
    if (this.pending !== undefined) this.soon(this.pending);
  }
}
