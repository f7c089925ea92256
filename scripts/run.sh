#!/usr/bin/env bash
# Runs Tessera with its bundled plugins on the embedded store (./tessera-data).
# Extra arguments go to `tessera serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
# The binary finds the bundled plugins in target/plugins, beside target/release/.
exec cargo run --release -p tessera -- serve "$@"
