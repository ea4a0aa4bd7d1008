import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EndpointRecord } from './model.js';

/**
 * Where this daemon finds the sandbox files dockerd names in Join
 * (`<exec-root>/netns/<id>`). A daemon in another mount namespace (the
 * managed plugin) sees dockerd's netns directory elsewhere: `netnsDir`.
 */
export class SandboxFiles {
  constructor(private readonly netnsDir?: string) {}

  exists(sandboxKey: string): boolean {
    return existsSync(this.netnsDir ? join(this.netnsDir, basename(sandboxKey)) : sandboxKey);
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
