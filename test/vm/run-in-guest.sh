#!/bin/bash
# run-in-guest.sh — run vitest on the guest-kernel suite inside the guest (vmrun.sh).
#
#   test/vm/run-in-guest.sh [VITEST ARGS...]    e.g. test/vm/vlan-smoke.vm.test.ts -t isolated
#
# No args = every test/vm/**/*.vm.test.ts. Exit code = vitest's; 125 if the
# guest never reported one. Env: TSN_VM_MEM, TSN_VM_TIMEOUT, TSN_VM_OUT (vmrun.sh).
# Nothing is built here: the guest runs the .ts files from this checkout as-is.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
[ -f "$HERE/../../node_modules/vitest/vitest.mjs" ] || { echo "run-in-guest: run npm ci first" >&2; exit 2; }
exec "$HERE/vmrun.sh" node node_modules/vitest/vitest.mjs run --config test/vm/vitest.config.ts "$@"
