#!/usr/bin/env bash
# Verifies the systemd units (systemd-analyze verify) against the freshly built binaries and
# prints their hardening score (systemd-analyze security --offline), failing above target:
# 1.5 for edge-ddns, 2.0 for the others.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${EDGE_BIN_DIR:-$PWD/target/debug}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for b in edge-ddns edge-link edge-fw edge-wg edgectl; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build first (cargo build --workspace --bins)" >&2; exit 1; }
done
# The units name the installed binaries (ExecStart=, and edgectl in ExecReload=): point
# every /usr/bin/edge* at the fresh build.
for role in ddns link fw wg; do
  sed -E "s#/usr/bin/(edge-[a-z]+|edgectl)#$bin/\1#g" "systemd/edge-$role.service" > "$tmp/edge-$role.service"
done
cp systemd/edge.target "$tmp/"
echo "== systemd-analyze verify"
systemd-analyze verify --man=no "$tmp"/edge-*.service "$tmp/edge.target"
echo "ok: all units verify"
status=0
echo "== systemd-analyze security --offline=true"
for role in ddns link fw wg; do
  target=2.0
  [ "$role" = ddns ] && target=1.5
  line=$(systemd-analyze security --offline=true "systemd/edge-$role.service" | tail -n 1)
  score=$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$line")
  verdict=ok
  if awk -v s="$score" -v t="$target" 'BEGIN { exit !(s > t) }'; then
    verdict="ABOVE TARGET"
    status=1
  fi
  printf '  edge-%-5s exposure %s (target <= %s) %s\n' "$role" "$score" "$target" "$verdict"
done
exit $status
