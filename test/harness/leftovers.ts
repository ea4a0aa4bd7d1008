// Safety net after a daemon was stopped: find what it left behind and remove
// it. Everything is identified by the run's unique directory or cgroup
// parent, so only things this run started are ever touched.
//
// Normally there is nothing to do: dockerd stops its containers and its
// managed containerd on SIGTERM. The net matters when dockerd had to be
// SIGKILLed (then containerd, the shims and the container processes live on)
// and for the empty cgroup dirs the cgroupfs driver always leaves behind.
import { readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';
import { isAlive, kill9 } from './processes.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Processes whose command line mentions `dir/` (dockerd, containerd, shims, tsnet of this run). */
export function pidsReferencingDir(dir: string): number[] {
  const needle = dir.endsWith('/') ? dir : `${dir}/`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(needle)) pids.push(pid);
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/**
 * Every cgroup dir named after `cgroupParent` (e.g. `/tsn-ts3fa91c`) in each
 * v1 controller hierarchy, or the v2 unified tree, with their descendants,
 * deepest first (the order rmdir needs).
 */
export function cgroupDirs(cgroupParent: string): string[] {
  const name = cgroupParent.replace(/^\/+/, '');
  const tops = [join(CGROUP_ROOT, name)];
  for (const controller of safeReaddir(CGROUP_ROOT)) tops.push(join(CGROUP_ROOT, controller, name));
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const child of safeReaddir(dir)) {
      const p = join(dir, child);
      if (isDir(p)) walk(p);
    }
    found.push(dir);
  };
  for (const top of tops) if (isDir(top)) walk(top);
  return found;
}

/** PIDs still inside the cgroups of `cgroupParent`: container processes whose shim is gone. */
export function pidsInCgroups(cgroupParent: string): number[] {
  const pids = new Set<number>();
  for (const dir of cgroupDirs(cgroupParent)) {
    let procs = '';
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
    } catch {
      continue;
    }
    for (const line of procs.split('\n')) if (line.trim()) pids.add(Number(line));
  }
  return [...pids];
}

/** Mount points at or below `dir` in this mount namespace, deepest first. */
export function mountsBelow(dir: string): string[] {
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)));
  return points.sort((a, b) => b.length - a.length);
}

export interface LeftoverReport {
  killedPids: number[];
  removedCgroups: string[];
  unmounted: string[];
}

/**
 * SIGKILLs every process of this run that is still alive, removes its cgroup
 * dirs and lazily unmounts anything mounted below `dir`.
 */
export async function removeLeftovers(dir: string, cgroupParent: string): Promise<LeftoverReport> {
  const report: LeftoverReport = { killedPids: [], removedCgroups: [], unmounted: [] };
  const pids = new Set([...pidsReferencingDir(dir), ...pidsInCgroups(cgroupParent)]);
  for (const pid of pids) {
    if (!isAlive(pid)) continue;
    await kill9(pid);
    report.killedPids.push(pid);
  }
  for (const cg of cgroupDirs(cgroupParent)) {
    try {
      rmdirSync(cg);
      report.removedCgroups.push(cg);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot rmdir cgroup ${cg}: ${(err as Error).message}`);
    }
  }
  for (const point of mountsBelow(dir)) {
    const r = await run('umount', ['-l', point]);
    if (r.exitCode !== 0) throw new Error(`cannot unmount ${point}: ${r.stderr}`);
    report.unmounted.push(point);
  }
  return report;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
