#!/bin/bash
# vm-test.sh — the VLAN suite: every test/vm/**/*.vm.test.ts, run by vitest
# INSIDE a qemu guest of Debian's kernel (the host kernel has no 8021q).
#
#   scripts/vm-test.sh [VITEST ARGS...]
#
# Builds nothing (vitest runs the .ts sources; needs `npm ci` done). Exits
# non-zero on any test failure; 125 when the guest did not boot or timed out.
# Console: streamed to stdout and saved in $TSN_VM_OUT (default .tmp/vm-out/<time>-<pid>/).
# Env: TSN_VM_MEM (MB, default 2048), TSN_VM_TIMEOUT (s; 1800 here: the
# suite runs several dockerds in an emulated guest, and a loaded host slows it).
# Host packages: qemu-system-x86 kmod busybox-static iptables iproute2 docker.io.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TSN_VM_TIMEOUT=${TSN_VM_TIMEOUT:-1800} exec test/vm/run-in-guest.sh "$@"
