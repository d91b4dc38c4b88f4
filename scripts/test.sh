#!/usr/bin/env bash
# README command 2: runs every test of the suite. Needs root: the integration tests build
# network namespaces (and only ever configure networking inside them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
bash scripts/deps.sh
# Integration tests run the real binaries, so build them first.
cargo build --workspace --bins
# The installed-system tests (tests/tests/installed.rs) install the release package.
bash scripts/package-deb.sh
bash scripts/check-units.sh
bash scripts/check-prometheus.sh
bash scripts/check-deb.sh
cargo test --workspace -- --test-threads="${EDGE_TEST_THREADS:-2}"
