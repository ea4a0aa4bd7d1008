#!/bin/bash
# build-plugin.sh [OUT] — the managed (v2) Docker plugin: OUT/config.json (the
# top-level plugin.json) and OUT/rootfs/ with node, the built daemon, its
# production node_modules, and iproute2 (ip, and bridge for the overlay's
# forwarding entries), iptables (nft backend), nft, ethtool (the overlay's
# tsnet.vxlan_csum_offload=off), sysctl, setpriv, and nsenter and unshare (the DHCP
# client's relay enters a container's netns, or a new one) with every library they load, all copied from this machine (no image
# registry needed). Then: docker plugin create NAME OUT && docker plugin enable NAME.
# Needs `npm run build` first (npm run plugin:build does both). OUT defaults to build/plugin.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/build/plugin}")
started=$SECONDS

die() { echo "plugin:build: $*" >&2; exit 1; }

# Each program the rootfs carries, with the Debian package that has it.
declare -A package_of=(
  [node]=nodejs [npm]=npm [ldd]=libc-bin [ip]=iproute2 [bridge]=iproute2 [ethtool]=ethtool [xtables-nft-multi]=iptables [nft]=nftables [sysctl]=procps [busybox]=busybox-static
  [setpriv]=util-linux [nsenter]=util-linux [unshare]=util-linux
)
for tool in node npm ldd ip bridge ethtool xtables-nft-multi nft sysctl busybox setpriv nsenter unshare; do
  command -v "$tool" >/dev/null || die "$tool is missing on this machine: install it with \`apt-get install ${package_of[$tool]}\`"
done
[ -f "$repo/dist/src/cli.js" ] || die "$repo/dist/src/cli.js is missing: run \`npm run build\` first"
# iptables loads its extensions with dlopen from beside libxtables.
xtables=$(dirname "$(ldd "$(command -v xtables-nft-multi)" | awk '/libxtables/ { print $3 }')")/xtables
[ -d "$xtables" ] || die "iptables extensions ($xtables) are missing: install them with \`apt-get install iptables\`"
xtables=$(realpath "$xtables")

rm -rf "$out"
root=$out/rootfs
# Debian's merged /usr: /bin, /sbin and /lib* are links into /usr, so the paths ldd prints work as they are.
mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,proc,sys,dev,run,var/lib/tsnet,opt/tsnet}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
chmod 1777 "$root/tmp"

# The daemon and its production dependencies (dev ones pruned offline from a copy of node_modules).
app=$root/opt/tsnet
cp "$repo/package.json" "$repo/package-lock.json" "$repo/packaging/plugin-entry.sh" "$app/"
mkdir -p "$app/dist"
cp -r "$repo/dist/src" "$repo/dist/drivers" "$app/dist/"
# node_modules/. : a checkout whose node_modules is a symlink (a git worktree sharing another's) copies its content.
mkdir -p "$app/node_modules"
cp -a "$repo/node_modules/." "$app/node_modules/"
(cd "$app" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts >/dev/null) \
  || die "npm prune --omit=dev failed in $app"
# better-sqlite3 keeps its C sources and object files; only the addon itself is loaded.
sqlite=$app/node_modules/better-sqlite3
find "$sqlite/build" -mindepth 1 -not -path "$sqlite/build/Release" -not -path "$sqlite/build/Release/better_sqlite3.node" -delete
rm -rf "$sqlite/deps" "$sqlite/src"
find "$app/node_modules" -type d -empty -delete

# Programs, at the paths tsnet finds them on PATH.
install -m 0755 "$(command -v node)" "$root/usr/bin/node"
install -m 0755 "$(command -v busybox)" "$root/usr/bin/busybox"
# The kernel monitors of the drift watcher run under `sh` (which ends them when the daemon goes).
ln -s busybox "$root/usr/bin/sh"
# util-linux's setpriv (busybox's cannot change the bounding set): the entrypoint drops capabilities with it.
install -m 0755 "$(command -v setpriv)" "$root/usr/bin/setpriv"
# The DHCP client's relay runs in a container's netns (nsenter) or a new one of its own (unshare).
install -m 0755 "$(command -v nsenter)" "$root/usr/bin/nsenter"
install -m 0755 "$(command -v unshare)" "$root/usr/bin/unshare"
install -m 0755 "$(command -v ip)" "$root/usr/bin/ip"
install -m 0755 "$(command -v bridge)" "$root/usr/sbin/bridge"
install -m 0755 "$(command -v ethtool)" "$root/usr/sbin/ethtool"
install -m 0755 "$(command -v xtables-nft-multi)" "$root/usr/sbin/xtables-nft-multi"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "$root/usr/sbin/$name"
done
install -m 0755 "$(command -v nft)" "$root/usr/sbin/nft"
install -m 0755 "$(command -v sysctl)" "$root/usr/sbin/sysctl"
mkdir -p "$root$(dirname "$xtables")"
cp -r "$xtables" "$root$xtables"

# Every shared library those programs, the iptables extensions (loaded with
# dlopen, so ldd of iptables does not show them) and node's native addons need.
elves() {
  find "$root/usr/bin" "$root/usr/sbin" "$root$xtables" "$app/node_modules" -type f \( -perm -u+x -o -name '*.so*' -o -name '*.node' \) \
    -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;
}
libs=$(elves | while read -r elf; do ldd "$elf" 2>/dev/null || true; done | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | sort -u)
for lib in $libs; do
  [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
done
if missing=$(chroot "$root" /usr/bin/node -e '' 2>&1); then :; else die "node does not start inside the rootfs: $missing"; fi

# What iproute2 and iptables read from /etc.
cp /etc/protocols "$root/etc/" 2>/dev/null || die "/etc/protocols is missing: install it with \`apt-get install netbase\`"
cp -r /etc/iproute2 "$root/etc/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

cp "$repo/plugin.json" "$out/config.json"
echo "plugin:build: $out ($(du -sh "$root" | cut -f1) rootfs) in $((SECONDS - started)) s"
echo "plugin:build: docker plugin create tsnet $out && docker plugin enable tsnet"
