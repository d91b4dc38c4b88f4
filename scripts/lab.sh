#!/usr/bin/env bash
# README command 1: the suite's main job on the reference deployment (config/edge.toml).
# It checks the example configuration and prints what each daemon would do.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
bash scripts/deps.sh
cargo build --workspace --bins
edgectl=target/debug/edgectl
echo "== edgectl config check --config config/edge.toml"
"$edgectl" config check --config config/edge.toml
