/**
 * `tsnet install-service`: the unit it writes passes `systemd-analyze verify`
 * without a warning; without systemd it refuses in one line; with systemd it
 * writes the unit, reloads and enables it. Each run that could change the
 * machine happens in a private mount namespace with tmpfs over /run and
 * /etc/systemd/system, and a systemctl that only records its arguments.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newRunId, run, runDir, TSNET_CLI } from '../harness/index.js';

const dir = runDir(newRunId());

/** Where a run's /etc/systemd/system is copied. */
const written = (systemd: boolean) => join(dir, systemd ? 'with-systemd' : 'without-systemd');

/** Runs `tsnet install-service` in a private mount namespace; `systemd` decides whether /run/systemd/system exists there. */
async function installInPrivateMounts(systemd: boolean) {
  const bin = join(dir, 'bin');
  const script = [
    'set -e',
    'mount -t tmpfs tmpfs /run',
    'mount -t tmpfs tmpfs /etc/systemd/system',
    systemd ? 'mkdir -p /run/systemd/system' : ':',
    `PATH=${bin}:$PATH "$0" "$1" install-service && status=0 || status=$?`,
    `cp -r /etc/systemd/system "${written(systemd)}"`,
    'exit $status',
  ].join('\n');
  return run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, TSNET_CLI]);
}

describe('tsnet install-service', () => {
  beforeAll(() => {
    mkdirSync(join(dir, 'bin'), { recursive: true });
    writeFileSync(join(dir, 'bin', 'systemctl'), `#!/bin/sh\necho "$*" >> "${dir}/systemctl.log"\n`, { mode: 0o755 });
  });
  afterAll(async () => {
    await run('rm', ['-rf', dir]);
  });

  it('prints a unit that systemd-analyze verify accepts without a warning', async () => {
    const dry = await run(process.execPath, [TSNET_CLI, 'install-service', '--dry-run']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stderr).toBe('would write /etc/systemd/system/tsnet.service, then run: systemctl daemon-reload; systemctl enable --now tsnet.service');
    const unit = dry.stdout;
    expect(unit).toContain('Before=docker.service\n');
    expect(unit).toContain('Restart=on-failure\n');
    expect(unit).toContain('StateDirectory=tsnet\n');
    expect(unit).toContain(`ExecStart=${process.execPath} ${TSNET_CLI} daemon --name \${TSNET_NAME} --state-dir /var/lib/tsnet $TSNET_OPTS\n`);
    // Hardening must leave /proc/sys writable and the host's netns in place.
    expect(unit).not.toMatch(/ProtectKernelTunables=yes|PrivateNetwork=yes|MemoryDenyWriteExecute=yes/);
    const file = join(dir, 'tsnet.service');
    writeFileSync(file, unit);
    const verify = await run('systemd-analyze', ['verify', file]);
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(verify.stderr).toBe('');
  });

  it('refuses in one line on a host without systemd, writing nothing', async () => {
    const r = await installInPrivateMounts(false);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('tsnet: this host does not run systemd (no /run/systemd/system): start `tsnet daemon` before dockerd from its init system instead (README: "Hosts without systemd")');
    expect(() => readFileSync(join(written(false), 'tsnet.service'))).toThrow();
  });

  it('with systemd: writes the unit, reloads systemd, enables and starts the service', async () => {
    const r = await installInPrivateMounts(true);
    expect(r.exitCode, r.stderr).toBe(0);
    const dry = await run(process.execPath, [TSNET_CLI, 'install-service', '--dry-run']);
    expect(readFileSync(join(written(true), 'tsnet.service'), 'utf8')).toBe(dry.stdout + (dry.stdout.endsWith('\n') ? '' : '\n'));
    expect(readFileSync(join(dir, 'systemctl.log'), 'utf8')).toBe('daemon-reload\nenable --now tsnet.service\n');
  });
});
