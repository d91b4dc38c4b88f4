#!/usr/bin/env bash
# Builds the Debian package: every binary in release mode (edgectl without the lab), the man
# page and completions, then `cargo deb --no-build`. The .deb lands in <target>/debian/.
# Set CARGO_TARGET_DIR to build outside ./target.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
target="${CARGO_TARGET_DIR:-$PWD/target}"
# One build for all five (features unified once): edgectl without the lab.
cargo build --release -p edge-ddns -p edge-wg -p edge-fw -p edge-link -p edgectl --no-default-features
mkdir -p "$target/release/dist"
"$target/release/edgectl" man | gzip -9n > "$target/release/dist/edgectl.1.gz"
"$target/release/edgectl" completions bash > "$target/release/dist/edgectl.bash"
"$target/release/edgectl" completions zsh > "$target/release/dist/_edgectl"
# Debug info goes to a separate edge-dbgsym .ddeb, as Debian does: the binaries installed
# are a fifth of the size, and backtraces keep their lines when the dbgsym is installed.
cargo deb -p edgectl --no-build --dbgsym "$@"
ls -l "$target"/debian/*.deb "$target"/debian/*.ddeb
