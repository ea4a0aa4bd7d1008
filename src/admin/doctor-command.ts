import { Command } from 'commander';
import { describeDrift, type Drift } from '../sys/drift.js';
import type { RepairReport } from '../repair/reconciler.js';
import { adminCall } from './client.js';
import { adminSocketOf, type Target, withTarget } from './target.js';

interface DoctorFlags extends Target {
  fix?: boolean;
  json?: boolean;
}

/** Exit codes: in sync (or repaired), drift found (or left after --fix), cannot tell. */
export const DOCTOR_EXIT = { inSync: 0, drift: 1, unknown: 2 } as const;

/**
 * `tsnet doctor [--fix]`: the daemon compares its records with the kernel;
 * each difference is printed. Exit 0 in sync, 1 with drift, 2 when the
 * daemon cannot be asked. With --fix, exit 0 once everything is repaired.
 */
export function doctorCommand(): Command {
  return withTarget(new Command('doctor'))
    .description("compare tsnet's records with the kernel (links, addresses, routes, port flags, promisc, rules); exit 0 in sync, 1 drift, 2 daemon unreachable")
    .option('--fix', 'repair what differs; exit 0 once nothing does')
    .option('--json', 'print the differences as JSON')
    .action(async (opts: DoctorFlags) => {
      let report: RepairReport;
      try {
        report = opts.fix
          ? ((await adminCall(adminSocketOf(opts), 'POST', '/doctor/fix')) as RepairReport)
          : { repaired: [], remaining: ((await adminCall(adminSocketOf(opts), 'GET', '/doctor')) as { drift: Drift[] }).drift };
      } catch (error) {
        process.stderr.write(`tsnet doctor: cannot tell: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = DOCTOR_EXIT.unknown;
        return;
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(opts.fix ? report : { drift: report.remaining }, null, 2)}\n`);
      else process.stdout.write(text(report, opts.fix === true));
      process.exitCode = report.remaining.length === 0 ? DOCTOR_EXIT.inSync : DOCTOR_EXIT.drift;
    });
}

function text({ repaired, remaining }: RepairReport, fixing: boolean): string {
  const lines = [...repaired.map((d) => `repaired: ${describeDrift(d)}`), ...remaining.map((d) => `${fixing ? 'still ' : ''}${describeDrift(d)}`)];
  if (remaining.length === 0) lines.push(repaired.length > 0 ? 'in sync now' : 'in sync: the kernel holds what tsnet recorded');
  return `${lines.join('\n')}\n`;
}
