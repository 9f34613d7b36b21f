#!/usr/bin/env bash
# Installs what the browser tests (tests/browser) need, if missing:
#   Debian chromium   the real browser the portal pages are checked in. Not
#                     Playwright's own download (`playwright install` fetches
#                     from a host our CI cannot reach, and a distribution
#                     build is what patients' Linux browsers are anyway).
#   target/browser-venv   playwright (the Python driver only) and pytest,
#                     plus cryptography for the independent proof check.
#   target/browser-node   axe-core, injected into pages to check
#                     accessibility.
# Versions are pinned so a run is reproducible; raise them deliberately.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT=1.65.2
PYTEST=9.2.0
CRYPTOGRAPHY=50.0.2
AXE_CORE=4.14.1

if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
    echo "installing: chromium" >&2
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium
fi

venv=target/browser-venv
want="playwright==$PLAYWRIGHT pytest==$PYTEST cryptography==$CRYPTOGRAPHY"
# the stamp holds the pins the venv was made with: a changed pin reinstalls
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $want
    echo "$want" >"$venv/.pins"
fi

node=target/browser-node
if [ "$(cat "$node/.pins" 2>/dev/null)" != "axe-core@$AXE_CORE" ]; then
    mkdir -p "$node"
    npm install --silent --no-audit --no-fund --prefix "$node" "axe-core@$AXE_CORE"
    echo "axe-core@$AXE_CORE" >"$node/.pins"
fi
