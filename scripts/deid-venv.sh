#!/usr/bin/env bash
# Builds the python venv that the deid peer comparison (scripts/deid-peer.sh)
# runs pydicom/deid in: pinned deid and pydicom from PyPI, nothing else.
#
#   scripts/deid-venv.sh [DIR]      (default target/deid-venv)
#
# Idempotent: an existing venv with the pinned versions is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR="${1:-target/deid-venv}"
DEID=deid==0.4.13
PYDICOM=pydicom==3.0.2

if [ -x "$DIR/bin/python" ] &&
    "$DIR/bin/python" -c 'import pydicom, sys; from deid.version import __version__ as v; sys.exit(v != "0.4.13" or pydicom.__version__ != "3.0.2")' 2>/dev/null; then
    exit 0
fi
rm -rf "$DIR"
python3 -m venv "$DIR"
"$DIR/bin/pip" install --quiet --disable-pip-version-check "$DEID" "$PYDICOM"
"$DIR/bin/python" -c 'import pydicom; from deid.version import __version__ as v; print("deid", v, "pydicom", pydicom.__version__)'
