#!/usr/bin/env bash
# Installs what the tracking-client compatibility tests drive: the published Segment and
# RudderStack libraries at pinned versions (tests/clients/package-lock.json and
# requirements.txt) and Debian's headless Chromium for the browser libraries; the published
# `svix` library, which the delivery tests verify the webhook channel's Standard Webhooks
# signatures with; and the SMTP server the email channel's tests deliver to (aiosmtpd). Both
# are pinned in requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"
python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json.installed; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.package-lock.json.installed
fi
if [[ ! -x /usr/bin/chromium-headless-shell ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null
    fi
fi
