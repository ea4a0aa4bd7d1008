import { describe, expect, it } from 'vitest';
import { parseMetricsAddress } from '../../src/metrics/metrics-server.js';

describe('--metrics IP:PORT', () => {
  it.each([
    ['127.0.0.1:9464', false, { host: '127.0.0.1', port: 9464 }],
    ['127.0.0.53:1', false, { host: '127.0.0.53', port: 1 }],
    ['[::1]:9464', false, { host: '::1', port: 9464 }],
    ['0.0.0.0:9464', true, { host: '0.0.0.0', port: 9464 }],
    ['[::]:9464', true, { host: '::', port: 9464 }],
  ])('takes %s (public allowed: %s)', (text, allowPublic, address) => {
    expect(parseMetricsAddress(text, allowPublic)).toEqual(address);
  });

  it.each([
    ['9464', 'is not IP:PORT'],
    ['127.0.0.1', 'is not IP:PORT'],
    ['127.0.0.1:0', 'is not IP:PORT'],
    ['127.0.0.1:65536', 'is not IP:PORT'],
    ['::1:9464', 'is not IP:PORT'],
    ['300.0.0.1:9464', 'is not IP:PORT'],
    ['localhost:9464', 'is not IP:PORT'],
    ['192.0.2.1:9464', 'is not a loopback address'],
    ['[::]:9464', 'is not a loopback address'],
  ])('refuses %s', (text, reason) => {
    expect(() => parseMetricsAddress(text, false)).toThrow(reason);
  });
});
