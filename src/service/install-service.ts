import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { ExecaRunner } from '../sys/index.js';

/** The unit's template, packaging/tsnet.service at the top of the package (this file runs as dist/src/service/). */
const TEMPLATE = fileURLToPath(new URL('../../../packaging/tsnet.service', import.meta.url));
const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const UNIT_DIR = '/etc/systemd/system';
const UNIT = 'tsnet.service';

/** The unit for this installation: this node binary and this tsnet. */
export function renderUnit(node = process.execPath, cli = CLI): string {
  return readFileSync(TEMPLATE, 'utf8').replaceAll('@NODE@', node).replaceAll('@CLI@', cli);
}

/** `tsnet install-service [--dry-run]`: writes the systemd unit, enables and starts it. */
export function installServiceCommand(): Command {
  return new Command('install-service')
    .description(`write ${join(UNIT_DIR, UNIT)} for this tsnet (started before dockerd, restarted on failure), enable and start it`)
    .option('--dry-run', 'print the unit on stdout and the steps on stderr; change nothing')
    .action(async (opts: { dryRun?: boolean }) => {
      const unit = renderUnit();
      const path = join(UNIT_DIR, UNIT);
      const steps = [['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now', UNIT]] as const;
      if (opts.dryRun) {
        process.stdout.write(unit);
        process.stderr.write(`would write ${path}, then run: ${steps.map((s) => s.join(' ')).join('; ')}\n`);
        return;
      }
      // systemd's own test for "booted with systemd" (sd_booted).
      if (!existsSync('/run/systemd/system')) {
        throw new Error('this host does not run systemd (no /run/systemd/system): start `tsnet daemon` before dockerd from its init system instead (README: "Hosts without systemd")');
      }
      writeFileSync(path, unit, { mode: 0o644 });
      const runner = new ExecaRunner();
      for (const [file, ...args] of steps) await runner.run(file, args);
      process.stdout.write(`wrote ${path}; tsnet.service is enabled and running (systemctl status tsnet; settings in /etc/default/tsnet: TSNET_NAME=…, TSNET_OPTS="more flags")\n`);
    });
}
