import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EndpointRecord } from './model.js';

/**
 * Where this daemon finds the sandbox files dockerd names in Join
 * (`<exec-root>/netns/<id>`). A daemon in another mount namespace (the
 * managed plugin) sees dockerd's netns directory elsewhere: `netnsDir`.
 * When that directory is not there at all, the mount is wrong or dockerd
 * has made no sandbox yet: nothing can be told, so every sandbox counts as
 * alive rather than running containers losing their ports.
 */
export class SandboxFiles {
  constructor(private readonly netnsDir?: string) {}

  exists(sandboxKey: string): boolean {
    if (!this.netnsDir) return existsSync(sandboxKey);
    return !existsSync(this.netnsDir) || existsSync(join(this.netnsDir, basename(sandboxKey)));
  }
}

/**
 * Whether a joined endpoint has lost its container. When dockerd destroys a
 * sandbox it hands the interfaces back to the host netns under the names the
 * driver gave them (even when tsnet is down and never hears of it), and
 * removes the sandbox's netns file. Either one means the container is gone.
 * An endpoint not joined yet has no sandbox to lose.
 */
export function lostSandbox(endpoint: EndpointRecord, containerLink: string, hostLinks: ReadonlySet<string>, sandboxes: SandboxFiles): boolean {
  if (!endpoint.sandboxKey) return false;
  return hostLinks.has(containerLink) || !sandboxes.exists(endpoint.sandboxKey);
}
