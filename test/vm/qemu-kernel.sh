#!/bin/bash
# qemu-kernel.sh — Debian 12's own amd64 kernel for the guest (vmrun.sh):
# downloads the package linux-image-amd64 points to, unpacks it (never into
# /boot: nothing of the host changes), indexes its modules, and builds the
# small initramfs that mounts the host's / read-only over 9p. Prints the
# directory holding vmlinuz, initrd.gz and lib/modules/<version>. Idempotent:
# a kernel prepared before is used as it is.
set -euo pipefail
CACHE=${TSN_VM_KERNEL_CACHE:-/var/cache/tsnet-vm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { echo "qemu-kernel: apt knows no linux-image-amd64 (apt-get update first)" >&2; exit 2; }
KV=${pkg#linux-image-}
DIR=$CACHE/$KV
if [ ! -s "$DIR/vmlinuz" ]; then
  rm -rf "$DIR" && mkdir -p "$DIR/pkg"
  (cd "$DIR/pkg" && apt-get download "$pkg" 2>/dev/null)
  dpkg-deb -x "$DIR"/pkg/*.deb "$DIR/root"
  mkdir -p "$DIR/lib/modules" && mv "$DIR/root/lib/modules/$KV" "$DIR/lib/modules/"
  depmod -b "$DIR" "$KV"          # module autoload in the guest (8021q, iptables' modules…) needs the index
  mv "$DIR/root/boot/vmlinuz-$KV" "$DIR/vmlinuz.part"
  rm -rf "$DIR/root" "$DIR/pkg"
  mv "$DIR/vmlinuz.part" "$DIR/vmlinuz"
fi

# The initramfs: busybox, the modules that reach the host's / (virtio, 9p) and stack the overlay, and
# stage 1. Built again whenever stage 1 changes.
stamp=$(cat "$HERE/qemu-init1.sh" /bin/busybox | sha256sum | cut -c1-16)
if [ "$(cat "$DIR/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
  stage=$(mktemp -d)
  mkdir -p "$stage/bin" "$stage/dev" "$stage/modules"
  cp /bin/busybox "$stage/bin/busybox"
  mknod "$stage/dev/console" c 5 1    # the kernel opens it for /init's output before anything is mounted
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
    cp "$(find "$DIR/lib/modules/$KV" -name "$m.ko")" "$stage/modules/"
  done
  { echo '#!/bin/busybox sh'; printf 'KV=%q MODDIR=%q\n' "$KV" "$DIR/lib/modules/$KV"; cat "$HERE/qemu-init1.sh"; } > "$stage/init"
  chmod +x "$stage/init"
  (cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$DIR/initrd.gz")
  rm -rf "$stage"
  echo "$stamp" > "$DIR/initrd.stamp"
fi
echo "$DIR"
