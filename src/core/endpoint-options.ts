import { z } from 'zod';
import { PORTMAP, type PortBinding, type Protocol } from '../../drivers/model.js';
import { RequestError } from '../errors.js';
import { parseIp } from '../net/address.js';


const PROTOCOLS: Record<number, Protocol> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
const port = z.number().int().min(0).max(65535);

const WirePortBinding = z.object({
  Proto: z.number().int(),
  IP: z.string().nullish(),
  Port: port,
  HostIP: z.string().nullish(),
  HostPort: port,
  HostPortEnd: port,
});

/** The -p list from CreateEndpoint/Join/ProgramExternalConnectivity options, checked. */
export function portBindings(options: Record<string, unknown>): PortBinding[] {
  const parsed = z.array(WirePortBinding).nullish().safeParse(options[PORTMAP]);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new RequestError([PORTMAP, ...issue.path].join('.'), issue.message);
  }
  return (parsed.data ?? []).map((wire, index) => {
    const field = `${PORTMAP}.${index}`;
    const proto = PROTOCOLS[wire.Proto];
    if (!proto) throw new RequestError(`${field}.Proto`, `unknown protocol number ${wire.Proto} (tcp is 6, udp 17, sctp 132)`);
    const hostIp = wire.HostIP ?? '';
    if (hostIp !== '' && !parseIp(hostIp)) throw new RequestError(`${field}.HostIP`, `"${hostIp}" is not an IP address`);
    const hostPortEnd = wire.HostPortEnd === 0 ? wire.HostPort : wire.HostPortEnd;
    if (hostPortEnd < wire.HostPort) throw new RequestError(`${field}.HostPortEnd`, `${hostPortEnd} is below HostPort ${wire.HostPort}`);
    if (wire.Port === 0) throw new RequestError(`${field}.Port`, 'the container port must not be 0');
    return { proto, hostIp, hostPort: wire.HostPort, hostPortEnd, port: wire.Port };
  });
}
