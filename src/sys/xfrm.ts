import { CommandError, type Runner } from './runner.js';

/** AES-GCM with a 256-bit key and a 32-bit salt, as RFC 4106 puts it into ESP, with a 128-bit ICV. */
const AEAD = ['rfc4106(gcm(aes))', '128'] as const;
/** Every SA and outbound policy of tsnet carries a reqid in this range ("tS" and the key's generation): how its own are told in the kernel's tables. */
const REQID_BASE = 0x74530000;
const REQID_SPAN = 0x10000;
/** tsnet's policies carry this priority: their mark among other programs' (an IKE daemon's). */
const POLICY_PRIORITY = 0x7453;

export const reqidOf = (generation: number): number => REQID_BASE + (generation % REQID_SPAN);
const isOwnReqid = (reqid: number): boolean => reqid >= REQID_BASE && reqid < REQID_BASE + REQID_SPAN;

/** Whether a line of `ip xfrm state|policy|monitor` output is about one of tsnet's SAs (its reqid) or policies (its priority). */
export const isOwnXfrmLine = (line: string): boolean => [...line.matchAll(/\breqid (\d+)/g)].some((m) => isOwnReqid(Number(m[1]))) || new RegExp(`\\bpriority ${POLICY_PRIORITY}\\b`).test(line);

/** A line of `ip xfrm` output without an SA's key (for logs). */
export const withoutKey = (line: string): string => line.replace(/\b(aead|enc|auth|auth-trunc) \S+ 0x[0-9a-f]+/g, '$1 …');

/** One security association: one direction between two hosts, transport mode. */
export interface EspState {
  src: string;
  dst: string;
  spi: number;
  reqid: number;
  /** 36 bytes in hex: the AES key and the salt. Not read back (the comparison is by SPI). */
  key?: string;
}

/** UDP to `port` between two hosts must travel in ESP. `out` names the reqid (key generation) it sends with; `in` (reqid 0) accepts any SA. */
export interface EspPolicy {
  src: string;
  dst: string;
  port: number;
  dir: 'in' | 'out';
  reqid: number;
}

/** tsnet's SAs and policies as the kernel holds them. */
export interface XfrmView {
  states: EspState[];
  policies: EspPolicy[];
}

export const stateId = (s: Pick<EspState, 'src' | 'dst' | 'spi'>): string => `${s.src}>${s.dst} spi 0x${s.spi.toString(16).padStart(8, '0')}`;
export const policyId = (p: Pick<EspPolicy, 'src' | 'dst' | 'dir' | 'port'>): string => `${p.src}>${p.dst} udp dport ${p.port} dir ${p.dir}`;
export const describePolicy = (p: EspPolicy): string => `${policyId(p)} reqid ${p.reqid === 0 ? 'any' : `0x${p.reqid.toString(16)}`}`;

const hostPrefix = (address: string) => `${address}/${address.includes(':') ? 128 : 32}`;

/** `ip xfrm` lines for the writes (one `ip -batch`, the keys on its stdin, never in a process's arguments). */
export const xfrmLines = {
  addState: (s: EspState): string[] => {
    if (s.key === undefined) throw new Error(`SA ${stateId(s)} has no key`);
    return ['xfrm', 'state', 'add', 'src', s.src, 'dst', s.dst, 'proto', 'esp', 'spi', `0x${s.spi.toString(16)}`, 'reqid', String(s.reqid), 'mode', 'transport', 'aead', AEAD[0], `0x${s.key}`, AEAD[1]];
  },
  deleteState: (s: EspState): string[] => ['xfrm', 'state', 'delete', 'src', s.src, 'dst', s.dst, 'proto', 'esp', 'spi', `0x${s.spi.toString(16)}`],
  /** `update` adds or replaces: switching the generation sent with is one atomic change. */
  setPolicy: (p: EspPolicy): string[] => [
    'xfrm', 'policy', 'update', 'src', hostPrefix(p.src), 'dst', hostPrefix(p.dst), 'proto', 'udp', 'dport', String(p.port), 'dir', p.dir, 'priority', String(POLICY_PRIORITY),
    'tmpl', 'src', p.src, 'dst', p.dst, 'proto', 'esp', ...(p.reqid !== 0 ? ['reqid', String(p.reqid)] : []), 'mode', 'transport', 'level', 'required',
  ],
  deletePolicy: (p: EspPolicy): string[] => ['xfrm', 'policy', 'delete', 'src', hostPrefix(p.src), 'dst', hostPrefix(p.dst), 'proto', 'udp', 'dport', String(p.port), 'dir', p.dir],
};

/** The blocks of `ip xfrm state|policy` output: a line at column 0 starts one. */
function blocks(text: string): string[] {
  const found: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (/^\S/.test(line) || found.length === 0) found.push(line);
    else found[found.length - 1] += `\n${line}`;
  }
  return found;
}

const field = (block: string, name: string): string | undefined => new RegExp(`(?:^|\\s)${name} (\\S+)`).exec(block)?.[1];

/** tsnet's ESP SAs in `ip xfrm state` output (others' are left out). */
export function parseStates(text: string): EspState[] {
  return blocks(text).flatMap((b) => {
    const [src, dst, spi, reqid] = [field(b, 'src'), field(b, 'dst'), field(b, 'spi'), Number(field(b, 'reqid'))];
    if (!src || !dst || !spi || field(b, 'proto') !== 'esp' || !isOwnReqid(reqid)) return [];
    return [{ src, dst, spi: Number.parseInt(spi, 16), reqid }];
  });
}

/** tsnet's policies (by their priority) in `ip xfrm policy` output. */
export function parsePolicies(text: string): EspPolicy[] {
  return blocks(text).flatMap((b) => {
    const [selector, ...rest] = b.split('\n');
    const tmpl = rest.join('\n');
    const dir = field(b, 'dir');
    if (Number(field(b, 'priority')) !== POLICY_PRIORITY || (dir !== 'in' && dir !== 'out')) return [];
    const [src, dst, port] = [field(selector!, 'src')?.replace(/\/\d+$/, ''), field(selector!, 'dst')?.replace(/\/\d+$/, ''), Number(field(selector!, 'dport'))];
    if (!src || !dst || !port) return [];
    return [{ src, dst, port, dir, reqid: Number(field(tmpl.slice(tmpl.indexOf('tmpl')), 'reqid') ?? 0) }];
  });
}

/**
 * The kernel's IPsec tables (XFRM) through iproute2. tsnet's entries are
 * its reqids and its policy priority; nothing else is read or touched.
 */
export class Xfrm {
  constructor(
    private readonly runner: Runner,
    /** `ip -n <netns>` (tests). */
    private readonly netns?: string,
  ) {}

  private base(): string[] {
    return this.netns ? ['-n', this.netns] : [];
  }

  /**
   * Why this kernel cannot carry an encrypted overlay, or undefined when it
   * can: an SA of the very algorithm is added (which needs XFRM, ESP and the
   * AEAD) in a netns of its own, thrown away with it; where tsnet may not
   * make one (the managed plugin has no CAP_SYS_ADMIN), here, on loopback
   * addresses no policy sends to, and deleted at once.
   */
  async missing(): Promise<string | undefined> {
    const probe: EspState = { src: '127.0.0.1', dst: '127.0.0.2', spi: 0x100, reqid: reqidOf(0), key: '0'.repeat(72) };
    const add = `${xfrmLines.addState(probe).join(' ')}\n`;
    try {
      try {
        await this.runner.run('unshare', ['--net', 'ip', '-batch', '-'], { input: add });
      } catch (error) {
        if (!(error instanceof CommandError) || !/^unshare: /m.test(error.stderr)) throw error;
        await this.write([xfrmLines.addState(probe), xfrmLines.deleteState(probe)]);
      }
      return undefined;
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      const said = error.stderr.trim().split('\n').find((l) => l.trim() !== '') ?? error.message;
      return `this kernel has no IPsec ESP with AES-GCM (XFRM, esp4 and rfc4106(gcm(aes)) are needed; ip xfrm said: ${said.replace(/^Error: /, '')})`;
    }
  }

  /** Whether the kernel has IPsec tables at all (XFRM): without them there is nothing to read or watch. */
  async hasTables(): Promise<boolean> {
    try {
      await this.runner.run('ip', [...this.base(), 'xfrm', 'state', 'count']);
      return true;
    } catch (error) {
      if (error instanceof CommandError) return false;
      throw error;
    }
  }

  async read(): Promise<XfrmView> {
    const [states, policies] = await Promise.all([this.show('state'), this.show('policy')]);
    return { states: parseStates(states), policies: parsePolicies(policies) };
  }

  private async show(table: 'state' | 'policy'): Promise<string> {
    try {
      return (await this.runner.run('ip', [...this.base(), 'xfrm', table, 'list'])).stdout;
    } catch (error) {
      // A kernel without XFRM has no tables: nothing of tsnet's is in them.
      if (error instanceof CommandError && /not supported|Protocol not/i.test(error.stderr)) return '';
      throw error;
    }
  }

  /** Runs the lines in one `ip -batch` (stops at the first that fails). */
  async write(lines: ReadonlyArray<readonly string[]>): Promise<void> {
    if (lines.length === 0) return;
    await this.runner.run('ip', [...this.base(), '-batch', '-'], { input: `${lines.map((l) => l.join(' ')).join('\n')}\n` });
  }
}
