#!/usr/bin/env bash
# README command 2: runs every test of the suite. Needs root: the integration tests build
# network namespaces (and only ever configure networking inside them).
set -euo pipefail
# shellcheck source=scripts/prelude.sh
source "$(dirname "$0")/prelude.sh"
# The installed-system tests (tests/tests/installed.rs) install the release package.
bash scripts/package-deb.sh
bash scripts/check-units.sh
bash scripts/check-prometheus.sh
bash scripts/check-deb.sh
cargo test --workspace -- --test-threads="${EDGE_TEST_THREADS:-2}"
