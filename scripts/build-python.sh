#!/usr/bin/env bash
# Builds the Python package `veil` (crates/veil-py, PyO3 + maturin) as a
# wheel in target/wheels/. maturin comes from PyPI into a venv under
# target/ when missing; nothing else is fetched (cargo's own crates aside).
#
#   scripts/build-python.sh            release wheel
#   VEIL_PY_PROFILE=dev scripts/build-python.sh   debug wheel (tests:
#                                      same bytes, shorter compile)
#   PYTHON=python3.12 ...              the interpreter of the build venv
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/target/py-build
PROFILE=${VEIL_PY_PROFILE:-release}
log() { echo "[build-python] $*" >&2; }

if [ ! -x "$VENV/bin/maturin" ]; then
    log "installing maturin into $VENV (PyPI)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'maturin>=1.5,<2'
fi
mkdir -p target/wheels
# one wheel of ours in target/wheels (what `pip install target/wheels/veil-*.whl` takes)
rm -f target/wheels/veil-*.whl
# the wheel's version is the workspace's (Cargo), its name `veil`. It links
# the system's libtesseract (Clean Pixel Data, Clean Graphics), so it is a
# plain `linux` wheel for machines with the same system libraries (as the
# `veil` binary), not a manylinux one: no auditwheel repair.
"$VENV/bin/maturin" build --profile "$PROFILE" --interpreter "$PYTHON" \
    --compatibility linux --auditwheel skip \
    --out target/wheels --manifest-path crates/veil-py/Cargo.toml >&2
WHEEL=$(ls -t target/wheels/veil-*.whl | head -1)
log "built $WHEEL"
echo "$WHEEL"
