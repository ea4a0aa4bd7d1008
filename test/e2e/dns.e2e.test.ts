/**
 * tsnet's DNS with a real dockerd: names from Docker (container names,
 * --network-alias, renames) for the host (--dns-listen), for a network's
 * containers on their gateway (directly and through Docker's resolver with
 * --dns), for the LAN on a macvlan network's host shim; isolation between
 * networks; forwarding to an upstream dnsmasq behind the uplink, none from
 * an --internal network; tsnet.dns=off; names within 1 s of docker run and
 * docker rm; network connect and disconnect; a dockerd restart (live-restore)
 * while tsnet runs; the host's INPUT policy DROP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertPreflight,
  CleanupStack,
  createDockerHost,
  createNetns,
  createOutside,
  createVethPair,
  deleteNetns,
  dig,
  type DockerHost,
  REMOTE_SERVER,
  run,
  runDir,
  startDnsmasq,
  TEST_IMAGE,
  TSNET_CLI,
  waitUntil,
} from '../harness/index.js';

const cleanup = new CleanupStack();
let host: DockerHost;

/** The host's own listener (--dns-listen). */
const HOST_DNS = '127.0.0.1';
const N1 = { subnet: '10.153.1.0/24', gateway: '10.153.1.1', v6: 'fd53:1::/64' };
const N2 = { subnet: '10.153.2.0/24', gateway: '10.153.2.1' };
const INTERNAL = { subnet: '10.153.3.0/24', gateway: '10.153.3.1' };
const QUIET = { subnet: '10.153.4.0/24', gateway: '10.153.4.1' };
const LAN = { subnet: '10.153.9.0/24', gateway: '10.153.9.1', shim: '10.153.9.250', host: '10.153.9.5', peer: '10.153.9.200' };

const fromHost = (name: string, ...args: string[]) => dig(HOST_DNS, 53, [name, ...args], host.netns);

/** The netns of a running container, for dig to ask from "inside" it. */
async function netnsOf(container: string): Promise<string> {
  return `/proc/${(await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', container])).stdout}/ns/net`;
}

const runDetached = (name: string, ...args: string[]) =>
  host.dockerOk(['run', '-d', '--pull=never', '--name', name, ...args, TEST_IMAGE, 'sleep', '3600']);

async function ipOf(container: string, network: string, field = 'IPAddress'): Promise<string> {
  return (await host.dockerOk(['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").${field}}}`, container])).stdout;
}

/** The answers for `name` once they equal `expected` (the watcher is asynchronous), within `timeoutMs`. */
const resolvesTo = (name: string, expected: string[], timeoutMs: number, ...args: string[]) =>
  waitUntil(async () => {
    const answer = await fromHost(name, ...args);
    return JSON.stringify(answer.answers) === JSON.stringify(expected) && answer;
  }, { timeoutMs, intervalMs: 50, what: `${name} to resolve to ${expected.join(' ') || 'nothing'}`, diagnostics: () => host.tsnet.logTail() });

describe('tsnet DNS with a real dockerd', () => {
  beforeAll(async () => {
    assertPreflight({ dns: true });
    host = await createDockerHost({
      dockerdArgs: ['--bridge=none', '--live-restore'],
      tsnetArgs: ['--dns-listen', `${HOST_DNS}:53`, '--dns-upstream', `${REMOTE_SERVER}:53`],
    });
    cleanup.defer('destroy docker host', () => host.destroy());
    // The upstream resolver lives "outside", behind the host's uplink.
    const outside = `${host.id}o`;
    await createOutside(host.netns, outside, cleanup);
    await startDnsmasq({ dir: `${runDir(host.id)}-dnsmasq`, netns: outside, address: REMOTE_SERVER, port: 53, hosts: [['fwd.example', '192.0.2.7']], localDomains: ['example'] }, cleanup);
    cleanup.defer('remove dnsmasq dir', () => run('rm', ['-rf', `${runDir(host.id)}-dnsmasq`]));

    const create = (name: string, net: { subnet: string; gateway: string }, ...extra: string[]) =>
      host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', net.subnet, '--gateway', net.gateway, ...extra, name]);
    await create('n1', N1, '--ipv6', '--subnet', N1.v6);
    await create('n2', N2);
    await create('inside', INTERNAL, '--internal');
    await create('quiet', QUIET, '-o', 'tsnet.dns=off');
    await runDetached('web', '--network', 'n1', '--network-alias', 'www');
    await runDetached('db', '--network', 'n1');
    await runDetached('other', '--network', 'n2');
    await runDetached('hidden', '--network', 'inside');
    await runDetached('silent', '--network', 'quiet');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('answers the host: A, AAAA, alias and PTR of containers, as Docker names them', async () => {
    const web = await ipOf('web', 'n1');
    const web6 = await ipOf('web', 'n1', 'GlobalIPv6Address');
    expect((await resolvesTo('web.n1.tsnet', [`A ${web}`], 5_000)).flags).toContain('aa');
    expect((await fromHost('web.n1.tsnet', 'AAAA')).answers).toEqual([`AAAA ${web6}`]);
    expect((await fromHost('www.n1.tsnet')).answers).toEqual([`A ${web}`]);
    expect((await fromHost('-x', web)).answers).toEqual(['PTR web.n1.tsnet.']);
    expect((await fromHost('-x', web6)).answers).toEqual(['PTR web.n1.tsnet.']);
    expect((await fromHost('other.n2.tsnet')).answers).toEqual([`A ${await ipOf('other', 'n2')}`]);
    const nx = await fromHost('nobody.n1.tsnet');
    expect([nx.status, nx.answers]).toEqual(['NXDOMAIN', []]);
    expect((await fromHost('db.n1.tsnet', 'AAAA', '+tcp')).status).toBe('NOERROR');
  });

  it('answers a container on its gateway, directly and through Docker\'s resolver given --dns <gateway>', async () => {
    const db = await ipOf('db', 'n1');
    const direct = await dig(N1.gateway, 53, ['db.n1.tsnet'], await netnsOf('web'));
    expect(direct.answers).toEqual([`A ${db}`]);
    const viaDocker = await host.docker(['run', '--rm', '--pull=never', '--network', 'n1', '--dns', N1.gateway, TEST_IMAGE, 'nslookup', 'db.n1.tsnet']);
    expect(viaDocker.stdout, viaDocker.stderr).toContain(db);
  });

  it('keeps a network\'s names from the containers of another network', async () => {
    const other = await netnsOf('other');
    const ownGateway = await dig(N2.gateway, 53, ['web.n1.tsnet'], other);
    expect([ownGateway.status, ownGateway.answers]).toEqual(['NXDOMAIN', []]);
    expect((await dig(N2.gateway, 53, ['-x', await ipOf('web', 'n1')], other)).status).toBe('NXDOMAIN');
    // n1's gateway is a host address n2's containers can route to: the firewall drops their queries there.
    expect((await dig(N1.gateway, 53, ['web.n1.tsnet'], other)).status).toBeUndefined();
    expect((await dig(N2.gateway, 53, ['other.n2.tsnet'], other)).answers).toEqual([`A ${await ipOf('other', 'n2')}`]);
  });

  it('forwards other names upstream, but not from an --internal network\'s listener', async () => {
    expect((await fromHost('fwd.example')).answers).toEqual(['A 192.0.2.7']);
    expect((await dig(N1.gateway, 53, ['fwd.example'], await netnsOf('web'))).answers).toEqual(['A 192.0.2.7']);
    const hidden = await netnsOf('hidden');
    expect((await dig(INTERNAL.gateway, 53, ['fwd.example'], hidden)).status).toBe('REFUSED');
    expect((await dig(INTERNAL.gateway, 53, ['hidden.inside.tsnet'], hidden)).answers).toEqual([`A ${await ipOf('hidden', 'inside')}`]);
  });

  it('opens no listener on the gateway of a network with tsnet.dns=off, and lists the listeners', async () => {
    expect((await dig(QUIET.gateway, 53, ['silent.quiet.tsnet'], await netnsOf('silent'))).status).toBeUndefined();
    expect((await fromHost('silent.quiet.tsnet')).answers).toEqual([`A ${await ipOf('silent', 'quiet')}`]);
    const listed = await run('ip', ['netns', 'exec', host.netns, process.execPath, TSNET_CLI, 'dns', '--name', host.driver, '--socket-dir', host.dockerd.pluginDir]);
    expect(listed.stdout).toContain(`${HOST_DNS}:53\t-\tforwards\tserving`);
    expect(listed.stdout).toMatch(new RegExp(`${N1.gateway}:53\\t[0-9a-f]{12}\\tforwards\\tserving`));
    expect(listed.stdout).toMatch(new RegExp(`${INTERNAL.gateway}:53\\t[0-9a-f]{12}\\tno-forward\\tserving`));
    expect(listed.stdout).not.toContain(QUIET.gateway);
  });

  it('has a name within 1 s after docker run, a new one within 1 s after a rename, none within 1 s after docker rm', async () => {
    await runDetached('quick', '--network', 'n1');
    const ip = await ipOf('quick', 'n1');
    await resolvesTo('quick.n1.tsnet', [`A ${ip}`], 1_000);
    await host.dockerOk(['rename', 'quick', 'renamed']);
    await resolvesTo('renamed.n1.tsnet', [`A ${ip}`], 1_000);
    expect((await fromHost('quick.n1.tsnet')).status).toBe('NXDOMAIN');
    await host.dockerOk(['rm', '-f', 'renamed']);
    await resolvesTo('renamed.n1.tsnet', [], 1_000);
    expect((await fromHost('-x', ip)).answers).toEqual([]);
  });

  it('follows docker network connect and disconnect, with the aliases given there', async () => {
    await host.dockerOk(['network', 'connect', '--alias', 'store', 'n2', 'db']);
    const ip = await ipOf('db', 'n2');
    await resolvesTo('db.n2.tsnet', [`A ${ip}`], 1_000);
    expect((await fromHost('store.n2.tsnet')).answers).toEqual([`A ${ip}`]);
    expect((await fromHost('store.n1.tsnet')).status).toBe('NXDOMAIN');
    await host.dockerOk(['network', 'disconnect', 'n2', 'db']);
    await resolvesTo('db.n2.tsnet', [], 1_000);
    expect((await fromHost('db.n1.tsnet')).answers).toEqual([`A ${await ipOf('db', 'n1')}`]);
  });

  it('keeps serving while dockerd restarts, and follows it again afterwards', async () => {
    const web = await ipOf('web', 'n1');
    await host.dockerd.stop();
    // live-restore: the containers run on, and tsnet still knows their names.
    expect((await fromHost('web.n1.tsnet')).answers).toEqual([`A ${web}`]);
    await host.dockerd.start(60_000);
    await runDetached('late', '--network', 'n1');
    await resolvesTo('late.n1.tsnet', [`A ${await ipOf('late', 'n1')}`], 10_000);
    expect((await fromHost('web.n1.tsnet')).answers).toEqual([`A ${web}`]);
    const db = await fromHost('db.n1.tsnet');
    expect(db.answers, db.text + (await host.dockerOk(['inspect', 'db'])).stdout + host.tsnet.logTail(30)).toEqual([`A ${await ipOf('db', 'n1')}`]);
  });

  it('still lets containers reach their gateway\'s DNS under an INPUT policy of DROP', async () => {
    await host.execInHost(['iptables', '-P', 'INPUT', 'DROP']);
    try {
      expect((await dig(N1.gateway, 53, ['db.n1.tsnet'], await netnsOf('web'))).answers).toEqual([`A ${await ipOf('db', 'n1')}`]);
    } finally {
      await host.execInHost(['iptables', '-P', 'INPUT', 'ACCEPT']);
    }
  });

  it('answers the LAN on a macvlan network\'s host shim, with that network\'s names only', async () => {
    const lan = `${host.id}l`;
    await createNetns(lan);
    cleanup.defer(`delete netns ${lan}`, () => deleteNetns(lan));
    // The host is on the LAN too (its replies to LAN machines leave through the parent), as a NIC's host is.
    await createVethPair({ netns: host.netns, name: 'lanwire', address: `${LAN.host}/24` }, { netns: lan, name: 'eth0', address: `${LAN.peer}/24` });
    await host.dockerOk(['network', 'create', '-d', host.driver, '-o', 'parent=lanwire', '-o', `tsnet.host_shim=${LAN.shim}`, '--subnet', LAN.subnet, '--gateway', LAN.gateway, 'lan']);
    await runDetached('onlan', '--network', 'lan');
    const answer = await waitUntil(async () => (await dig(LAN.shim, 53, ['onlan.lan.tsnet'], lan)).answers[0], { timeoutMs: 5_000, what: 'onlan.lan.tsnet from the LAN' });
    expect(answer).toBe(`A ${await ipOf('onlan', 'lan')}`);
    expect((await dig(LAN.shim, 53, ['web.n1.tsnet'], lan)).status).toBe('NXDOMAIN');
    // A container of a bridge network routes to the shim through the host, but is not of the LAN: no answer.
    expect((await dig(LAN.shim, 53, ['onlan.lan.tsnet'], await netnsOf('web'))).status).toBeUndefined();
  });
});
