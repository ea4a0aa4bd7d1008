/**
 * `tsnet doctor` as the admin API answers it: the kernel's differences (none
 * here: the recording runner's kernel holds what was planned) and this
 * host's addresses the cluster store gives to another host, which --fix
 * reports and never "repairs". (How conflicts are found, against a real
 * etcd: test/integration/cluster-pools.test.ts.)
 */
import { pino } from 'pino';
import supertest from 'supertest';
import { describe, expect, it } from 'vitest';
import { Inventory } from '../../src/admin/inventory.js';
import { type ClusterAdmin, createAdminApp, type DoctorReport } from '../../src/admin/server.js';
import { pluginFixture } from './plugin-fixture.js';

async function adminWith(cluster?: ClusterAdmin) {
  const { plugin } = await pluginFixture();
  const inventory = new Inventory(plugin.networks, plugin.ipam, { networkName: () => undefined, containerOfEndpoint: () => undefined });
  const parts = { networks: plugin.networks, inFlight: plugin.inFlight, inventory, dns: { listeners: () => [] }, reconciler: plugin.reconciler };
  return supertest.agent(createAdminApp(cluster ? { ...parts, cluster } : parts, pino({ level: 'silent' })));
}

describe('admin API: doctor', () => {
  it('reports addresses given to another host in the cluster store, also after --fix', async () => {
    const conflict = 'lan 10.176.0.3 (held by host back-b)';
    const cluster = { conflicts: () => [conflict] } as unknown as ClusterAdmin;
    const admin = await adminWith(cluster);
    expect((await admin.get('/doctor').expect(200)).body).toEqual({ drift: [], clusterConflicts: [conflict] } satisfies DoctorReport);
    expect((await admin.post('/doctor/fix').expect(200)).body).toMatchObject({ remaining: [], clusterConflicts: [conflict] });
  });

  it('reports none without a cluster store', async () => {
    const admin = await adminWith();
    expect((await admin.get('/doctor').expect(200)).body).toEqual({ drift: [], clusterConflicts: [] });
  });
});
