#!/usr/bin/env bash
# The whole test suite from nothing: wasm target, plugins and test guests (built once), then
# every unit and end-to-end test in the release profile (the profile the bench uses too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
cargo test --release --workspace "$@"
