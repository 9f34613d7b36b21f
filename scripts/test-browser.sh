#!/usr/bin/env bash
# Runs the browser tests (tests/browser) in Debian's chromium: installs
# what they need (scripts/browser-deps.sh), builds veil unless $VEIL_BIN
# names one, then pytest. Extra arguments go to pytest (-k, -x, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/browser-deps.sh
if [ -z "${VEIL_BIN:-}" ]; then
    cargo build -q -p veil-cli
    export VEIL_BIN="$PWD/target/debug/veil"
fi
exec target/browser-venv/bin/python -m pytest -q -p no:cacheprovider tests/browser "$@"
