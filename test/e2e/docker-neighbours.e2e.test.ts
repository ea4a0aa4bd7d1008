/**
 * tsnet next to Docker's own bridge networks, on a host whose FORWARD policy
 * is DROP (as where Docker enabled forwarding), once per firewall backend:
 *
 * - tsnet's containers open no connection into Docker's bridges (docker0, a
 *   user-defined network's br-…, one with a bridge name of its own, all made
 *   after tsnet started), and Docker's containers none into tsnet's, as
 *   Docker's networks are closed to each other; each check has a positive
 *   control on the same host (a Docker container reaches the same target,
 *   tsnet's container reaches the outside).
 * - an --internal tsnet network reaches nothing outside itself: not another
 *   network's published port through its own gateway (tsnet's or Docker's),
 *   not a host service; only its members and the DNS on its gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FirewallKind } from '../../src/sys/index.js';
import {
  CleanupStack,
  createDockerHost,
  createOutside,
  type DockerHost,
  execInNetns,
  netnsPath,
  nodeInNetns,
  REMOTE_SERVER,
  TEST_IMAGE,
  UPLINK_HOST,
  waitUntil,
} from '../harness/index.js';

const BACKENDS: FirewallKind[] = ['nftables', 'iptables'];
const WEB = 'mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && exec sleep 3600';
/** A service of the host itself, on every address (the gateways' too). */
const HOST_SERVICE = `require('http').createServer((q, s) => s.end('host service\\n')).listen(9000, '0.0.0.0', () => console.log('ready'));`;

describe.each(BACKENDS)("tsnet beside Docker's own networks on %s", (backend) => {
  let host: DockerHost;
  const cleanup = new CleanupStack();
  /** Docker's web servers by bridge kind: docker0, br-<id>, a bridge named by the network. */
  const docker: Record<'default' | 'user' | 'named', string> = { default: '', user: '', named: '' };
  let tsnetWeb: string;

  async function runWeb(name: string, ...args: string[]): Promise<string> {
    await host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--hostname', name, ...args, TEST_IMAGE, 'sh', '-c', WEB]);
    const ip = (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])).stdout;
    expect(ip).not.toBe('');
    return ip;
  }

  /** HTTP GET from a running container; the body, or undefined when nothing answered. */
  async function getIn(container: string, url: string): Promise<string | undefined> {
    const r = await host.execIn(container, ['timeout', '3', 'wget', '-qO-', url]);
    return r.exitCode === 0 ? r.stdout : undefined;
  }

  /** The same from the host, waiting for a server that may still be starting. */
  const hostReaches = (url: string) =>
    waitUntil(async () => {
      const r = await execInNetns(host.netns, ['timeout', '3', 'busybox', 'wget', '-qO-', url]);
      return r.exitCode === 0 ? r.stdout : undefined;
    }, { timeoutMs: 15_000, what: `${url} from the host` });

  beforeAll(async () => {
    // dockerd with its default bridge docker0 and its iptables rules (isolation chains, FORWARD policy DROP).
    host = await createDockerHost({ tsnetArgs: ['--firewall', backend] });
    cleanup.defer('destroy docker host', () => host.destroy());
    await createOutside(host.netns, `${host.id}o`, cleanup);
    await host.execInHost(['iptables', '-P', 'FORWARD', 'DROP']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.70.0.0/24', 'ts1']);
    tsnetWeb = await runWeb('tweb', '--network', 'ts1', '-p', '8080:80');
    await runWeb('tclient', '--network', 'ts1');
    // Docker's networks come after tsnet's: tsnet learns of them as they are made.
    await host.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.71.0.0/24', 'duser']);
    await host.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.72.0.0/24', '-o', `com.docker.network.bridge.name=${host.id}dk`, 'dnamed']);
    docker.default = await runWeb('d0web');
    docker.user = await runWeb('duweb', '--network', 'duser', '-p', '8081:80');
    docker.named = await runWeb('dnweb', '--network', 'dnamed');
    await runWeb('dclient', '--network', 'duser');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it("keeps tsnet's containers out of Docker's bridges, default, user-defined and named, while Docker's own reach them", async () => {
    // Positive controls: the servers answer the host, and a Docker container on the same network.
    for (const ip of Object.values(docker)) expect(await hostReaches(`http://${ip}/`)).toMatch(/^hello-from-d/);
    expect(await getIn('dclient', `http://${docker.user}/`)).toBe('hello-from-duweb');
    // tsnet's container still gets out, through the same FORWARD chain.
    expect(await getIn('tclient', `http://${REMOTE_SERVER}/`)).toBe(`you are ${UPLINK_HOST}`);

    for (const ip of Object.values(docker)) expect(await getIn('tclient', `http://${ip}/`), `tsnet container reached ${ip}`).toBeUndefined();
    // Nor through the host's address, a port Docker published (Docker's own networks cannot either).
    expect(await getIn('tclient', `http://${UPLINK_HOST}:8081/`)).toBeUndefined();
    expect(await hostReaches(`http://${UPLINK_HOST}:8081/`)).toBe('hello-from-duweb');
  });

  it("keeps Docker's containers out of tsnet's bridge", async () => {
    expect(await hostReaches(`http://${tsnetWeb}/`)).toBe('hello-from-tweb');
    expect(await getIn('tclient', `http://${tsnetWeb}/`)).toBe('hello-from-tweb');
    expect(await getIn('dclient', `http://${tsnetWeb}/`)).toBeUndefined();
    expect(await getIn('d0web', `http://${tsnetWeb}/`)).toBeUndefined();
  });

  it("forgets a Docker network that is gone and learns a new one, by Docker's events", async () => {
    await host.dockerOk(['rm', '-f', 'dnweb']);
    await host.dockerOk(['network', 'rm', 'dnamed']);
    await host.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', '10.73.0.0/24', '-o', `com.docker.network.bridge.name=${host.id}dl`, 'dlater']);
    const later = await runWeb('dlweb', '--network', 'dlater');
    expect(await hostReaches(`http://${later}/`)).toBe('hello-from-dlweb');
    // The event reaches tsnet a moment after the network exists: the drop comes, then stays.
    await waitUntil(async () => (await getIn('tclient', `http://${later}/`)) === undefined, { timeoutMs: 10_000, what: 'the new Docker bridge closed to tsnet' });
    expect(await getIn('tclient', `http://${later}/`)).toBeUndefined();
    expect(await getIn('tclient', `http://${REMOTE_SERVER}/`)).toBe(`you are ${UPLINK_HOST}`);
  });

  describe('an --internal tsnet network', () => {
    const INTERNAL_GATEWAY = '10.75.0.1';
    const OPEN_GATEWAY = '10.76.0.1';

    beforeAll(async () => {
      await nodeInNetns(netnsPath(host.netns), HOST_SERVICE, cleanup);
      await host.dockerOk(['network', 'create', '-d', host.driver, '--internal', '--subnet', '10.75.0.0/24', 'int1']);
      await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.76.0.0/24', 'open1']);
      await runWeb('imember', '--network', 'int1');
      await runWeb('iclient', '--network', 'int1');
      await runWeb('oclient', '--network', 'open1');
    });

    it("reaches no published port through its gateway, tsnet's or Docker's, while another network does", async () => {
      // Positive control: the same URLs through an ordinary network's gateway.
      expect(await getIn('oclient', `http://${OPEN_GATEWAY}:8080/`)).toBe('hello-from-tweb');
      expect(await getIn('iclient', `http://${INTERNAL_GATEWAY}:8080/`)).toBeUndefined();
      expect(await getIn('iclient', `http://${INTERNAL_GATEWAY}:8081/`)).toBeUndefined();
      expect(await getIn('iclient', `http://${UPLINK_HOST}:8080/`)).toBeUndefined();
    });

    it("reaches no service of the host, only its own members and its gateway's DNS", async () => {
      expect(await getIn('oclient', `http://${OPEN_GATEWAY}:9000/`)).toBe('host service');
      expect(await getIn('iclient', `http://${INTERNAL_GATEWAY}:9000/`)).toBeUndefined();
      const member = (await host.dockerOk(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', 'imember'])).stdout;
      expect(await getIn('iclient', `http://${member}/`)).toBe('hello-from-imember');
      const lookup = await waitUntil(async () => {
        const r = await host.execIn('iclient', ['nslookup', 'imember.int1.tsnet', INTERNAL_GATEWAY]);
        return r.exitCode === 0 && r.stdout.includes(member) ? r.stdout : undefined;
      }, { timeoutMs: 15_000, what: "the internal network's DNS answering imember" });
      expect(lookup).toContain(member);
    });
  });
});
