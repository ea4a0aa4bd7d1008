import { Command } from 'commander';
import { describeDrift } from '../sys/drift.js';
import type { RepairReport } from '../repair/reconciler.js';
import { adminCall } from './client.js';
import type { DoctorReport } from './server.js';
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
      let report: Found;
      try {
        if (opts.fix) report = (await adminCall(adminSocketOf(opts), 'POST', '/doctor/fix')) as Found;
        else {
          const { drift, clusterConflicts } = (await adminCall(adminSocketOf(opts), 'GET', '/doctor')) as DoctorReport;
          report = { repaired: [], remaining: drift, clusterConflicts };
        }
      } catch (error) {
        process.stderr.write(`tsnet doctor: cannot tell: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = DOCTOR_EXIT.unknown;
        return;
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(opts.fix ? report : { drift: report.remaining, clusterConflicts: report.clusterConflicts }, null, 2)}\n`);
      else process.stdout.write(text(report, opts.fix === true));
      process.exitCode = report.remaining.length === 0 && (report.clusterConflicts ?? []).length === 0 ? DOCTOR_EXIT.inSync : DOCTOR_EXIT.drift;
    });
}

/** What the daemon found (and repaired, with --fix); an older daemon sends no clusterConflicts. */
type Found = RepairReport & { clusterConflicts?: string[] };

function text({ repaired, remaining, clusterConflicts = [] }: Found, fixing: boolean): string {
  const lines = [...repaired.map((d) => `repaired: ${describeDrift(d)}`), ...remaining.map((d) => `${fixing ? 'still ' : ''}${describeDrift(d)}`)];
  // Never repaired: the other host's container may be the one using the address.
  lines.push(...clusterConflicts.map((c) => `cluster store: address ${c} is given to another hold: two containers may use it; restart this host's container on it`));
  if (remaining.length === 0 && clusterConflicts.length === 0) lines.push(repaired.length > 0 ? 'in sync now' : 'in sync: the kernel holds what tsnet recorded');
  return `${lines.join('\n')}\n`;
}
