#!/usr/bin/env bash
# One-time set-up on a fresh Debian 12 machine (as root): system packages, npm packages, compiled and bundled CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/apt-deps.sh
# better-sqlite3 and fs-xattr compile with node-gyp against the local Node headers (no download).
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx tsc -p tsconfig.json
# The CLI bin/strata runs: one bundled file, quick to start (see scripts/bundle.mjs).
node scripts/bundle.mjs
