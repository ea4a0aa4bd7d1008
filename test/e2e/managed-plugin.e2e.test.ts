/**
 * The managed (v2) plugin as a user installs it: `npm run plugin:build`'s
 * output given to `docker plugin create` and `enable` on a private dockerd
 * that runs no other tsnet. The plugin runs in its own mount namespace with
 * its own rootfs, in the host's netns, and programs it.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createDockerHost, type DockerHost, REPO_ROOT, run, runOk, TEST_IMAGE, TSNET_CLI, waitUntil } from '../harness/index.js';

const PLUGIN = 'tsnetplug';
const DRIVER = `${PLUGIN}:latest`;
let host: DockerHost;
let pluginId: string;
const cleanup = new CleanupStack();

const WEB = `mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && exec sleep 3600`;

describe('managed plugin: docker plugin create/enable/disable/rm', () => {
  beforeAll(async () => {
    host = await createDockerHost({ tsnet: false, dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy docker host', () => host.destroy());
    const out = join(host.dir, 'plugin');
    const build = await run(join(REPO_ROOT, 'packaging/build-plugin.sh'), [out], { timeoutMs: 300_000 });
    expect(build.exitCode, build.stdout + build.stderr).toBe(0);
    await host.dockerOk(['plugin', 'create', PLUGIN, out], { timeoutMs: 300_000 });
    await host.dockerOk(['plugin', 'set', PLUGIN, `exec-root.source=${join(host.dockerd.dir, 'exec')}`, 'TSNET_LOG_LEVEL=debug']);
    await host.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 60_000 });
    pluginId = (await host.dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', PLUGIN])).stdout.trim();
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('serves a bridge network with its driver and IPAM', async () => {
    await host.dockerOk(['network', 'create', '-d', DRIVER, '--ipam-driver', DRIVER, '--subnet', '10.161.0.0/24', 'pnet']);
    await host.dockerOk(['run', '-d', '--pull=never', '--name', 'web', '--hostname', 'web', '--network', 'pnet', '-p', '8080:80', TEST_IMAGE, 'sh', '-c', WEB]);
    const ping = await host.docker(['run', '--rm', '--pull=never', '--network', 'pnet', TEST_IMAGE, 'ping', '-c', '1', '-W', '3', 'web']);
    expect(ping.exitCode, ping.stdout + ping.stderr + host.dockerd.logTail()).toBe(0);
    const body = await waitUntil(async () => {
      const r = await host.execInHost(['timeout', '3', 'busybox', 'wget', '-qO-', 'http://127.0.0.1:8080/']);
      return r.exitCode === 0 ? r.stdout : undefined;
    }, { timeoutMs: 15_000, what: 'the published port from the host' });
    expect(body.trim()).toBe('hello-from-web');
  });
});
