#!/bin/bash
# install-test-deps.sh — install the Debian packages tsnet's integration/e2e
# tests need (real dockerd, iptables and nftables (both firewall backends),
# a static busybox for the test image,
# iproute2, kmod + qemu-system-x86 for the VLAN guest suite (which also gets
# Debian's kernel package, unpacked into /var/cache/tsnet-vm by
# test/vm/qemu-kernel.sh, never installed), curl, etcd-server
# and etcd-client for the cluster-store tests, which start their own etcd; dig,
# dnsmasq and dnsperf for the DNS tests and bench/dns; systemd for
# `systemd-analyze verify` of tsnet's unit (not run as init); nftables because
# the managed plugin's rootfs carries nft; ethtool, which the overlay's
# tsnet.vxlan_csum_offload=off runs (and the plugin's rootfs carries); docker-registry for the managed
# plugin's `docker plugin upgrade` test, which runs its own registry;
# strace, with which the store-durability test counts fsyncs; gcc and
# libc6-dev to build the seccomp helper that applies the systemd unit's
# RestrictAddressFamilies in tests, test/harness/restrict-address-families.c;
# tcpdump, with which the guest's encrypted-overlay test captures the underlay).
# Idempotent: when every package is already installed it only asks dpkg-query
# and returns in well under a second; otherwise it runs `apt-get update` once
# and installs just what is missing. Needs root (CI machines run as root).
set -euo pipefail

packages=(docker.io iptables busybox-static kmod qemu-system-x86 iproute2 curl procps etcd-server etcd-client bind9-dnsutils dnsmasq-base dnsperf systemd nftables docker-registry strace gcc libc6-dev iperf3 ethtool tcpdump)

is_installed() {
  # "install ok installed" is dpkg's status for a fully configured package;
  # a removed-but-not-purged package ("deinstall ok config-files") must count as missing.
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for p in "${packages[@]}"; do
  is_installed "$p" || missing+=("$p")
done

# The guest's kernel: a download of ~70 MB the first time, nothing after.
guest_kernel() {
  "$(dirname "${BASH_SOURCE[0]}")/../test/vm/qemu-kernel.sh" >/dev/null
}

if [ ${#missing[@]} -eq 0 ]; then
  guest_kernel
  echo "install-test-deps: all present (${packages[*]}), guest kernel ready"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${missing[*]}, and installing them needs root" >&2
  exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
# NEEDRESTART_SUSPEND: needrestart (if present) would otherwise run after every apt call.
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# docker.io's postinst does not start dockerd on machines without an init
# system, which is what we want: the tests start private dockerds themselves.
for p in "${missing[@]}"; do
  is_installed "$p" || { echo "install-test-deps: $p still not installed" >&2; exit 1; }
done
guest_kernel
echo "install-test-deps: done"
