#!/bin/bash
# usage: rootfs.sh ARCH   (amd64, arm64 or armhf)
#
# Prints the path of a minimal Debian bookworm root (systemd, dbus, adduser, procps)
# for ARCH, building it with debootstrap when it is missing. Roots are cached
# under $OUTPOST_CACHE (default /var/cache/outpost) and only ever booted with
# `systemd-nspawn -x` (a throw-away copy), so the cache stays pristine.
#
# The mirror is the one this machine's apt is configured with, read at run
# time; it is never written into the repository. Needs root, and for a
# foreign ARCH qemu-user-static registered with binfmt_misc (make binfmt).
set -euo pipefail
ARCH=${1:?usage: rootfs.sh amd64|arm64|armhf}
CACHE=${OUTPOST_CACHE:-/var/cache/outpost}
ROOT=$CACHE/rootfs-bookworm-$ARCH
# Bump when the package list below changes, so cached roots are rebuilt.
STAMP=2

if [ -f "$ROOT/.outpost-rootfs" ] && [ "$(cat "$ROOT/.outpost-rootfs")" = "$STAMP" ]; then
	echo "$ROOT"
	exit 0
fi

mirror() {
	local f=/etc/apt/sources.list.d/debian.sources m=
	if [ -r "$f" ]; then
		m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
	fi
	if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[ -n "$m" ] || { echo "rootfs.sh: no Debian mirror found in apt's sources" >&2; return 1; }
	echo "$m"
}

MIRROR=$(mirror)
mkdir -p "$CACHE"
TMP=$(mktemp -d "$CACHE/.rootfs-$ARCH.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "rootfs.sh: debootstrap bookworm $ARCH into $ROOT (once; cached)" >&2
start=$(date +%s)
if ! debootstrap --arch="$ARCH" --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,procps \
	bookworm "$TMP" "$MIRROR" >"$TMP.log" 2>&1; then
	tail -20 "$TMP.log" >&2
	rm -f "$TMP.log"
	exit 1
fi
rm -f "$TMP.log"
# Tests boot this root many times; no network, no machine id of its own
# (systemd makes a transient one at each boot).
rm -f "$TMP/etc/machine-id"
: >"$TMP/etc/machine-id"
echo "$STAMP" >"$TMP/.outpost-rootfs"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
trap - EXIT
echo "rootfs.sh: $ARCH root ready in $(($(date +%s) - start)) s" >&2
echo "$ROOT"
