#!/usr/bin/env bash
# Installs the npm peer of the interop tests (ws, pinned by node/package-lock.json)
# into interop/node/node_modules. Idempotent: when node_modules already matches
# the lock file it does nothing (no network).
set -euo pipefail
cd "$(dirname "$0")/node"

stamp=node_modules/.duplex-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f node_modules/ws/package.json ]; then
	exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
