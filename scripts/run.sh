#!/usr/bin/env bash
# Runs Tessera with its bundled plugins on the embedded store (./tessera-data).
# Extra arguments go to `tessera serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
exec cargo run --release -p tessera -- serve --plugins-dir target/plugins "$@"
