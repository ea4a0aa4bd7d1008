# The managed plugin's entrypoint (run by the rootfs's busybox sh).
# Docker mounts /proc/sys read-only in every plugin; tsnet shares the host's
# netns and must write its net.* keys (ip_forward, route_localnet of its
# bridges): drop that read-only mount (CAP_SYS_ADMIN, in the plugin's own
# mount namespace only), then become the daemon with the manifest's flags.
set -e
umount /proc/sys 2>/dev/null || mount -o remount,rw /proc/sys
exec /usr/bin/node /opt/tsnet/dist/src/cli.js daemon "$@"
