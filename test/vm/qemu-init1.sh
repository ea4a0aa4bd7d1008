# qemu-init1.sh — stage 1 of the KVM guest, /init of its initramfs (KV and
# MODDIR are set before it): loads what reaches the host's / over 9p, puts a
# tmpfs overlay on it, mounts the job dir, and hands over to stage 2
# (guest-init2.sh, written into the job dir by vmrun.sh).
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /lower /rw /newroot
mount -t proc proc /proc
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay; do
  insmod /modules/$m.ko || echo "qemu-init1: cannot load $m"
done
NINEP=trans=virtio,version=9p2000.L,msize=524288
mount -t 9p -o $NINEP,cache=loose,ro hostroot /lower || { echo "qemu-init1: cannot mount the host's /"; poweroff -f; }
mount -t tmpfs -o mode=755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p /newroot/job "/newroot/lib/modules/$KV"
mount -t 9p -o $NINEP job /newroot/job
mount -o bind "/newroot$MODDIR" "/newroot/lib/modules/$KV"
umount /proc
exec switch_root /newroot /bin/busybox sh /job/init2
