// vitest config for the guest-kernel suite (test/vm/**/*.vm.test.ts).
// Used only inside the guest (test/vm/vmrun.sh), via test/vm/run-in-guest.sh.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/vm/**/*.vm.test.ts'],
    // The guest is emulated and every process start costs a second or more, so
    // run all files one after another in a single reused worker process
    // (vitest 4's replacement for `poolOptions.forks.singleFork`). Serial is
    // also required: the files share one kernel (modules, iptables, dockerd).
    pool: 'forks',
    maxWorkers: 1,
    isolate: false,
    fileParallelism: false,
    // Upper bounds, not performance checks: an emulated guest on a busy CI
    // host is several times slower than on an idle one.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['verbose'],
  },
});
