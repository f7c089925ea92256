#!/usr/bin/env bash
# The whole test suite from nothing: wasm target, plugins and test guests (built once), then
# every unit and end-to-end test in the release profile (the profile the bench uses too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
# Segment's official Python library, for the test that speaks to the host with it.
python3 -m pip install --quiet --disable-pip-version-check segment-analytics-python==2.4.0
# The `tessera` binary, which the newcomer test runs as a user would (it rebuilds it if stale).
cargo build --release -p tessera
cargo test --release --workspace "$@"
