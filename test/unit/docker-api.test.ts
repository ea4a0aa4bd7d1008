import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerApi, dockerRequest } from '../../src/docker/docker-api.js';

/** A stand-in dockerd that notes every request it receives and answers an empty list. */
const received: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'tsnet-docker-api-'));
const address = { socketPath: join(dir, 'docker.sock') };
let dockerd: Server;

const send = (method: string, path: string) => dockerRequest(address, method, path, AbortSignal.timeout(5_000));

describe('the Docker API client sends only the reads it needs', () => {
  beforeAll(async () => {
    dockerd = createServer((req, res) => {
      received.push(`${req.method} ${req.url}`);
      res.setHeader('Content-Type', 'application/json');
      res.end('[]');
    });
    await new Promise<void>((resolve) => dockerd.listen(address.socketPath, resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => dockerd.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['POST', '/containers/abc/kill'],
    ['POST', '/containers/create'],
    ['DELETE', '/networks/abc'],
    ['PUT', '/containers/abc/archive?path=/etc'],
    ['GET', '/containers/abc/archive?path=/etc'],
    ['GET', '/containers/../json'],
    ['GET', '/containers/json?all=1&filters=x'],
    ['GET', '/events?since=0'],
    ['GET', '/v1.41/networks'],
    ['HEAD', '/networks'],
  ])('refuses %s %s before connecting', async (method, path) => {
    const before = received.length;
    await expect(send(method, path)).rejects.toThrow(`refused to send "${method} ${path}" to dockerd: tsnet only reads containers, networks and events`);
    expect(received.length).toBe(before);
  });

  it('sends the reads the name watcher makes', async () => {
    const api = new DockerApi(address);
    await api.listContainers();
    await api.listNetworks();
    await api.inspectContainer('0123456789ab').catch(() => undefined);
    const events = new AbortController();
    await api.events(['container', 'network'], events.signal).catch(() => undefined);
    events.abort();
    expect(received).toEqual([
      'GET /containers/json',
      'GET /networks',
      'GET /containers/0123456789ab/json',
      `GET /events?filters=${encodeURIComponent(JSON.stringify({ type: ['container', 'network'] }))}`,
    ]);
  });
});
