#!/usr/bin/env bash
# Installs the pay page's browser libraries from npm (web/package-lock.json, exact versions and
# integrity hashes) and copies their browser bundles into bot/web/static/vendor/, served by
# paybot itself: no CDN at run time. Today: @tonconnect/ui (TON Connect's wallet button and
# sendTransaction). Idempotent: skips when the bundle matches the lockfile. Needs node and npm
# (installed from Debian when missing, as scripts/install-chromium.sh does for chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bot/web/static/vendor
STAMP="$OUT/.lock-sha256"
want="$(sha256sum web/package-lock.json | cut -d' ' -f1)"
if [ -f "$OUT/tonconnect-ui.min.js" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

if ! command -v npm >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "vendor: npm missing; install node and npm" >&2; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# --ignore-scripts: nothing from the registry runs here; we only copy a prebuilt bundle.
# Run inside web/ rather than with --prefix: --prefix also moves npm's global config (to
# web/etc/npmrc), losing the machine's (its CA file, say).
(cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
mkdir -p "$OUT"
cp web/node_modules/@tonconnect/ui/dist/tonconnect-ui.min.js "$OUT/tonconnect-ui.min.js.tmp"
mv "$OUT/tonconnect-ui.min.js.tmp" "$OUT/tonconnect-ui.min.js"
echo "$want" > "$STAMP"
echo "vendor: @tonconnect/ui $(node -p "require('./web/node_modules/@tonconnect/ui/package.json').version") -> $OUT/"
