// Test layout (see test/harness/README.md):
//   test/unit, test/api       pure logic and the HTTP protocol: fast, run in parallel
//   test/integration          real netns + real kernel: one file at a time, long timeouts
//   test/e2e                  real private dockerds + tsnet: three files at a time (each builds
//                             its own hosts: netns, dockerd, data, plugin dir; nothing is shared),
//                             long timeouts
//
// `vitest run` runs the groups in that order (sequence.groupOrder): the
// root-only, machine-touching suites never overlap with each other or with the
// parallel unit run. A path filter (`vitest run test/e2e/x.test.ts`) still
// works: it picks the matching project.
// The VLAN guest suite (test/vm) is not a project here: it only passes inside
// the UML guest, so `npm run test:vlan` runs it there (test:all runs both).
import { defineConfig } from 'vitest/config';

// Upper bounds so a hung dockerd/netns step fails the test instead of hanging
// CI; not performance assertions.
const SLOW_TIMEOUT_MS = 120_000;

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/api/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          sequence: { groupOrder: 1 },
          fileParallelism: false,
          testTimeout: SLOW_TIMEOUT_MS,
          hookTimeout: SLOW_TIMEOUT_MS,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          sequence: { groupOrder: 2 },
          // Most of an e2e file's time is dockerd and containerd starting, and retries while tsnet is
          // down on purpose: three at once cut CI's wall time without any sharing state.
          fileParallelism: true,
          maxWorkers: 3,
          testTimeout: SLOW_TIMEOUT_MS,
          hookTimeout: SLOW_TIMEOUT_MS,
        },
      },
    ],
  },
});
