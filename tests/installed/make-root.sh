#!/usr/bin/env bash
# Makes (or finds in the cache) the minimal Debian root filesystem the installed-system test
# boots: `mmdebstrap --variant=apt` (Essential packages and apt, nothing of priority
# important or standard: no procps, no netbase, no nftables, no iproute2), systemd as PID 1,
# D-Bus, and the test's own tools (wireguard-tools for stock `wg show`, wireguard-go for a
# second userspace WireGuard beside edge-wg). Everything the .deb depends on is downloaded
# into the root's apt cache but not installed: the test installs the .deb inside the booted
# container with apt-get, offline, so a dependency missing from the package is missing there.
#
#   tests/installed/make-root.sh SUITE DEB   prints the path of the root's tarball
#
# SUITE is a Debian suite (bookworm, trixie). The tarball is cached in
# ${EDGE_ROOT_CACHE:-/var/cache/edge-tests/roots}, keyed by the suite, this script and the
# package's Depends; a stale one is rebuilt. Needs root, mmdebstrap and the distribution's
# default mirror configuration (the ordinary apt client by package name).
set -euo pipefail
suite=${1:?usage: make-root.sh SUITE DEB}
deb=${2:?usage: make-root.sh SUITE DEB}
cache=${EDGE_ROOT_CACHE:-/var/cache/edge-tests/roots}
command -v mmdebstrap >/dev/null || { echo "make-root.sh: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
[ -f "$deb" ] || { echo "make-root.sh: no package at $deb (build it: scripts/package-deb.sh)" >&2; exit 1; }
mkdir -p "$cache"
key=$( { cat "$0"; dpkg-deb -f "$deb" Depends Pre-Depends; } | sha256sum | cut -c1-16)
out="$cache/$suite-$key.tar"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
# One builder at a time per suite; stale tarballs of the suite go.
exec 9>"$cache/$suite.lock"
flock 9
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
rm -f "$cache/$suite"-*.tar "$cache/$suite"-*.tar.tmp
tools=systemd,systemd-sysv,dbus,wireguard-tools,wireguard-go
echo "make-root.sh: building the $suite root ($tools; the package's dependencies downloaded)" >&2
mmdebstrap --quiet --format=tar --variant=apt --include="$tools" \
  --skip=cleanup/apt/lists --skip=cleanup/apt/cache \
  --customize-hook='chroot "$1" apt-get clean' \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook="chroot \"\$1\" apt-get install --download-only --no-install-recommends -y -qq /tmp/$(basename "$deb") >/dev/null" \
  --customize-hook='rm -f "$1"/tmp/*.deb' \
  "$suite" "$out.tmp" >&2
mv "$out.tmp" "$out"
echo "$out"
