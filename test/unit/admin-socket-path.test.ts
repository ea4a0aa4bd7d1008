import { describe, expect, it } from 'vitest';
import { adminSocketPath } from '../../src/admin/socket-path.js';

describe('the admin socket path', () => {
  it('is /run/tsnet/<name>.admin.sock beside the default plugin directory', () => {
    expect(adminSocketPath('/run/docker/plugins', 'tsnet')).toBe('/run/tsnet/tsnet.admin.sock');
    expect(adminSocketPath('/run/docker/plugins/', 'lan')).toBe('/run/tsnet/lan.admin.sock');
  });

  it('sits beside another plugin directory, never inside it', () => {
    expect(adminSocketPath('/tmp/tsn/ts0a1b2c/plugins', 'tsnet')).toBe('/tmp/tsn/ts0a1b2c/tsnet/tsnet.admin.sock');
  });
});
