#!/usr/bin/env bash
# Runs every client driver against one tracking host; exits non-zero if any library reported a failure.
# Usage: tests/clients/run_all.sh BASE_URL WRITE_KEY [USER_PREFIX]
# Installs the pinned libraries first (npm ci from package-lock.json, pip from requirements.txt).
set -u
cd "$(dirname "$0")"
base=${1:?BASE_URL}; key=${2:?WRITE_KEY}; prefix=${3:-client}
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null || exit 1
python3 -c 'import segment.analytics, rudderstack.analytics' 2>/dev/null \
  || pip install -q -r requirements.txt || exit 1
status=0
run() { echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }
run node drive_server_libs.js segment-node "$base" "$key" "$prefix-segment-node"
run node drive_server_libs.js rudder-node "$base" "$key" "$prefix-rudder-node"
run python3 drive_python_libs.py segment-python "$base" "$key" "$prefix-segment-python"
run python3 drive_python_libs.py rudder-python "$base" "$key" "$prefix-rudder-python"
run node drive_browser_libs.js segment-browser "$base" "$key" "$prefix-segment-browser"
run node drive_browser_libs.js rudder-browser "$base" "$key" "$prefix-rudder-browser"
exit $status
