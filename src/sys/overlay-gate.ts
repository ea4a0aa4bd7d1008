import { CommandError, type Runner } from './runner.js';

/** A table of its own: the gate holds whatever --firewall is (iptables-nft and nftables share the kernel's hooks). */
const TABLE = 'inet tsnet_overlay';
const COUNTER = 'strangers';
/** VXLAN of an encrypted segment that came or would leave without ESP. */
const CLEARTEXT = { in: 'cleartext_in', out: 'cleartext_out' } as const;

/**
 * Only the hosts of the cluster may send into an overlay: UDP to the VXLAN
 * port is dropped unless it comes from a registered host's underlay
 * address, and counted. VXLAN has no authentication of its own: a VNI is a
 * number anyone who reaches the port can guess, and the frames it carries
 * land on the segment's bridge. Rewritten whole, in one nft transaction,
 * when the members change (hosts join or leave: seldom).
 *
 * An encrypted segment's VXLAN (by the VNI in its header) must travel in
 * ESP: what arrives without having been decrypted, or would leave with no
 * SA on its route, is dropped and counted. The kernel's XFRM policies
 * already demand it on the way out, but a VXLAN socket's packets skip the
 * inbound policy check, and policies can be flushed: this table does not
 * depend on them.
 */
export class OverlayGate {
  constructor(private readonly runner: Runner) {}

  /** Lets VXLAN on `port` in from `members` (underlay addresses) only; VXLAN of `encryptedVnis` only in ESP. */
  async set(port: number, members: readonly string[], encryptedVnis: readonly number[] = []): Promise<void> {
    const v4 = members.filter((a) => !a.includes(':'));
    const v6 = members.filter((a) => a.includes(':'));
    const elements = (list: readonly string[]) => (list.length > 0 ? ` elements = { ${list.join(', ')} };` : '');
    // The VNI: bits 32–55 of the VXLAN header, right after the 8-byte UDP header.
    const vnis = `udp dport ${port} @th,96,24 { ${encryptedVnis.join(', ')} }`;
    const cleartext = encryptedVnis.length === 0 ? [] : [
      `  counter ${CLEARTEXT.in} { }`,
      `  counter ${CLEARTEXT.out} { }`,
      '  chain input_cleartext { type filter hook input priority filter - 5; policy accept;',
      `    ${vnis} meta ipsec missing counter name ${CLEARTEXT.in} drop`,
      '  }',
      '  chain output_cleartext { type filter hook output priority filter - 5; policy accept;',
      `    ${vnis} rt ipsec missing counter name ${CLEARTEXT.out} drop`,
      '  }',
    ];
    const script = [
      `add table ${TABLE}`,
      `delete table ${TABLE}`,
      `table ${TABLE} {`,
      `  set members4 { type ipv4_addr;${elements(v4)} }`,
      `  set members6 { type ipv6_addr;${elements(v6)} }`,
      `  counter ${COUNTER} { }`,
      // Before the filter priority: no accept of another table can come first (a drop in any base chain is final anyway).
      '  chain input { type filter hook input priority filter - 5; policy accept;',
      `    meta nfproto ipv4 udp dport ${port} ip saddr != @members4 counter name ${COUNTER} drop`,
      `    meta nfproto ipv6 udp dport ${port} ip6 saddr != @members6 counter name ${COUNTER} drop`,
      '  }',
      ...cleartext,
      '}',
    ].join('\n');
    await this.runner.run('nft', ['-f', '-'], { input: `${script}\n` });
  }

  /** No overlay left on this host: the port is nobody's, the table goes. */
  async remove(): Promise<void> {
    try {
      await this.runner.run('nft', ['delete', 'table', ...TABLE.split(' ')]);
    } catch (error) {
      if (!(error instanceof CommandError) || !/No such file or directory/.test(error.stderr)) throw error;
    }
  }

  /** VXLAN datagrams dropped since the gate was set (for the metrics); 0 without a gate. */
  strangers(): Promise<number> {
    return this.count(COUNTER);
  }

  /** An encrypted segment's VXLAN dropped for coming, or leaving, without ESP; 0 without an encrypted segment. */
  cleartext(direction: 'in' | 'out'): Promise<number> {
    return this.count(CLEARTEXT[direction]);
  }

  private async count(name: string): Promise<number> {
    let stdout: string;
    try {
      ({ stdout } = await this.runner.run('nft', ['-j', 'list', 'counter', ...TABLE.split(' '), name]));
    } catch (error) {
      if (error instanceof CommandError && /No such file or directory/.test(error.stderr)) return 0;
      throw error;
    }
    const counter = (JSON.parse(stdout) as { nftables: Array<{ counter?: { packets: number } }> }).nftables.find((o) => o.counter)?.counter;
    return counter?.packets ?? 0;
  }
}
