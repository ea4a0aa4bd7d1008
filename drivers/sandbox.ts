import { existsSync } from 'node:fs';
import type { EndpointRecord } from './model.js';

/**
 * Whether a joined endpoint has lost its container. When dockerd destroys a
 * sandbox it hands the interfaces back to the host netns under the names the
 * driver gave them (even when tsnet is down and never hears of it), and
 * removes the sandbox's netns file. Either one means the container is gone.
 * An endpoint not joined yet has no sandbox to lose.
 */
export function lostSandbox(endpoint: EndpointRecord, containerLink: string, hostLinks: ReadonlySet<string>): boolean {
  if (!endpoint.sandboxKey) return false;
  return hostLinks.has(containerLink) || !existsSync(endpoint.sandboxKey);
}
