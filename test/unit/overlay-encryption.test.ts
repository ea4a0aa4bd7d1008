// Encrypted overlays without a kernel: the SAs both hosts derive alike, the
// kernel's tables as iproute2 prints them, the host-wide plan of SAs and
// policies, the segment's keys in the store and a rotation's steps against
// an in-memory etcd. The data path itself is tested in the guest
// (test/vm/overlay-encrypted.vm.test.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { deadlineFromNow } from '../../src/cluster/etcd-client.js';
import { aliveKey, type KeyAck, type PoolDefinition, PoolKeys, type SegmentSecrets } from '../../src/cluster/keys.js';
import { joinPool, removeUser, segmentVni } from '../../src/cluster/pool-definition.js';
import { HostCiphers } from '../../src/overlay/ciphers.js';
import { deriveState, newSecrets, pairStates } from '../../src/overlay/esp.js';
import { rotateSegmentKey } from '../../src/overlay/key-rotation.js';
import { CommandError, RecordingRunner } from '../../src/sys/runner.js';
import { parsePolicies, parseStates, reqidOf, Xfrm } from '../../src/sys/xfrm.js';
import { FakeClusterKv } from '../harness/fake-cluster-kv.js';

const A = '10.251.1.1';
const B = '10.251.2.1';
const C = '10.251.3.1';
const secrets = newSecrets();
const secret = secrets.keys[0]!.secret;

describe('the SAs of a pair of hosts', () => {
  it('are derived alike on both hosts, differ per direction and generation, and never take a reserved SPI', () => {
    const fromA = pairStates({ self: A, peer: B, port: 4789, vni: 0x740001, keys: secrets.keys, send: 1 });
    const fromB = pairStates({ self: B, peer: A, port: 4789, vni: 0x740001, keys: secrets.keys, send: 1 });
    expect(new Set(fromA.map((s) => JSON.stringify(s)))).toEqual(new Set(fromB.map((s) => JSON.stringify(s))));
    const [ab, ba] = [deriveState(secret, 0x740001, 1, A, B), deriveState(secret, 0x740001, 1, B, A)];
    expect(ab.key).not.toBe(ba.key);
    expect(ab.spi).not.toBe(ba.spi);
    expect(deriveState(secret, 0x740001, 2, A, B).key).not.toBe(ab.key);
    expect(ab.key).toMatch(/^[0-9a-f]{72}$/);
    for (let n = 0; n < 2000; n++) expect(deriveState(secret, n, 1, A, B).spi).toBeGreaterThanOrEqual(0x100);
    // Another secret: other keys, the same SPI (SPIs are no secret).
    const other = deriveState(newSecrets().keys[0]!.secret, 0x740001, 1, A, B);
    expect(other.spi).toBe(ab.spi);
    expect(other.key).not.toBe(ab.key);
  });
});

describe('the kernel\'s IPsec tables as iproute2 prints them', () => {
  it('keeps tsnet\'s SAs (its reqids) and policies (its priority), and leaves everyone else\'s out', () => {
    const states = [
      `src ${A} dst ${B}`, `\tproto esp spi 0x00001000 reqid ${reqidOf(3)} mode transport`, '\treplay-window 0 ', '\taead rfc4106(gcm(aes)) 0x00 128',
      `src ${A} dst ${C}`, '\tproto esp spi 0x00002000 reqid 7 mode tunnel', '\treplay-window 32 ',
    ].join('\n');
    expect(parseStates(states)).toEqual([{ src: A, dst: B, spi: 0x1000, reqid: reqidOf(3) }]);
    const policies = [
      `src ${A}/32 dst ${B}/32 proto udp dport 4789 `, `\tdir out priority ${0x7453} ptype main `, `\ttmpl src ${A} dst ${B}`, `\t\tproto esp reqid ${reqidOf(3)} mode transport`,
      `src ${B}/32 dst ${A}/32 proto udp dport 4789 `, `\tdir in priority ${0x7453} ptype main `, `\ttmpl src ${B} dst ${A}`, '\t\tproto esp reqid 0 mode transport',
      `src ${A}/32 dst ${C}/32 `, '\tdir out priority 0 ptype main ', `\ttmpl src ${A} dst ${C}`, '\t\tproto esp reqid 7 mode tunnel',
    ].join('\n');
    expect(parsePolicies(policies)).toEqual([
      { src: A, dst: B, port: 4789, dir: 'out', reqid: reqidOf(3) },
      { src: B, dst: A, port: 4789, dir: 'in', reqid: 0 },
    ]);
  });
});

describe('the probe for ESP', () => {
  it('adds an SA of the algorithm in a netns of its own, or where it may not make one, on loopback and deletes it at once; a refusal names the kernel\'s words', async () => {
    const inOwnNetns = new RecordingRunner();
    expect(await new Xfrm(inOwnNetns).missing()).toBeUndefined();
    expect(inOwnNetns.lines()).toEqual([`unshare --net ip -batch -\nxfrm state add src 127.0.0.1 dst 127.0.0.2 proto esp spi 0x100 reqid ${reqidOf(0)} mode transport aead rfc4106(gcm(aes)) 0x${'0'.repeat(72)} 128`]);
    // The managed plugin: no CAP_SYS_ADMIN for unshare.
    const inPlace = new RecordingRunner().reply('unshare', new CommandError('unshare', 1, 'unshare: unshare failed: Operation not permitted\n'));
    expect(await new Xfrm(inPlace).missing()).toBeUndefined();
    expect(inPlace.lines()[1]!.split('\n').map((l) => l.split(' ').slice(0, 3).join(' '))).toEqual(['ip -batch -', 'xfrm state add', 'xfrm state delete']);
    const noEsp = new RecordingRunner().reply('unshare', new CommandError('unshare', 1, 'Error: Requested AEAD algorithm not found.\n'));
    expect(await new Xfrm(noEsp).missing()).toBe('this kernel has no IPsec ESP with AES-GCM (XFRM, esp4 and rfc4106(gcm(aes)) are needed; ip xfrm said: Requested AEAD algorithm not found.)');
  });
});

describe('the host\'s SAs and policies', () => {
  const pairs = (vni: number, peers: string[], send = 1, keys = secrets.keys) => ({ vni, pairs: peers.map((peer) => ({ self: A, peer, port: 4789, vni, keys, send })) });
  const batches = (runner: RecordingRunner) => runner.commands.filter((c) => c.args.includes('-batch')).map((c) => c.input!.trimEnd().split('\n').map((l) => l.split(' ').slice(0, 3).join(' ')));

  it('writes new SAs before the policies that use them, removes policies before their SAs, and takes a shared peer from the segment of the lowest VNI', async () => {
    const runner = new RecordingRunner();
    const ciphers = new HostCiphers(new Xfrm(runner));
    await ciphers.set('net1', pairs(0x740002, [B]));
    expect(batches(runner)).toEqual([['xfrm state add', 'xfrm state add', 'xfrm policy update', 'xfrm policy update']]);
    // A second segment with the same peer and a lower VNI carries the pair now: its keys, same policies' selectors.
    const other = newSecrets();
    await ciphers.set('net2', pairs(0x740001, [B, C], 1, other.keys));
    const wanted = ciphers.wanted();
    expect(new Set(wanted.states.map((s) => s.network))).toEqual(new Set(['net2']));
    expect(wanted.states.find((s) => s.src === A && s.dst === B)?.key).toBe(deriveState(other.keys[0]!.secret, 0x740001, 1, A, B).key);
    expect(ciphers.count()).toBe(4);
    // net2 goes: net1 carries B again; C's policies go before its SAs.
    runner.commands.length = 0;
    await ciphers.set('net2', undefined);
    const [lines] = batches(runner);
    expect(lines!.slice(0, 2)).toEqual(['xfrm state add', 'xfrm state add']);
    expect(lines!.indexOf('xfrm policy delete')).toBeLessThan(lines!.indexOf('xfrm state delete'));
  });

  it('switches the generation it sends with by updating its outbound policy only', async () => {
    const runner = new RecordingRunner();
    const ciphers = new HostCiphers(new Xfrm(runner));
    const both = [...secrets.keys, { generation: 2, secret: newSecrets().keys[0]!.secret, created: '' }];
    await ciphers.set('net', pairs(0x740001, [B], 1, both));
    runner.commands.length = 0;
    await ciphers.set('net', pairs(0x740001, [B], 2, both));
    const [input] = runner.commands.filter((c) => c.args.includes('-batch')).map((c) => c.input!.trim());
    expect(input).toContain(`dir out priority ${0x7453} tmpl src ${A} dst ${B} proto esp reqid ${reqidOf(2)}`);
    expect(input!.split('\n')).toHaveLength(1);
  });
});

describe('an encrypted segment in the store', () => {
  const FIELD = 'tsnet.mode';
  const encrypted = { field: 'tsnet.encrypt', firstKeys: () => newSecrets(3600) };
  const plain = { field: 'tsnet.encrypt' };
  const setUp = async (...hosts: string[]) => {
    const kv = new FakeClusterKv();
    const keys = new PoolKeys('sec', 4);
    for (const host of hosts) await joinPool(kv, keys, { host, subnet: '10.93.0.0/24', field: 'Options.tsnet.pool' }, deadlineFromNow());
    return { kv, keys };
  };

  it('gets its keys with its VNI, in one transaction, and refuses a network that asks otherwise, naming tsnet.encrypt', async () => {
    const { kv, keys } = await setUp('h1', 'h2');
    const vni = await segmentVni(kv, keys, FIELD, deadlineFromNow(), encrypted);
    expect(JSON.parse(kv.value(keys.definition)!) as PoolDefinition).toMatchObject({ vni, encrypted: true });
    expect(JSON.parse(kv.value(keys.encryption)!) as SegmentSecrets).toMatchObject({ send: 1, rekeySeconds: 3600, keys: [{ generation: 1 }] });
    // A second encrypted network keeps the keys there are.
    const first = kv.value(keys.encryption);
    expect(await segmentVni(kv, keys, FIELD, deadlineFromNow(), encrypted)).toBe(vni);
    expect(kv.value(keys.encryption)).toBe(first);
    await expect(segmentVni(kv, keys, FIELD, deadlineFromNow(), plain)).rejects.toMatchObject({ field: 'tsnet.encrypt', reason: 'segment sec is encrypted: create the network with -o tsnet.encrypt=on' });
    const other = await setUp('h1');
    await segmentVni(other.kv, other.keys, FIELD, deadlineFromNow(), plain);
    await expect(segmentVni(other.kv, other.keys, FIELD, deadlineFromNow(), encrypted)).rejects.toMatchObject({ field: 'tsnet.encrypt', reason: 'segment sec is not encrypted (its first network decided so); create this network without it' });
    expect(other.kv.value(other.keys.encryption)).toBeUndefined();
  });

  /** Hosts that acknowledge what the store holds, as their followers do, until stopped. */
  function acknowledging(kv: FakeClusterKv, keys: PoolKeys, hosts: string[]): () => void {
    let running = true;
    void (async () => {
      while (running) {
        const held = JSON.parse(kv.value(keys.encryption)!) as SegmentSecrets;
        const ack: KeyAck = { installed: held.keys.map((k) => k.generation), sending: held.send };
        for (const host of hosts) await kv.txn([], [{ put: keys.keyAck(host), value: JSON.stringify(ack) }], []);
        await sleep(20);
      }
    })();
    return () => {
      running = false;
    };
  }

  it('rotates in three steps, each once every live host acknowledged the last: receive with the new key, send with it, drop the old', async () => {
    const { kv, keys } = await setUp('h1', 'h2', 'h3');
    await segmentVni(kv, keys, FIELD, deadlineFromNow(), encrypted);
    // h3 is dead: nobody waits for it.
    for (const host of ['h1', 'h2']) await kv.txn([], [{ put: aliveKey(host), value: '{}' }], []);
    // Each write of the keys, and which generations the hosts had acknowledged when it was made.
    const step = () => {
      const held = JSON.parse(kv.value(keys.encryption)!) as SegmentSecrets;
      return `${held.keys.map((k) => k.generation).join('+')} send ${held.send}`;
    };
    const seen = [step()];
    const txn = kv.txn.bind(kv);
    kv.txn = async (compares, success, failure) => {
      const result = await txn(compares, success, failure);
      if (success.some((op) => 'put' in op && op.put === keys.encryption)) seen.push(step());
      return result;
    };
    const stop = acknowledging(kv, keys, ['h1', 'h2']);
    try {
      expect(await rotateSegmentKey(kv, keys)).toEqual({ from: 1, to: 2, hosts: ['h1', 'h2'] });
    } finally {
      stop();
    }
    expect(seen).toEqual(['1 send 1', '1+2 send 1', '1+2 send 2', '2 send 2']);
  });

  it('stops where a live host did not acknowledge, naming it, and the next rotation goes on from there', async () => {
    const { kv, keys } = await setUp('h1', 'h2');
    await segmentVni(kv, keys, FIELD, deadlineFromNow(), encrypted);
    for (const host of ['h1', 'h2']) await kv.txn([], [{ put: aliveKey(host), value: '{}' }], []);
    const onlyH1 = acknowledging(kv, keys, ['h1']);
    await expect(rotateSegmentKey(kv, keys, 300)).rejects.toMatchObject({ reason: expect.stringContaining('host(s) h2 did not hold key generation 2 within 0.3 s') });
    onlyH1();
    expect(JSON.parse(kv.value(keys.encryption)!) as SegmentSecrets).toMatchObject({ send: 1, keys: [{ generation: 1 }, { generation: 2 }] });
    const both = acknowledging(kv, keys, ['h1', 'h2']);
    try {
      expect(await rotateSegmentKey(kv, keys)).toMatchObject({ to: 2 });
    } finally {
      both();
    }
    expect(JSON.parse(kv.value(keys.encryption)!) as SegmentSecrets).toMatchObject({ send: 2, keys: [{ generation: 2 }] });
    // A host that leaves the pool takes its acknowledgement along; the last one, the whole segment.
    await removeUser(kv, keys, 'h2', deadlineFromNow());
    expect([kv.value(keys.keyAck('h1')) !== undefined, kv.value(keys.keyAck('h2'))]).toEqual([true, undefined]);
    await removeUser(kv, keys, 'h1', deadlineFromNow());
    expect([kv.value(keys.encryption), kv.value(keys.keyAck('h1'))]).toEqual([undefined, undefined]);
  });
});
