#!/usr/bin/env bash
# The whole test suite from nothing: wasm target, plugins and test guests (built once), the
# published tracking libraries the compatibility tests drive (pinned) and headless Chromium for
# the browser ones, then every unit and end-to-end test in the release profile (the profile the
# bench uses too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
bash scripts/install-test-clients.sh
# The `tessera` binary, which the newcomer test runs as a user would (it rebuilds it if stale).
cargo build --release -p tessera
cargo test --release --workspace "$@"
