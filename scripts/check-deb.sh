#!/usr/bin/env bash
# Builds the .deb from the debug binaries already built by the tests (fast; the release
# package is scripts/package-deb.sh) and checks that `dpkg -c` lists every expected file.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
target="${CARGO_TARGET_DIR:-$PWD/target}"
# cargo-deb packages release binaries; stage the debug ones where it looks for them.
stage="$target/deb-check-stage"
rm -rf "$stage" && mkdir -p "$stage/release/dist"
for b in edge-ddns edge-wg edge-fw edge-link edgectl; do
  # Without their debug info the debug binaries are small enough to compress quickly.
  strip -o "$stage/release/$b" "$target/debug/$b"
done
"$stage/release/edgectl" man | gzip -9n > "$stage/release/dist/edgectl.1.gz"
"$stage/release/edgectl" completions bash > "$stage/release/dist/edgectl.bash"
"$stage/release/edgectl" completions zsh > "$stage/release/dist/_edgectl"
out="$target/debian-check"
rm -rf "$out" && mkdir -p "$out"
CARGO_TARGET_DIR="$stage" cargo deb -p edgectl --no-build --no-strip --fast --output "$out/edge.deb" >/dev/null
listing=$(dpkg -c "$out/edge.deb")
status=0
for f in ./usr/bin/edge-ddns ./usr/bin/edge-wg ./usr/bin/edge-fw ./usr/bin/edge-link ./usr/bin/edgectl \
         ./lib/systemd/system/edge-ddns.service ./lib/systemd/system/edge-wg.service \
         ./lib/systemd/system/edge-fw.service ./lib/systemd/system/edge-link.service \
         ./lib/systemd/system/edge.target ./usr/lib/tmpfiles.d/edge.conf ./usr/lib/sysusers.d/edge.conf \
         ./etc/edge/edge.toml.example ./usr/share/edge/prometheus/edge-alerts.yml \
         ./usr/share/man/man1/edgectl.1.gz ./usr/share/doc/edge/operations.md \
         ./usr/share/doc/edge/notify.md ./usr/share/doc/edge/notify-event.schema.json; do
  grep -q " $f\$" <<<"$listing" || { echo "missing from the .deb: $f" >&2; status=1; }
done
dpkg-deb -f "$out/edge.deb" Package Version Depends
depends=$(dpkg-deb -f "$out/edge.deb" Depends)
grep -qE "(^|, )systemd( |,|$)" <<<"$depends" || { echo "the .deb does not depend on systemd" >&2; status=1; }
# The daemons run no program: a dependency on these would be dead weight on the host (the
# installed-system test proves edge-fw works without them).
for d in nftables iproute2 netbase libnftnl11 libmnl0; do
  if grep -qE "(^|, )$d( |,|$)" <<<"$depends"; then echo "the .deb depends on $d, which nothing uses" >&2; status=1; fi
done
dpkg-deb -e "$out/edge.deb" "$out/control"
grep -qx "/etc/edge/edge.toml.example" "$out/control/conffiles" || { echo "edge.toml.example is not a conffile" >&2; status=1; }
if grep -v '^\s*#' "$out/control/postinst" | grep -qE "systemctl (enable|start)|deb-systemd-invoke start"; then
  echo "postinst enables or starts a unit: nothing may start before the admin configured it" >&2
  status=1
fi
rm -rf "$stage"
[ $status -eq 0 ] && echo "ok: the .deb lists every expected file; nothing is enabled or started"
exit $status
