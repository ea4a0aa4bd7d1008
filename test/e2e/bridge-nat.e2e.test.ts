/**
 * Bridge networks' way in and out with a real dockerd: SNAT to a remote
 * server (masquerade, host_ipv4, off), published ports (tcp, udp, a range, 127.0.0.1, the host's own
 * address, hairpin), ports gone after stop, restored after a tsnet restart
 * that lost the rules, `tsnet port add/rm` on a running container, internal
 * networks, isolation between networks, ICC off and IPv6. The host's FORWARD
 * policy is DROP throughout, as on a machine where Docker enabled forwarding
 * (and dockerd keeps its DOCKER-USER and isolation chains in FORWARD). Once
 * per firewall backend: nftables, then iptables.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FirewallKind } from '../../src/sys/index.js';
import {
  CleanupStack,
  createDockerHost,
  createOutside,
  type DockerHost,
  execInNetns,
  nodeInNetns,
  REMOTE_SERVER,
  run,
  TEST_IMAGE,
  TSNET_CLI,
  udpAsk,
  udpEchoServer,
  UPLINK_HOST,
  UPLINK_OUTSIDE,
  waitUntil,
} from '../harness/index.js';

let host: DockerHost;
let outside: string;
let firewall: FirewallKind;
const cleanup = new CleanupStack();
const BACKENDS: FirewallKind[] = ['nftables', 'iptables'];

/** tsnet's rules as the backend's tools show them. */
async function firewallRules(): Promise<string> {
  const listings = firewall === 'nftables' ? [['nft', 'list', 'table', 'inet', 'tsnet']] : [['iptables-save'], ['ip6tables-save']];
  return (await Promise.all(listings.map((argv) => host.execInHost(argv)))).map((r) => r.stdout).join('\n');
}

/** What a reboot or a firewall reload does: every rule of the backend (and every NAT rule of iptables) gone. */
async function loseFirewallRules(): Promise<void> {
  await host.execInHost(['iptables', '-t', 'nat', '-F']);
  await host.execInHost(['iptables', '-t', 'nat', '-X']);
  if (firewall === 'nftables') await host.execInHost(['nft', 'delete', 'table', 'inet', 'tsnet']);
}

const WEB = `mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && httpd -p 80 -h /www && httpd -p 91 -h /www && httpd -p 92 -h /www && exec sleep 3600`;

async function runWeb(name: string, ...args: string[]): Promise<string> {
  await host.dockerOk(['run', '-d', '--pull=never', '--name', name, '--hostname', name, ...args, TEST_IMAGE, 'sh', '-c', WEB]);
  return ipOf(name);
}

async function ipOf(name: string, field = 'IPAddress'): Promise<string> {
  const out = (await host.dockerOk(['inspect', '-f', `{{range .NetworkSettings.Networks}}{{.${field}}}{{end}}`, name])).stdout;
  expect(out).not.toBe('');
  return out;
}

/** HTTP GET from a netns (the host's or the outside's); the body, or undefined when nothing answered. */
async function getFrom(netns: string, url: string): Promise<string | undefined> {
  const r = await execInNetns(netns, ['timeout', '3', 'busybox', 'wget', '-qO-', url]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

/**
 * HTTP GET from a fresh container on `network`. The shell stays PID 1 (the
 * trailing `exit` keeps it from exec'ing wget): PID 1 ignores SIGTERM, so
 * `timeout` could not stop a wget waiting for an answer that never comes.
 */
function getInNewContainer(network: string, url: string) {
  return host.docker(['run', '--rm', '--pull=never', '--network', network, TEST_IMAGE, 'sh', '-c', 'timeout 3 wget -qO- "$0"; exit $?', url]);
}

async function getInContainer(name: string, url: string): Promise<string | undefined> {
  const r = await host.execIn(name, ['timeout', '3', 'wget', '-qO-', url]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

/** Waits for a published port to answer (the container's httpd may still be starting). */
const answers = (netns: string, url: string) =>
  waitUntil(() => getFrom(netns, url), { timeoutMs: 15_000, what: `${url} from ${netns}`, diagnostics: () => host.tsnet.logTail() });

async function pings(container: string, address: string, ping = 'ping'): Promise<boolean> {
  return (await host.execIn(container, [ping, '-c', '1', '-W', '2', address])).exitCode === 0;
}

const tsnetCli = (...args: string[]) => run(process.execPath, [TSNET_CLI, ...args, '--name', host.driver, '--socket-dir', host.dockerd.pluginDir]);

describe.each(BACKENDS)('bridge networks on %s: NAT, published ports, isolation, IPv6 with a real dockerd', (backend) => {
  beforeAll(async () => {
    firewall = backend;
    host = await createDockerHost({ dockerdArgs: ['--bridge=none'], tsnetArgs: ['--firewall', backend] });
    cleanup.defer('destroy docker host', () => host.destroy());
    outside = `${host.id}o`;
    await createOutside(host.netns, outside, cleanup);
    await host.execInHost(['iptables', '-P', 'FORWARD', 'DROP']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.40.0.0/24', 'n1']);
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('masquerades a container\'s traffic to a remote server behind the uplink', async () => {
    expect((await getInNewContainer('n1', `http://${REMOTE_SERVER}/`)).stdout).toBe(`you are ${UPLINK_HOST}`);
  });

  it('SNATs to com.docker.network.host_ipv4, and leaves the source alone with masquerade off', async () => {
    await host.execInHost(['ip', 'address', 'add', '198.51.100.3/24', 'dev', 'uplink']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.47.0.0/24', '-o', 'com.docker.network.host_ipv4=198.51.100.3', 'snat']);
    expect((await getInNewContainer('snat', `http://${REMOTE_SERVER}/`)).stdout).toBe('you are 198.51.100.3');
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.48.0.0/24', '-o', 'com.docker.network.bridge.enable_ip_masquerade=false', 'nomasq']);
    // The outside has no route back to 10.48.0.0/24: without masquerade nothing answers.
    const none = await getInNewContainer('nomasq', `http://${REMOTE_SERVER}/`);
    expect(none.exitCode).not.toBe(0);
  });

  describe('published ports', () => {
    let webIp: string;
    let otherIp: string;

    beforeAll(async () => {
      webIp = await runWeb('web', '--network', 'n1', '-p', '8080:80', '-p', '9001-9002:91-92', '-p', '5353:53/udp', '-p', '127.0.0.1:8090:80');
      otherIp = await runWeb('other', '--network', 'n1');
      // The UDP server runs in the container's netns (busybox's nc has no UDP); SandboxKey lives in dockerd's mount ns.
      const pid = (await host.dockerOk(['inspect', '-f', '{{.State.Pid}}', 'web'])).stdout;
      await nodeInNetns(`/proc/${pid}/ns/net`, udpEchoServer(53), cleanup);
    });

    it('reaches the container from another host: tcp, a range, udp', async () => {
      expect(await answers(outside, `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
      expect(await getFrom(outside, `http://${UPLINK_HOST}:9001/`)).toBe('hello-from-web');
      expect(await getFrom(outside, `http://${UPLINK_HOST}:9002/`)).toBe('hello-from-web');
      const udp = await execInNetns(outside, [process.execPath, '-e', udpAsk(UPLINK_HOST, 5353, 'hi')]);
      expect(udp.stdout).toBe('udp:hi');
    });

    it('serves a port bound to 127.0.0.1 to the host only', async () => {
      expect(await answers(host.netns, 'http://127.0.0.1:8090/')).toBe('hello-from-web');
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8090/`)).toBeUndefined();
    });

    it('lets the host reach its own address\'s published port', async () => {
      expect(await getFrom(host.netns, `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
    });

    it('hairpins: containers of the network reach the port through the host address, the publisher itself too', async () => {
      expect(await getInContainer('other', `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
      expect(await getInContainer('web', `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
    });

    it('refuses a host port another endpoint publishes, naming it', async () => {
      const r = await host.docker(['run', '--rm', '--pull=never', '--network', 'n1', '-p', '8080:80', TEST_IMAGE, 'true']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(/HostPort: host port 8080\/tcp on all addresses is already published by tsnet endpoint/);
    });

    it('tsnet port add/rm changes the ports of a running container, and the change survives a restart', async () => {
      const added = await tsnetCli('port', 'add', otherIp, '8095:80');
      expect(added.exitCode, added.stderr).toBe(0);
      expect(added.stdout).toContain('8095:80/tcp');
      expect(await answers(outside, `http://${UPLINK_HOST}:8095/`)).toBe('hello-from-other');

      const clash = await tsnetCli('port', 'add', otherIp, '9001:80');
      expect(clash.exitCode).toBe(1);
      expect(clash.stderr).toMatch(/ports\.1\.HostPort: host port 9001\/tcp .* already published by tsnet endpoint/);
      const unknown = await tsnetCli('port', 'add', '10.40.0.250', '8096:80');
      expect(unknown.stderr).toMatch(/no tsnet endpoint has the address 10\.40\.0\.250/);

      await host.tsnet.restart();
      expect((await tsnetCli('port', 'ls')).stdout).toMatch(new RegExp(`${otherIp}/24\\t8095:80/tcp`));
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8095/`)).toBe('hello-from-other');

      const removed = await tsnetCli('port', 'rm', otherIp, '8095:80');
      expect(removed.exitCode, removed.stderr).toBe(0);
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8095/`)).toBeUndefined();
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
    });

    it('restores the forwards from state after a restart that lost every NAT rule', async () => {
      await host.tsnet.stop();
      await loseFirewallRules();
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8080/`)).toBeUndefined();
      await host.tsnet.start();
      expect(await answers(outside, `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
    });

    it('lets the user\'s DOCKER-USER rules see tsnet\'s traffic first, as they see Docker\'s', async () => {
      const rule = ['DOCKER-USER', '-s', UPLINK_OUTSIDE, '-d', webIp, '-p', 'tcp', '--dport', '80', '-j', 'DROP'];
      expect((await host.execInHost(['iptables', '-I', ...rule])).exitCode).toBe(0);
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8080/`)).toBeUndefined();
      await host.execInHost(['iptables', '-D', ...rule]);
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8080/`)).toBe('hello-from-web');
    });

    it('closes the ports when the container stops', async () => {
      await host.dockerOk(['stop', '-t', '1', 'web']);
      expect(await getFrom(outside, `http://${UPLINK_HOST}:8080/`)).toBeUndefined();
      expect(await getFrom(host.netns, 'http://127.0.0.1:8090/')).toBeUndefined();
      expect(await firewallRules()).not.toMatch(new RegExp(`${webIp.replaceAll('.', '\\.')}(:| \\. )`));
    });
  });

  it('keeps an --internal network in: no way out', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--internal', '--subnet', '10.41.0.0/24', 'int1']);
    const out = await getInNewContainer('int1', `http://${REMOTE_SERVER}/`);
    expect(out.exitCode).not.toBe(0);
    // Not even with a route set by hand: the host drops what leaves the bridge.
    await runWeb('in1', '--network', 'int1', '--cap-add', 'NET_ADMIN');
    expect((await host.execIn('in1', ['ip', 'route', 'add', 'default', 'via', '10.41.0.1'])).exitCode).toBe(0);
    expect(await getInContainer('in1', `http://${REMOTE_SERVER}/`)).toBeUndefined();
    // Nor the host behind its gateway (only the DNS there); its members reach each other.
    expect(await pings('in1', '10.41.0.1')).toBe(false);
    const in2 = await runWeb('in2', '--network', 'int1');
    expect(await pings('in1', in2)).toBe(true);
  });

  it('isolates tsnet networks from each other unless both say tsnet.isolate=off', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.42.0.0/24', 'n2']);
    await runWeb('a2', '--network', 'n2');
    const target = await runWeb('a1', '--network', 'n1');
    expect(await pings('a2', target)).toBe(false);
    expect(await getInContainer('a2', `http://${target}/`)).toBeUndefined();

    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.43.0.0/24', '-o', 'tsnet.isolate=off', 'open1']);
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.44.0.0/24', '-o', 'tsnet.isolate=off', 'open2']);
    const open1 = await runWeb('o1', '--network', 'open1');
    await runWeb('o2', '--network', 'open2');
    expect(await pings('o2', open1)).toBe(true);
    expect(await pings('o2', target)).toBe(false);
  });

  it('with ICC off, containers of one bridge cannot talk but still reach the outside', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--subnet', '10.45.0.0/24', '-o', 'com.docker.network.bridge.enable_icc=false', 'noicc']);
    const i1 = await runWeb('i1', '--network', 'noicc');
    await runWeb('i2', '--network', 'noicc');
    expect(await pings('i2', i1)).toBe(false);
    expect(await getInContainer('i2', `http://${i1}/`)).toBeUndefined();
    expect(await getInContainer('i2', `http://${REMOTE_SERVER}/`)).toBe(`you are ${UPLINK_HOST}`);
    expect(await pings('i2', '10.45.0.1')).toBe(true);
    // The same pair with ICC on talks (so the check above can fail).
    expect(await pings('other', await ipOf('a1'))).toBe(true);
  });

  it('IPv6: containers get their addresses and routes, ping each other and the gateway', async () => {
    await host.dockerOk(['network', 'create', '-d', host.driver, '--ipv6', '--subnet', '10.46.0.0/24', '--subnet', 'fd46::/64', 'v6']);
    await runWeb('s1', '--network', 'v6');
    await runWeb('s2', '--network', 'v6');
    const s1 = await ipOf('s1', 'GlobalIPv6Address');
    expect(s1).toMatch(/^fd46::/);
    expect((await host.execIn('s2', ['ip', '-6', 'route'])).stdout).toMatch(/default via fd46::1 dev eth0/);
    expect(await pings('s2', s1, 'ping6')).toBe(true);
    expect(await pings('s2', 'fd46::1', 'ping6')).toBe(true);
    // The isolation of the bridge holds for IPv6 too: ip6tables rules, or the inet table's (which serves both families).
    const rules = await firewallRules();
    if (firewall === 'iptables') expect(rules).toMatch(/-A TSNET-GUARD -o tsbr-\w+ -j TSNET-FWD-\w+/);
    else {
      expect(rules).toContain('oifname @bridges drop');
      expect(rules).toMatch(/set subnets6 \{[^}]*"tsbr-\w+" \. fd46::\/64/);
    }
  });
});
