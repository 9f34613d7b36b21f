#!/usr/bin/env bash
# Tests of the Python package: builds the wheel (scripts/build-python.sh),
# installs it into a venv under target/ with pytest, pydicom and numpy
# (PyPI), builds the `veil` binary the determinism tests compare with, and
# runs tests/python. VEIL_PY_PROFILE (default dev) picks the wheel's profile;
# VEIL_CORPUS the corpus (default target/corpus/base).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/target/py-test
export VEIL_PY_PROFILE=${VEIL_PY_PROFILE:-dev}
log() { echo "[test-python] $*" >&2; }

WHEEL=$(scripts/build-python.sh)
cargo build -q -p veil-cli
export VEIL_BIN=${VEIL_BIN:-$ROOT/target/debug/veil}
export VEIL_CORPUS=${VEIL_CORPUS:-$ROOT/target/corpus/base}
if [ ! -x "$VENV/bin/pytest" ]; then
    log "creating $VENV with pytest (PyPI)"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pytest
fi
# pydicom and numpy write the head series the Spark defacing test reads
# (tests/python/heads.py)
if ! "$VENV/bin/python" -c "import pydicom, numpy" 2>/dev/null; then
    log "installing pydicom and numpy into $VENV (PyPI)"
    "$VENV/bin/pip" install -q --disable-pip-version-check pydicom numpy
fi
# the Spark job's tests: pyspark (bundles Spark; runs on Debian's
# openjdk-17-jre-headless, scripts/system-deps.sh)
if [ ! -d "$VENV/lib" ] || ! "$VENV/bin/python" -c "import pyspark" 2>/dev/null; then
    log "installing pyspark into $VENV (PyPI)"
    "$VENV/bin/pip" install -q --disable-pip-version-check pyspark
fi
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
cd tests/python
"$VENV/bin/pytest" -q "$@" .
