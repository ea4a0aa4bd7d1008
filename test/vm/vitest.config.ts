// vitest config for the guest-kernel suite (test/vm/**/*.vm.test.ts).
// Used only inside the UML guest, via test/vm/run-in-guest.sh.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/vm/**/*.vm.test.ts'],
    // The guest has one CPU and every process start costs ~2 s under UML, so
    // run all files one after another in a single reused worker process
    // (vitest 4's replacement for `poolOptions.forks.singleFork`). Serial is
    // also required: the files share one kernel (modules, iptables, dockerd).
    pool: 'forks',
    maxWorkers: 1,
    isolate: false,
    fileParallelism: false,
    // Upper bounds, not performance checks. UML pays several host context
    // switches per guest syscall, so a busy CI host slows it 5-10x: a dockerd
    // start takes 15 s idle and 45 s at load 4 on 2 CPUs.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    reporters: ['verbose'],
  },
});
