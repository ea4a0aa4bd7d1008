import { readdirSync, readFileSync, readlinkSync, statfsSync } from 'node:fs';

/** statfs(2)'s f_type of a network namespace file (include/uapi/linux/magic.h). */
const NSFS_MAGIC = 0x6e736673;

/**
 * The network namespace to renew a lease from: the container's sandbox file
 * when it is one here (tsnet in dockerd's mount namespace, as a host
 * service is), else the namespace of a process that holds the address, as
 * /proc shows it: every namespace's local addresses are in
 * /proc/<pid>/net/fib_trie, and /proc/<pid>/ns/net can be entered from any
 * mount namespace (a managed plugin, a test's private dockerd). Undefined:
 * no process holds the address (the container is not running).
 */
export function namespaceHolding(address: string, sandbox: string | undefined): string | undefined {
  if (sandbox && isNamespaceFile(sandbox)) return sandbox;
  const local = new RegExp(`\\|-- ${address.replace(/\./g, '\\.')}\\n\\s+/32 host LOCAL`);
  const own = netnsOf('self');
  const seen = new Set<string>(own ? [own] : []);
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const netns = netnsOf(pid);
    if (!netns || seen.has(netns)) continue;
    seen.add(netns);
    if (local.test(readOr(`/proc/${pid}/net/fib_trie`))) return `/proc/${pid}/ns/net`;
  }
  return undefined;
}

function isNamespaceFile(path: string): boolean {
  try {
    return statfsSync(path).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** `net:[inode]` of a process's network namespace; undefined when it is gone or hidden. */
function netnsOf(pid: string): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
