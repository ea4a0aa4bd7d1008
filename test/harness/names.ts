// Unique, short names for everything a test run creates on the machine.
//
// Other test runs (and other dockerds) may share the machine, so every netns,
// link, directory and cgroup gets a per-run id. The names must stay short:
// Linux interface names are at most 15 bytes, and unix socket paths must fit
// sun_path (108 bytes including the terminating NUL).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** Base directory for per-run state. Short on purpose (socket paths live below it). */
export const BASE_DIR = process.env.TSN_BASE ?? '/tmp/tsn';

/** Every id starts with this, so a human can spot (and clean) leftovers of tsnet tests. */
export const ID_PREFIX = 'ts';

const MAX_IFNAME_BYTES = 15;
const MAX_SOCKET_PATH_BYTES = 107;

/** A fresh id such as `ts3fa91c`: 8 characters, usable as netns, dir and link-name stem. */
export function newRunId(): string {
  return ID_PREFIX + randomBytes(3).toString('hex');
}

/** The private directory of one run id: `/tmp/tsn/<id>`. */
export function runDir(id: string): string {
  return join(BASE_DIR, id);
}

/** The cgroup parent dockerd puts its containers under; unique per run so leftovers can be rmdir'ed. */
export function cgroupParent(id: string): string {
  return `/tsn-${id}`;
}

/** Throws unless `name` is a valid Linux interface name (≤ 15 bytes, no '/', no whitespace). */
export function assertLinkName(name: string): string {
  const bytes = Buffer.byteLength(name);
  if (bytes === 0 || bytes > MAX_IFNAME_BYTES || /[\s/:]/.test(name)) {
    throw new Error(`invalid interface name ${JSON.stringify(name)}: needs 1-${MAX_IFNAME_BYTES} bytes, no '/', ':' or whitespace`);
  }
  return name;
}

/** A link name unique to this run: `<id><suffix>`, checked against the 15-byte limit. */
export function linkName(id: string, suffix: string): string {
  return assertLinkName(id + suffix);
}

/** Throws unless `path` fits in a unix socket address. */
export function assertSocketPath(path: string): string {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new Error(`unix socket path too long (${Buffer.byteLength(path)} > ${MAX_SOCKET_PATH_BYTES} bytes): ${path}; set TSN_BASE to a shorter dir`);
  }
  return path;
}
