#!/usr/bin/env bash
# Installs Debian's headless-capable chromium for the browser test (tests/web), if missing.
# Non-interactive; runs as root (CI) or through sudo when available. Idempotent.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "install-chromium: not root and no sudo; install Debian's chromium by hand" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-dejavu-core: readable text in screenshots on a machine with no fonts at all.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core ca-certificates
"$CHROMIUM" --version
