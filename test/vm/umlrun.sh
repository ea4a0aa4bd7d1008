#!/bin/bash
# umlrun.sh — run one command inside a throw-away User-Mode Linux guest whose
# kernel has 8021q (also dummy, ipvlan, macvlan, veth, bridge), because the CI
# host kernel has none of them.
#
#   test/vm/umlrun.sh CMD [ARGS...]
#
# * The guest boots straight off the host's / (hostfs, read-only) with a tmpfs
#   overlay on top: it sees node, node_modules, dockerd, iproute2 and this
#   checkout, and every write it makes vanishes at power-off.
# * CMD runs as root with cwd = this repo checkout (same path as on the host).
# * Exit code = CMD's exit code; 125 if the guest never reported one (did not
#   boot, crashed, or was killed by the timeout): always a failure, never a skip.
# * The guest has NO network device: nothing can leave it.
# * The console is streamed to stdout and saved to $TSN_VM_OUT/console.log.
#
# Environment (host side):
#   TSN_VM_MEM      guest RAM in MB (default 2048; vitest + one dockerd peak at ~190 MB,
#                   the file backing it is sparse, so unused RAM costs nothing)
#   TSN_VM_TIMEOUT  wall-clock limit in seconds (default 600)
#   TSN_VM_OUT      host dir for console.log and whatever the guest writes to
#                   $TSN_VM_ARTIFACTS (default: a new <repo>/.tmp/vm-out/<time>-<pid>,
#                   unique because several runs may share one checkout)
#   TSN_VM_VERBOSE  1 = show kernel boot messages with timestamps and initcall times
# Passed into the guest: every TSN_* variable and CI. The guest also gets
#   TSN_IN_VM=1 and TSN_VM_ARTIFACTS=/job/out (a read-write dir copied back).
#
# Needs (Debian 12): user-mode-linux kmod busybox-static iptables iproute2.
# Caveat: hostfs is read-only only by mount flag; guest code must not remount it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
MEM=${TSN_VM_MEM:-2048}
TIMEOUT=${TSN_VM_TIMEOUT:-600}
OUT=${TSN_VM_OUT:-$REPO/.tmp/vm-out/$(date +%Y%m%d-%H%M%S)-$$}
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
for c in linux.uml busybox; do
  command -v $c >/dev/null || { echo "umlrun: $c missing: apt-get install -y user-mode-linux kmod busybox-static" >&2; exit 2; }
done
KV=$(linux.uml --version 2>/dev/null | tail -1)
[ -d "/usr/lib/uml/modules/$KV" ] || { echo "umlrun: no UML modules for '$KV' in /usr/lib/uml/modules" >&2; exit 2; }

loud() {   # a failure CI readers must not miss
  printf '\n%s\n' "######################################################################" >&2
  printf 'umlrun: %s\n' "$@" >&2
  printf '%s\n\n' "######################################################################" >&2
}

JOB=$(mktemp -d /tmp/tsn-vmjob.XXXXXX)
UML_PID= ; READER_PID=
cleanup() {   # no set -e here: a failing kill/wait must not skip the rm
  set +e
  [ -n "$UML_PID" ] && { kill "$UML_PID"; wait "$UML_PID"; } 2>/dev/null
  [ -n "$READER_PID" ] && wait "$READER_PID" 2>/dev/null
  rm -rf "$JOB"
}
trap cleanup EXIT
trap 'loud "interrupted"; exit 125' INT TERM HUP

mkdir -p "$JOB/out" "$OUT"
echo "umlrun: console and artifacts -> $OUT" >&2
# The command and the pass-through environment, quoted for the guest's bash.
printf '%q ' "$@" > "$JOB/cmd"
{ for v in $(compgen -e | grep -E '^(TSN_|CI$)'); do printf 'export %s=%q\n' "$v" "${!v}"; done
  printf 'export TSN_IN_VM=1 TSN_VM_ARTIFACTS=/job/out TSN_VM_REPO=%q\n' "$REPO"
} > "$JOB/env"

# The guest's init runs in busybox's shell: its applets (mount, mkdir, ip...)
# need no dynamic loading, which costs 0.1-0.5 s per exec under UML (much
# more on a busy host) and would double the boot time. Busybox re-execs
# itself through /proc/self/exe, so the guest's /proc must be mounted first,
# by explicit path: until then /proc is the HOST's, where /proc/self/exe is
# linux.uml itself.
VARS=$(printf 'JOB=%q KV=%q REPO=%q' "$JOB" "$KV" "$REPO")

# Stage 1: PID 1 on the read-only hostfs root. Builds the overlay and pivots
# into it. pivot_root, not chroot: module autoload runs /sbin/modprobe in the
# kernel's root, which must be the overlay (where /lib/modules/$KV exists).
{ echo '#!/bin/busybox sh'; echo "$VARS"; cat <<'EOF'
/bin/busybox mount -t proc proc /proc
mount -t tmpfs -o mode=755 tmpfs /mnt          # host's /mnt is only a mount point
mkdir -p /mnt/lower /mnt/upper /mnt/work /mnt/root
mount -o bind / /mnt/lower
insmod /usr/lib/uml/modules/$KV/kernel/fs/overlayfs/overlay.ko
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/upper,workdir=/mnt/work /mnt/root
mkdir -p /mnt/root/lib/modules/$KV /mnt/root/job /mnt/root/oldroot
mount -o bind /usr/lib/uml/modules/$KV /mnt/root/lib/modules/$KV
mount -t hostfs -o "$JOB" none /mnt/root/job    # the only host dir the guest may write
umount /proc
cd /mnt/root && pivot_root . oldroot && exec chroot . /bin/busybox sh /job/init2
echo "umlrun: pivot_root failed"; /bin/busybox poweroff -f
EOF
} > "$JOB/init1"
chmod +x "$JOB/init1"

# Stage 2: the system the command expects, then the command itself.
{ echo "$VARS"; cat <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
/bin/busybox mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
umount -l /oldroot
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run                     # /var/run -> /run on Debian
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# /tmp and /var/lib/docker on tmpfs: overlay2 (and nested docker data roots
# under /tmp) cannot use the overlay root as an upper dir. Keep the checkout
# visible if it lives under /tmp.
case $REPO/ in /tmp/*) mkdir -p /.repo; mount -o bind "$REPO" /.repo;; esac
mount -t tmpfs -o mode=1777 tmpfs /tmp
[ -d /.repo ] && { mkdir -p "$REPO"; mount -o move /.repo "$REPO"; }
mkdir -p /var/lib/docker; mount -t tmpfs -o mode=711 tmpfs /var/lib/docker
echo 1 > /proc/sys/kernel/printk
stty -onlcr 2>/dev/null    # the console tty would turn every \n into \r\n in the logs
hostname tsn-uml; ip link set lo up
# The UML kernel has no IPv4 nf_tables: point the iptables alternatives at the
# legacy backend (what `update-alternatives --set` does; overlay only, the
# host's alternatives are untouched).
for t in iptables ip6tables; do for s in '' -save -restore; do
  ln -sfn /usr/sbin/$t-legacy$s /etc/alternatives/$t$s
done; done
[ -w /proc/sys/net/ipv4/ip_forward ] || echo "umlrun: WARNING ip_forward not writable"
read -r up _ < /proc/uptime
echo "umlrun: guest $KV ready after ${up}s, running: $(cat /job/cmd)"
# bash for the command (it was quoted with printf %q). Through a pipe, so it
# sees no TTY: plain CI-friendly output (no redraws or colour codes).
bash -c 'source /job/env; cd "$TSN_VM_REPO" && eval "$(< /job/cmd)" </dev/null 2>&1 | cat; exit ${PIPESTATUS[0]}'
rc=$?
read -r up _ < /proc/uptime
echo "umlrun: command exited $rc after ${up}s guest uptime"
echo $rc > /job/rc
sync
/bin/busybox poweroff -f
EOF
} > "$JOB/init2"

QUIET=quiet; [ "${TSN_VM_VERBOSE:-0}" = 1 ] && QUIET='printk.time=1 initcall_debug ignore_loglevel'
# pty.legacy_count=0: creating the 256 legacy BSD ptys was the slowest boot
# step (2.6 s under load); devpts serves every pty the guest needs.
# uml_dir: UML's mconsole socket goes to the job dir, not ~/.uml.
# UML keeps guest RAM in a file under $TMPDIR: prefer /dev/shm (fast), but CI
# containers often have a 64 MB /dev/shm, so fall back to /tmp then.
RAMDIR=/dev/shm
[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2{print $4}' || echo 0)" -gt $((MEM * 1024 + 65536)) ] || RAMDIR=/tmp

# The console goes through a FIFO so we know both PIDs: UML's (to stop it on
# INT/TERM) and the reader's (to wait until all output is written).
mkfifo "$JOB/console"
tee "$OUT/console.log" < "$JOB/console" \
  | grep --line-buffered -v -E '^(SELinux: |mmapper_init|Failed to initialize ubd|reboot: System halted)' &
READER_PID=$!
t0=$EPOCHREALTIME
# timeout puts UML and its helper processes in its own process group and kills
# that whole group when the limit is hit.
TMPDIR=$RAMDIR timeout --kill-after=10 "$TIMEOUT" linux.uml mem="${MEM}M" \
  rootfstype=hostfs rootflags=/ ro init="$JOB/init1" \
  con=null con0=fd:0,fd:1 pty.legacy_count=0 uml_dir="$JOB" $QUIET </dev/null >"$JOB/console" 2>&1 &
UML_PID=$!
uml_rc=0; wait "$UML_PID" || uml_rc=$?
UML_PID=
wait "$READER_PID" || true; READER_PID=
t1=$EPOCHREALTIME
cp -r "$JOB/out/." "$OUT/"
awk -v s="$t0" -v e="$t1" -v m="$MEM" -v o="$OUT" \
  'BEGIN { printf "umlrun: UML wall time %.1fs (mem %sM, console saved to %s/console.log)\n", e - s, m, o }' >&2
if [ ! -s "$JOB/rc" ]; then
  why="the guest did not boot or crashed (linux.uml exit $uml_rc)"
  [ "$uml_rc" = 124 ] && why="killed by TSN_VM_TIMEOUT=${TIMEOUT}s"
  loud "FAILED: the guest never reported an exit code: $why." "See $OUT/console.log. Exit 125."
  exit 125
fi
exit "$(cat "$JOB/rc")"
