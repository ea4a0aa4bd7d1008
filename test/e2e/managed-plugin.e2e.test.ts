/**
 * The managed (v2) plugin as a user installs it: `npm run plugin:build`'s
 * output given to `docker plugin create`, `set` and `enable` on a private
 * dockerd that runs no other tsnet. The plugin runs in its own mount
 * namespace on its own rootfs, in the host's netns, and programs it; its
 * admin socket and metrics are reached from the host.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CleanupStack, createDockerHost, type DockerHost, procStatus, REPO_ROOT, run, terminate, TEST_IMAGE, TSNET_CLI, waitUntil } from '../harness/index.js';

const PLUGIN = 'tsnetplug';
const DRIVER = `${PLUGIN}:latest`;
const METRICS = '127.0.0.1:19464';
/** Debian's docker-registry, run in the host's netns: dockerd trusts a registry on 127.0.0.1 without TLS. */
const REGISTRY = '127.0.0.1:15000';
const REGISTRY_BINARY = '/usr/bin/docker-registry';
const WEB = `mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && exec sleep 3600`;

let host: DockerHost;
let adminSocket: string;
const cleanup = new CleanupStack();

/** This dockerd's --exec-root is not /var/run/docker: the plugin must see its netns files there. */
const execRootSetting = () => `exec-root.source=${join(host.dockerd.dir, 'exec')}`;
/** Nor is its API socket /var/run/docker.sock: the plugin reads container names from the directory of the real one. */
const dockerApiSetting = () => `docker-api.source=${dirname(host.dockerd.socketPath)}`;

/** How often the plugin (its log is in dockerd's) said it could not see dockerd's netns directory. */
const netnsDirWarnings = () => readFileSync(host.dockerd.logFile, 'utf8').split('netns directory is not there').length - 1;

/** The tsnet CLI of this checkout, talking to the plugin's admin socket. */
const tsnetCli = (...args: string[]) => run(process.execPath, [TSNET_CLI, ...args, '--admin-socket', adminSocket]);

/** `tsnet ls --json` through the plugin's admin socket. */
async function lsJson(): Promise<Array<{ kind: string; subnets: string[]; endpoints: number }>> {
  const r = await tsnetCli('ls', '--json');
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

async function fromHost(url: string): Promise<string | undefined> {
  const r = await host.execInHost(['timeout', '3', 'busybox', 'wget', '-qO-', url]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

const answers = (url: string) => waitUntil(() => fromHost(url), { timeoutMs: 20_000, what: `${url} from the host netns`, diagnostics: () => host.dockerd.logTail() });

function procStatusOrEmpty(pid: string): Record<string, string> {
  try {
    return procStatus(Number(pid));
  } catch {
    return {}; // gone meanwhile
  }
}

/** The PID (as this test sees it) of the plugin's daemon: the tsnet daemon whose netns is this host's. */
function pluginDaemonPid(): number {
  const hostNetns = `net:[${statSync(`/run/netns/${host.netns}`).ino}]`;
  const pids = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/opt/tsnet/dist/src/cli.js\0daemon\0') && readlinkSync(`/proc/${pid}/ns/net`) === hostNetns;
    } catch {
      return false; // gone meanwhile
    }
  });
  // A child the daemon is starting (ip, nft) shows the daemon's command line until its exec: not a second daemon.
  const daemons = pids.filter((pid) => !pids.includes(procStatusOrEmpty(pid).PPid ?? ''));
  expect(daemons, 'one tsnet daemon in the host netns').toHaveLength(1);
  return Number(daemons[0]);
}

async function tsnetLinks(): Promise<string[]> {
  const links = JSON.parse((await host.execInHost(['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((name) => /^ts(br|v|c)/.test(name));
}

describe('managed plugin: docker plugin create, set, enable, disable, rm', () => {
  beforeAll(async () => {
    host = await createDockerHost({ tsnet: false, dockerdArgs: ['--bridge=none'] });
    cleanup.defer('destroy docker host', () => host.destroy());
    const out = join(host.dir, 'plugin');
    const build = await run(join(REPO_ROOT, 'packaging/build-plugin.sh'), [out], { timeoutMs: 300_000 });
    expect(build.exitCode, build.stdout + build.stderr).toBe(0);
    await host.dockerOk(['plugin', 'create', PLUGIN, out], { timeoutMs: 300_000 });
    // No Docker API setting: Docker refuses to enable a plugin whose mount source is missing, and this dockerd's socket is not /var/run/docker.sock.
    await host.dockerOk(['plugin', 'set', PLUGIN, execRootSetting(), `TSNET_METRICS=${METRICS}`]);
    await host.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 60_000 });
    const id = (await host.dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', PLUGIN])).stdout.trim();
    // dockerd keeps managed plugins' runtime dirs in /run/docker/plugins/<id> whatever its --exec-root.
    adminSocket = join(host.dockerd.pluginDir, id, 'tsnet.admin.sock');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('enabled where dockerd\'s API socket is not /var/run/docker.sock, says what is off and the setting that turns it on', async () => {
    if (existsSync('/run/docker.sock')) {
      // The default directory holds another dockerd's socket here: the plugin follows that one, and says nothing.
      console.warn('managed-plugin: /run/docker.sock exists on this machine (another dockerd): the "names are off" message cannot be checked');
    } else {
      const said = await waitUntil(() => readFileSync(host.dockerd.logFile, 'utf8').split('\n').find((line) => line.includes('cannot follow Docker events')), { timeoutMs: 20_000, what: 'the plugin saying the Docker API is off' });
      expect(said).toContain("container names in tsnet's DNS, Docker's bridge networks not named docker0 or br-<id> in the isolation rules, and Docker's names in tsnet ls and inspect are off until it answers");
      expect(said).toContain('docker plugin set <plugin> docker-api.source=<the directory of dockerd');
    }
    await host.dockerOk(['plugin', 'disable', PLUGIN], { timeoutMs: 60_000 });
    await host.dockerOk(['plugin', 'set', PLUGIN, dockerApiSetting()]);
    await host.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 60_000 });
  });

  it('serves a bridge network with its driver and IPAM: names resolve, a published port answers on the host', async () => {
    await host.dockerOk(['network', 'create', '-d', DRIVER, '--ipam-driver', DRIVER, '--subnet', '10.161.0.0/24', 'pnet']);
    await host.dockerOk(['run', '-d', '--pull=never', '--name', 'web', '--hostname', 'web', '--network', 'pnet', '-p', '8080:80', TEST_IMAGE, 'sh', '-c', WEB]);
    const ping = await host.docker(['run', '--rm', '--pull=never', '--network', 'pnet', TEST_IMAGE, 'ping', '-c', '1', '-W', '3', 'web']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
    expect(await answers('http://127.0.0.1:8080/')).toBe('hello-from-web');
  });

  it('repairs its bridge when someone else deletes it: the drift watcher runs in the plugin too', async () => {
    const id = (await host.dockerOk(['network', 'inspect', '-f', '{{.Id}}', 'pnet'])).stdout.trim();
    const bridge = `tsbr-${id.slice(0, 10)}`;
    await host.execInHost(['ip', 'link', 'del', bridge]);
    await waitUntil(async () => (await host.execInHost(['ip', '-o', 'address', 'show', 'dev', bridge])).stdout.includes('inet 10.161.0.1/24'), { timeoutMs: 10_000, what: `${bridge} back with its gateway`, diagnostics: () => host.dockerd.logTail() });
    expect(await answers('http://127.0.0.1:8080/')).toBe('hello-from-web');
  });

  it('runs its daemon with net_admin, net_raw and net_bind_service only: no CAP_SYS_ADMIN', () => {
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13); CAP_SYS_ADMIN is 21.
    expect(procStatus(pluginDaemonPid())).toMatchObject({
      CapEff: '0000000000003400', CapPrm: '0000000000003400', CapBnd: '0000000000003400', CapInh: '0000000000000000', CapAmb: '0000000000000000',
    });
  });

  it('answers tsnet ls and tsnet inspect on its admin socket, and a bad query in one line', async () => {
    expect(await lsJson()).toEqual([expect.objectContaining({ kind: 'bridge', subnets: ['10.161.0.0/24'], gateways: ['10.161.0.1'], endpoints: 1 })]);
    const webIp = (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', 'web'])).stdout.trim();
    const inspect = await tsnetCli('inspect', webIp);
    expect(inspect.exitCode, inspect.stderr).toBe(0);
    expect(inspect.stdout).toMatch(new RegExp(`addresses +${webIp.replaceAll('.', '\\.')}/24\\n`));
    expect(inspect.stdout).toMatch(/ports +8080:80\/tcp\n/);
    // By Docker's names too: the plugin follows dockerd's events through the docker-api mount.
    const byName = await waitUntil(async () => {
      const r = await tsnetCli('inspect', 'pnet');
      return r.exitCode === 0 && r.stdout;
    }, { timeoutMs: 10_000, what: 'tsnet inspect pnet (Docker names through the plugin\'s docker-api mount)' });
    expect(byName).toContain('10.161.0.0/24');
    const bad = await tsnetCli('inspect', 'no-such-network');
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toBe('tsnet: query: no tsnet network or endpoint is named "no-such-network"');
  });

  it('serves Prometheus metrics on the address set through TSNET_METRICS', async () => {
    const text = await waitUntil(() => fromHost(`http://${METRICS}/metrics`), { timeoutMs: 10_000, what: 'the metrics endpoint' });
    expect(text).toContain('tsnet_networks{kind="bridge"} 1\n');
    expect(text).toContain('tsnet_published_ports{proto="tcp"} 1\n');
    expect(text).toMatch(/tsnet_plugin_requests_total\{method="NetworkDriver.Join",outcome="ok"\} [1-9]/);
  });

  it('keeps its state and the running containers over disable and enable (a restart in its own mount ns)', async () => {
    // The first enable came before any container: dockerd had no netns directory yet, and the plugin said so.
    const warned = netnsDirWarnings();
    await host.dockerOk(['plugin', 'disable', '-f', PLUGIN], { timeoutMs: 60_000 });
    await host.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 60_000 });
    // The endpoint was not taken for stale: its sandbox file is found through the exec-root mount, so its port is forwarded again.
    expect(await answers('http://127.0.0.1:8080/')).toBe('hello-from-web');
    expect(netnsDirWarnings()).toBe(warned);
    expect((await lsJson()).map((n) => n.endpoints)).toEqual([1]);
    const ping = await host.docker(['run', '--rm', '--pull=never', '--network', 'pnet', TEST_IMAGE, 'ping', '-c', '1', '-W', '3', 'web']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);
  });

  it('upgrades from a registry with docker plugin upgrade, keeping its state and the running containers', async () => {
    if (!existsSync(REGISTRY_BINARY)) throw new Error(`${REGISTRY_BINARY} is missing: scripts/install-test-deps.sh installs docker-registry`);
    const config = join(host.dir, 'registry.yml');
    writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(host.dir, 'registry')}\nhttp:\n  addr: ${REGISTRY}\n`);
    const registry = execa('ip', ['netns', 'exec', host.netns, REGISTRY_BINARY, 'serve', config], { reject: false, stdio: 'ignore' });
    cleanup.defer('stop the registry', async () => {
      if (registry.pid !== undefined) await terminate(registry.pid, 5_000);
      await registry;
    });
    await waitUntil(async () => (await host.execInHost(['timeout', '2', 'busybox', 'wget', '-qO-', `http://${REGISTRY}/v2/`])).exitCode === 0, { timeoutMs: 15_000, what: 'the registry' });
    // The next release: the same build with one more file (identical content would be the same plugin to dockerd).
    const nextDir = join(host.dir, 'plugin-next');
    await run('cp', ['-a', join(host.dir, 'plugin'), nextDir]);
    writeFileSync(join(nextDir, 'rootfs', 'opt', 'tsnet', 'RELEASE'), 'next\n');
    const next = `${REGISTRY}/tsnet:next`;
    await host.dockerOk(['plugin', 'create', next, nextDir], { timeoutMs: 300_000 });
    await host.dockerOk(['plugin', 'push', next], { timeoutMs: 300_000 });
    await host.dockerOk(['plugin', 'rm', next]);
    const warned = netnsDirWarnings();
    await host.dockerOk(['plugin', 'disable', '-f', PLUGIN], { timeoutMs: 60_000 });
    await host.dockerOk(['plugin', 'upgrade', '--grant-all-permissions', '--skip-remote-check', PLUGIN, next], { timeoutMs: 300_000 });
    // An upgrade keeps env settings but takes mount sources from the new manifest: set exec-root again.
    await host.dockerOk(['plugin', 'set', PLUGIN, execRootSetting(), dockerApiSetting()]);
    await host.dockerOk(['plugin', 'enable', PLUGIN], { timeoutMs: 60_000 });
    expect((await host.dockerOk(['plugin', 'inspect', '-f', '{{.PluginReference}}', PLUGIN])).stdout.trim()).toBe(next);
    const id = (await host.dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', PLUGIN])).stdout.trim();
    expect(readFileSync(join(host.dockerd.dir, 'data', 'plugins', id, 'rootfs', 'opt', 'tsnet', 'RELEASE'), 'utf8')).toBe('next\n');
    // Same plugin ID, same propagated mount: the network, its endpoint and its port are still there.
    expect((await lsJson()).map((n) => n.endpoints)).toEqual([1]);
    expect(await answers('http://127.0.0.1:8080/')).toBe('hello-from-web');
    expect(netnsDirWarnings()).toBe(warned);
  });

  it('leaves nothing behind once disabled and removed: no tsnet link, no TSNET chain, no plugin', async () => {
    await host.removeAllContainers();
    await host.dockerOk(['network', 'rm', 'pnet']);
    await host.dockerOk(['plugin', 'disable', PLUGIN], { timeoutMs: 60_000 });
    await host.dockerOk(['plugin', 'rm', PLUGIN]);
    expect(await tsnetLinks()).toEqual([]);
    for (const save of ['iptables-save', 'ip6tables-save']) expect((await host.execInHost([save])).stdout).not.toContain('TSNET');
    expect((await host.dockerOk(['plugin', 'ls', '-q'])).stdout).toBe('');
    const gone = await tsnetCli('ls');
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toMatch(/^tsnet: cannot reach the tsnet daemon at .*tsnet\.admin\.sock: connect ENOENT/);
  });
});
