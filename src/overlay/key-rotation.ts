import { setTimeout as sleep } from 'node:timers/promises';
import { type ClusterKv, deadlineFromNow } from '../cluster/etcd-client.js';
import { ALIVE_PREFIX, decodeValue, KeyAck, PoolDefinition, type PoolKeys, SegmentSecrets } from '../cluster/keys.js';
import { RequestError } from '../errors.js';
import { newKey } from './esp.js';

/** How long a step waits for every live host to acknowledge it. */
const STEP_TIMEOUT_MS = 30_000;
const POLL_MS = 200;
/**
 * After every host sends with the new key, packets sent with the old one
 * just before may still be on the wire: the old key is dropped only this
 * much later.
 */
const IN_FLIGHT_MS = 1000;

/** How far one rotation got, for the caller's report. */
export interface Rotation {
  from: number;
  to: number;
  /** The live hosts that acknowledged each step. */
  hosts: string[];
}

/**
 * Replaces an encrypted segment's key on every host with no packet lost:
 * the new key is added (every host receives with it, sends with the old),
 * then sent with once every live host holds it, then the old one is dropped
 * once every live host sends with the new. Each step is one compare-and-put
 * of the segment's keys; a rotation cut short (its host died, a timeout) is
 * taken up from where the keys stand by the next one. A host that is down
 * misses nothing: it reads the keys as they are when it comes back.
 */
export async function rotateSegmentKey(etcd: ClusterKv, keys: PoolKeys, stepTimeoutMs = STEP_TIMEOUT_MS): Promise<Rotation> {
  let { secrets, revision } = await readSecrets(etcd, keys);
  const from = secrets.send;
  // Half done: the newest key is the one being rotated to.
  if (secrets.keys.length === 1) {
    const next = newKey(Math.max(...secrets.keys.map((k) => k.generation)) + 1);
    ({ secrets, revision } = await writeSecrets(etcd, keys, { ...secrets, keys: [...secrets.keys, next] }, revision));
  }
  const to = Math.max(...secrets.keys.map((k) => k.generation));
  await waitForHosts(etcd, keys, (ack) => ack.installed.includes(to), `hold key generation ${to}`, stepTimeoutMs);
  if (secrets.send !== to) ({ secrets, revision } = await writeSecrets(etcd, keys, { ...secrets, send: to, rotatedAt: new Date().toISOString() }, revision));
  const hosts = await waitForHosts(etcd, keys, (ack) => ack.sending === to, `send with key generation ${to}`, stepTimeoutMs);
  await sleep(IN_FLIGHT_MS);
  await writeSecrets(etcd, keys, { ...secrets, keys: secrets.keys.filter((k) => k.generation === to) }, revision);
  return { from: from === to ? from - 1 : from, to, hosts };
}

async function readSecrets(etcd: ClusterKv, keys: PoolKeys): Promise<{ secrets: SegmentSecrets; revision: string }> {
  const entry = await etcd.get(keys.encryption, deadlineFromNow());
  if (!entry) throw new RequestError('network', `segment ${keys.name} is not encrypted (no keys in the cluster store)`);
  return { secrets: decodeValue(SegmentSecrets, entry.key, entry.value), revision: entry.modRevision };
}

/** Writes the keys only if nobody changed them since `revision` (another rotation): that one's step is then taken up. */
async function writeSecrets(etcd: ClusterKv, keys: PoolKeys, secrets: SegmentSecrets, revision: string): Promise<{ secrets: SegmentSecrets; revision: string }> {
  const written = await etcd.txn([{ key: keys.encryption, modRevision: revision }], [{ put: keys.encryption, value: JSON.stringify(secrets) }], [], deadlineFromNow());
  if (!written.succeeded) throw new RequestError('network', `segment ${keys.name}: its keys changed meanwhile (another rotation is running); try again`);
  return readSecrets(etcd, keys);
}

/** Polls the acknowledgements until every live user of the pool passes `done`; returns those hosts. */
async function waitForHosts(etcd: ClusterKv, keys: PoolKeys, done: (ack: KeyAck) => boolean, what: string, timeoutMs: number): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const [definition, alive, acks] = await Promise.all([etcd.get(keys.definition, deadlineFromNow()), etcd.list(ALIVE_PREFIX, deadlineFromNow(), true), etcd.list(keys.keyAcksPrefix, deadlineFromNow())]);
    if (!definition) throw new RequestError('network', `segment ${keys.name} is gone from the cluster store`);
    const live = new Set(alive.map((e) => e.key.slice(ALIVE_PREFIX.length)));
    const users = decodeValue(PoolDefinition, definition.key, definition.value).users.filter((u) => live.has(u));
    const byHost = new Map(acks.map((e) => [e.key.slice(keys.keyAcksPrefix.length), decodeValue(KeyAck, e.key, e.value)]));
    const waiting = users.filter((u) => {
      const ack = byHost.get(u);
      return ack === undefined || !done(ack);
    });
    if (waiting.length === 0) return users;
    if (Date.now() > until) throw new RequestError('network', `segment ${keys.name}: host(s) ${waiting.join(', ')} did not ${what} within ${timeoutMs / 1000} s; the rotation stopped there and goes on when run again`);
    await sleep(POLL_MS);
  }
}
