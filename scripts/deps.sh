#!/usr/bin/env bash
# Installs the Debian packages the suite's tests and lab use (idempotent; needs root).
# Debian 12 (bookworm) or later. CI calls it through .ci/run and the README's commands.
set -euo pipefail

PACKAGES=(
  nftables iproute2 iputils-ping       # tests: nft (the independent reader), ip, ping
  wireguard-go wireguard-tools         # the independent WireGuard peer and the `wg` tool
  keepalived conntrackd conntrack      # two edge hosts: VRRP, the connection table sync (lab --ha)
  iperf3 curl socat netcat-openbsd jq  # traffic and probes in the namespaced topology
  prometheus                           # promtool: alert rule checks and unit tests
  systemd                              # systemd-analyze: unit verification and hardening score
  binutils                             # strip: the packaging check stages small binaries
  mmdebstrap systemd-container         # the installed-system tests: a minimal Debian root booted by systemd-nspawn
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/deps.sh: missing packages: ${missing[*]}; run as root (sudo) to install them" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
