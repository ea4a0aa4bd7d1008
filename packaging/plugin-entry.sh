# The managed plugin's entrypoint (run by the rootfs's busybox sh).
# Docker mounts /proc/sys read-only in every plugin; tsnet shares the host's
# netns and must write its net.* keys (ip_forward, route_localnet of its
# bridges): drop that read-only mount (CAP_SYS_ADMIN, in the plugin's own
# mount namespace only), then become the daemon with the manifest's flags.
# CAP_SYS_ADMIN served that umount alone, and Docker's default capabilities
# (chown, dac_override, setuid, …) serve tsnet not at all: the daemon starts
# with the bounding set of the systemd unit (tsnet.service) and nothing
# inheritable, so as root it holds exactly net_admin (links, rules), net_raw
# (the ARP probe of tsnet.arp_probe) and net_bind_service (published ports
# below 1024), and neither it nor anything it starts can get more back.
set -e
umount /proc/sys 2>/dev/null || mount -o remount,rw /proc/sys
exec /usr/bin/setpriv --bounding-set -all,+net_admin,+net_raw,+net_bind_service --inh-caps -all \
  /usr/bin/node /opt/tsnet/dist/src/cli.js daemon "$@"
