# guest-init2.sh — stage 2 of the guest (vmrun.sh): the system the command
# expects, then the command itself. Runs in busybox sh as PID 1 in the
# overlay root (after qemu-init1.sh), with KV and REPO set before it.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8
/bin/busybox mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
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
hostname tsn-vm; ip link set lo up
[ -w /proc/sys/net/ipv4/ip_forward ] || echo "guest: WARNING ip_forward not writable"
read -r up _ < /proc/uptime
echo "guest: $KV ready after ${up}s, running: $(cat /job/cmd)"
# bash for the command (it was quoted with printf %q). Through a pipe, so it
# sees no TTY: plain CI-friendly output (no redraws or colour codes).
bash -c 'source /job/env; cd "$TSN_VM_REPO" && eval "$(< /job/cmd)" </dev/null 2>&1 | cat; exit ${PIPESTATUS[0]}'
rc=$?
read -r up _ < /proc/uptime
echo "guest: command exited $rc after ${up}s guest uptime"
echo $rc > /job/rc
sync
/bin/busybox poweroff -f
