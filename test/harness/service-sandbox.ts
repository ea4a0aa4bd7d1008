// The sandbox of tsnet's systemd unit, applied without systemd (the test
// machine's init is not systemd, so systemd-run cannot start a transient
// unit): its CapabilityBoundingSet and NoNewPrivileges through setpriv, its
// RestrictAddressFamilies through a seccomp filter (restrict-address-families.c).
// The properties are read from packaging/tsnet.service itself, so a test
// under this sandbox fails when the unit refuses what the daemon needs.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runOk } from './exec.js';
import { REPO_ROOT } from './tsnet.js';

export const SERVICE_UNIT = join(REPO_ROOT, 'packaging/tsnet.service');
const FAMILIES_SOURCE = join(REPO_ROOT, 'test/harness/restrict-address-families.c');

/** `Key=value` lines of the unit's [Service] section (the last one of a key wins, as in systemd). */
export function serviceProperties(unitFile = SERVICE_UNIT): Map<string, string> {
  const properties = new Map<string, string>();
  let section = '';
  for (const line of readFileSync(unitFile, 'utf8').split('\n')) {
    const header = /^\[(.+)\]$/.exec(line.trim());
    if (header) section = header[1]!;
    const property = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (section === 'Service' && property) properties.set(property[1]!, property[2]!.trim());
  }
  return properties;
}

/** Builds restrict-address-families into `dir` (once per dir). */
async function familiesHelper(dir: string): Promise<string> {
  const binary = join(dir, 'restrict-address-families');
  if (!existsSync(binary)) {
    mkdirSync(dir, { recursive: true });
    await runOk('cc', ['-O2', '-o', binary, FAMILIES_SOURCE]);
  }
  return binary;
}

/**
 * The argv prefix that runs a command as the unit would: capabilities
 * bounded to CapabilityBoundingSet (none inheritable, so none come back at
 * exec), no new privileges, socket() only of RestrictAddressFamilies.
 * `families` replaces the unit's list (to show what a missing family does).
 */
export async function serviceSandbox(dir: string, families?: readonly string[]): Promise<string[]> {
  const unit = serviceProperties();
  const capabilities = (unit.get('CapabilityBoundingSet') ?? '').split(/\s+/).filter(Boolean);
  const bounding = ['-all', ...capabilities.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  const allowed = families ?? (unit.get('RestrictAddressFamilies') ?? '').split(/\s+/).filter(Boolean);
  if (allowed.length === 0) throw new Error(`${SERVICE_UNIT} restricts no address families: nothing to apply`);
  return [
    'setpriv', '--bounding-set', bounding, '--inh-caps', '-all',
    ...(unit.get('NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []),
    await familiesHelper(dir), allowed.join(','),
  ];
}
