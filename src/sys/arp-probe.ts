import { CommandError, ProgramNotFound, type Runner } from './runner.js';

/**
 * Duplicate address detection (RFC 5227 style) with `arping -D`: probes
 * from 0.0.0.0, so it needs no address on the interface and claims none.
 * iputils' and busybox's arping both exit 1 when someone answers, 0 when
 * nobody does within the deadline.
 */
const PROBES = ['-c', '2', '-w', '1'];

/** Whether a device on `iface`'s LAN answers ARP for `address` (at most ~1 s). */
export async function addressAnswers(runner: Runner, iface: string, address: string): Promise<boolean> {
  const args = ['-D', ...PROBES, '-I', iface, address];
  try {
    await runArping(runner, args);
    return false;
  } catch (error) {
    // Exit 1 is also how arping reports its own failures: only a counted reply is an answer.
    if (error instanceof CommandError && error.exitCode === 1 && ANSWERED.test(error.stdout)) return true;
    throw error;
  }
}

/** Both arpings end with "Received N response(s)". */
const ANSWERED = /Received [1-9]\d* response/;

/** `arping` from PATH (iputils-arping), else busybox's applet. */
async function runArping(runner: Runner, args: readonly string[]): Promise<void> {
  try {
    await runner.run('arping', args);
  } catch (error) {
    if (!(error instanceof ProgramNotFound)) throw error;
    await runner.run('busybox', ['arping', ...args]);
  }
}
