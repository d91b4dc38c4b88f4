#!/usr/bin/env bash
# README command 1: the suite's main job, end to end. Builds everything, brings up the lab
# (the user's host in network namespaces with the four daemons running for real), runs the
# step-by-step check, and takes the lab down again — also when a step fails or on Ctrl-C.
# Keep the lab running for a look around with:  KEEP=1 bash scripts/lab.sh
set -euo pipefail
# shellcheck source=scripts/prelude.sh
source "$(dirname "$0")/prelude.sh"
edgectl="$PWD/target/debug/edgectl"
if [ -z "${KEEP:-}" ]; then
  trap '"$edgectl" lab down >/dev/null 2>&1 || true' EXIT
fi
echo "== edgectl config check --config config/edge.toml"
"$edgectl" config check --config config/edge.toml
echo
echo "== edgectl lab up"
"$edgectl" lab up
echo
echo "== edgectl lab check"
"$edgectl" lab check
if [ -z "${KEEP:-}" ]; then
  echo
  echo "== edgectl lab down"
  "$edgectl" lab down
  trap - EXIT
else
  echo
  echo "The lab is still up (KEEP=1). Look around, e.g.:"
  echo "  $edgectl --config /run/edge-lab/edge.toml status"
  echo "  ip netns exec edge-lab-host nft list table inet edge"
  echo "Then: $edgectl lab down"
fi
