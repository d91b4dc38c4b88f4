# Sourced first by scripts/lab.sh and scripts/test.sh (not run on its own): from the
# repository's root, as root (the script starts again under sudo otherwise, with its
# arguments), with the Debian packages of scripts/deps.sh, and with every binary built (the
# lab and the integration tests run the real ones). The caller has set -euo pipefail.
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
bash scripts/deps.sh
cargo build --workspace --bins
