import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { SegmentKey, SegmentSecrets } from '../cluster/keys.js';
import { type EspPolicy, type EspState, reqidOf } from '../sys/xfrm.js';

/**
 * What ESP adds to every VXLAN datagram in transport mode with AES-GCM, on
 * top of VXLAN's 50: its header 8 (SPI, sequence number), the IV 8, the
 * ICV 16, the trailer 2 (pad length, next header) and up to 3 bytes of
 * padding to a multiple of 4. A 1500-byte underlay carries a 1413-byte
 * container MTU.
 */
export const ESP_OVERHEAD = 37;
/** 32 bytes of AES key and 4 of salt per SA. */
const SA_KEY_BYTES = 36;

/** A new generation of a segment's key: 32 random bytes. */
export function newKey(generation: number): SegmentKey {
  return { generation, secret: randomBytes(32).toString('base64'), created: new Date().toISOString() };
}

/** The first keys of an encrypted segment. */
export function newSecrets(rekeySeconds?: number): SegmentSecrets {
  return { keys: [newKey(1)], send: 1, rotatedAt: new Date().toISOString(), ...(rekeySeconds !== undefined ? { rekeySeconds } : {}) };
}

/** Two hosts of an encrypted segment, from this host's side: its underlay, the other's, the VXLAN port and the segment's keys. */
export interface EncryptedPair {
  self: string;
  peer: string;
  port: number;
  vni: number;
  keys: readonly SegmentKey[];
  send: number;
}

/**
 * One direction's SA under one generation: its key and SPI derived from the
 * generation's secret and what both hosts know (the VNI, the generation,
 * source and destination), so the two hosts agree without talking. The
 * SPI only has to be unique among the SAs one host receives with.
 */
export function deriveState(secret: string, vni: number, generation: number, src: string, dst: string): EspState {
  const info = `${vni}/${generation}/${src}>${dst}`;
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'base64'), 'tsnet-esp-v1', info, SA_KEY_BYTES)).toString('hex');
  // 0–255 are reserved SPIs (RFC 4303).
  const spi = 0x100 + (createHash('sha256').update(info).digest().readUInt32BE(0) % (0x1_0000_0000 - 0x100));
  return { src, dst, spi, reqid: reqidOf(generation), key };
}

/** Both directions under every generation the segment holds: this host receives with all of them, and sends with whichever its policy names. */
export function pairStates(pair: EncryptedPair): EspState[] {
  return pair.keys.flatMap((k) => [deriveState(k.secret, pair.vni, k.generation, pair.self, pair.peer), deriveState(k.secret, pair.vni, k.generation, pair.peer, pair.self)]);
}

export function pairPolicies(pair: EncryptedPair): EspPolicy[] {
  return [
    { src: pair.self, dst: pair.peer, port: pair.port, dir: 'out', reqid: reqidOf(pair.send) },
    { src: pair.peer, dst: pair.self, port: pair.port, dir: 'in', reqid: 0 },
  ];
}
