import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { listenPrivately } from '../../src/unix-listen.js';

it('creates the socket file 0600 under a permissive umask, from its first moment, and gives the umask back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsnet-listen-'));
  const server = createServer();
  const previous = process.umask(0o022);
  try {
    const listening = listenPrivately(server, join(dir, 'private.sock'));
    // bind(2) ran inside listen(): the file exists before anything else could run, already private.
    expect(statSync(join(dir, 'private.sock')).mode & 0o777).toBe(0o600);
    expect(process.umask(0o022)).toBe(0o022);
    await listening;
  } finally {
    process.umask(previous);
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
