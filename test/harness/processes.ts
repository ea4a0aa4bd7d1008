// Signalling processes this harness started, strictly by PID.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** True while `pid` exists and is not a zombie (a zombie has exited; only its parent has yet to reap it). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return processState(pid) !== 'Z';
  } catch {
    return false;
  }
}

/** The state letter of a process (R, S, T stopped, t traced and stopped, Z…); throws once it is gone. */
export function processState(pid: number): string {
  // /proc/<pid>/stat: "pid (comm) S ..."; comm may contain spaces and parens, so read after the last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.charAt(stat.lastIndexOf(')') + 2);
}

/** The fields of /proc/<pid>/status as text (CapEff, CapBnd, NoNewPrivs, Seccomp, …). */
export function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries([...readFileSync(`/proc/${pid}/status`, 'utf8').matchAll(/^(\w+):\s*(.*)$/gm)].map(([, key, value]) => [key!, value!]));
}

/** Waits until `pid` is gone; returns false if it is still alive after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * SIGTERM, wait up to `graceMs`, then SIGKILL. Returns 'exited' when the
 * process honoured SIGTERM (or was already gone) and 'killed' when it had to
 * be SIGKILLed, so callers can report an unclean shutdown.
 */
export async function terminate(pid: number, graceMs: number): Promise<'exited' | 'killed'> {
  if (!isAlive(pid)) return 'exited';
  signal(pid, 'SIGTERM');
  if (await waitForExit(pid, graceMs)) return 'exited';
  await kill9(pid);
  return 'killed';
}

/** SIGKILL and wait for the process to disappear. */
export async function kill9(pid: number): Promise<void> {
  signal(pid, 'SIGKILL');
  if (!(await waitForExit(pid, 10_000))) throw new Error(`pid ${pid} survived SIGKILL for 10 s (stuck in the kernel?)`);
}
