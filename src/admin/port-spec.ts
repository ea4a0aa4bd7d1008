import type { PortBinding, Protocol } from '../../drivers/model.js';
import { RequestError } from '../errors.js';
import { parseIp } from '../net/address.js';

const SPEC = /^(?:(?<ip>\[[0-9A-Fa-f:.]+\]|[0-9.]+):)?(?<host>\d+):(?<port>\d+)(?:\/(?<proto>tcp|udp|sctp))?$/;

function portNumber(text: string, what: string, spec: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new RequestError('port', `${what} ${text} of "${spec}" is not from 1 to 65535`);
  return value;
}

/** `[hostip:]hostport:port[/proto]`, as docker's -p writes one port (an IPv6 host IP in brackets). */
export function parsePortSpec(spec: string): PortBinding {
  const match = SPEC.exec(spec);
  if (!match?.groups) throw new RequestError('port', `"${spec}" is not [hostip:]hostport:port[/tcp|udp|sctp]`);
  const { ip, host, port, proto } = match.groups;
  const hostIp = ip?.replace(/^\[|\]$/g, '') ?? '';
  if (hostIp !== '' && !parseIp(hostIp)) throw new RequestError('port', `"${hostIp}" in "${spec}" is not an IP address`);
  const hostPort = portNumber(host!, 'host port', spec);
  return { proto: (proto ?? 'tcp') as Protocol, hostIp, hostPort, hostPortEnd: hostPort, port: portNumber(port!, 'port', spec) };
}

export function formatPortSpec(binding: PortBinding): string {
  const ip = binding.hostIp.includes(':') ? `[${binding.hostIp}]:` : binding.hostIp ? `${binding.hostIp}:` : '';
  const host = binding.hostPortEnd !== binding.hostPort ? `${binding.hostPort}-${binding.hostPortEnd}` : String(binding.hostPort);
  return `${ip}${host}:${binding.port}/${binding.proto}`;
}
