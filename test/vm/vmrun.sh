#!/bin/bash
# vmrun.sh — runs one command inside a throw-away qemu guest of Debian 12's
# own kernel, which has what the host kernel lacks (8021q, ipvlan, dummy,
# ESP, XFRM) besides vxlan, macvlan and netfilter.
#
#   test/vm/vmrun.sh CMD [ARGS...]
#
# * The guest boots off the host's / (9p, read-only) with a tmpfs overlay on
#   top: it sees node, node_modules, dockerd, iproute2 and this checkout, and
#   every write it makes vanishes at power-off.
# * CMD runs as root with cwd = this checkout (same path as on the host).
# * Exit code = CMD's; 125 if the guest never reported one (did not boot,
#   crashed, or was killed by the timeout): always a failure, never a skip.
# * The guest has NO network device (-nic none): nothing can leave it.
# * The console is streamed to stdout and saved to $TSN_VM_OUT/console.log.
#
# Environment (host side):
#   TSN_VM_MEM      guest RAM in MB (default 2048)
#   TSN_VM_TIMEOUT  wall-clock limit in seconds (default 600)
#   TSN_VM_OUT      host dir for console.log and whatever the guest writes to
#                   $TSN_VM_ARTIFACTS (default: a new <repo>/.tmp/vm-out/<time>-<pid>)
#   TSN_VM_VERBOSE  1 = show the kernel's boot messages
# Passed into the guest: every TSN_* variable and CI, plus TSN_IN_VM=1 and
#   TSN_VM_ARTIFACTS=/job/out (a read-write dir copied back).
#
# Emulated (TCG), not KVM: qemu-system-x86 from Debian runs it on any x86-64
# host. KVM would be faster where it works, but nested under this machine's
# hypervisor /dev/kvm creates a VM that never runs, and the guest suite takes
# ~3 min under TCG (faster than it ran under User-Mode Linux, whose Debian 12
# build dies at boot on CPUs with AMX: "ptrace set fp regs failed").
# The kernel and initramfs come from qemu-kernel.sh (install-test-deps.sh
# prepares them). Needs (Debian 12): qemu-system-x86 busybox-static kmod.
set -euo pipefail

RUNNER=vmrun
source "$(dirname "${BASH_SOURCE[0]}")/guest-lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "vmrun: qemu-system-x86_64 missing: apt-get install -y --no-install-recommends qemu-system-x86" >&2; exit 2; }
KDIR=$("$HERE/qemu-kernel.sh")
KV=$(basename "$KDIR")
write_job "$@"
{ printf 'KV=%q REPO=%q\n' "$KV" "$REPO"; cat "$HERE/guest-init2.sh"; } > "$JOB/init2"

QUIET=quiet; [ "${TSN_VM_VERBOSE:-0}" = 1 ] && QUIET='ignore_loglevel'
start_console '^(\[ *[0-9.]+\] |SeaBIOS|iPXE|Booting from|reboot: Power down)'
t0=$SECONDS
# panic=-1 with -no-reboot: a guest that panics ends qemu at once instead of hanging.
# multidevs=remap: the host's / spans several filesystems; keep their inode numbers apart.
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m "$MEM" \
  -display none -monitor none -serial stdio -no-reboot -nic none \
  -kernel "$KDIR/vmlinuz" -initrd "$KDIR/initrd.gz" -append "console=ttyS0 panic=-1 $QUIET" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs local,path="$JOB",mount_tag=job,security_model=passthrough \
  </dev/null >"$JOB/console" 2>&1 &
VM_PID=$!
vm_rc=0; wait "$VM_PID" || vm_rc=$?
VM_PID=
finish "$vm_rc" $((SECONDS - t0))
