#!/usr/bin/env bash
# Builds the Debian package: every binary in release mode (edgectl without the lab), the man
# page and completions, then `cargo deb --no-build`. The .deb lands in target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release -p edge-ddns -p edge-wg -p edge-fw -p edge-link
cargo build --release -p edgectl --no-default-features
mkdir -p target/edge-dist
target/release/edgectl man | gzip -9n > target/edge-dist/edgectl.1.gz
target/release/edgectl completions bash > target/edge-dist/edgectl.bash
target/release/edgectl completions zsh > target/edge-dist/_edgectl
cargo deb -p edgectl --no-build --no-strip "$@"
ls -l target/debian/*.deb
