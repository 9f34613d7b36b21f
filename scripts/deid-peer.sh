#!/usr/bin/env bash
# Peer comparison with pydicom/deid (issue 17, docs/migration.md): deid runs
# its own default recipe on corpus files; Veil runs the recipe that `veil
# recipe import --from deid` makes from the same file; every attribute that
# differs is listed with its reason (scripts/deid_peer.py). Exit 1 when a
# difference has no known reason.
#
#   scripts/deid-peer.sh [--all] [WORK]      (default WORK: target/deid-peer)
#
# Needs VEIL_CORPUS (scripts/fetch-corpus.sh) and python3; builds the venv
# (scripts/deid-venv.sh) and the `veil` binary if missing. Without --all it
# compares a handful of files (CI); with --all, every file of the corpus
# (the table in docs/migration.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL=0
if [ "${1:-}" = "--all" ]; then ALL=1; shift; fi
WORK="${1:-target/deid-peer}"
: "${VEIL_CORPUS:?set VEIL_CORPUS (scripts/fetch-corpus.sh)}"

VENV=target/deid-venv
scripts/deid-venv.sh "$VENV" >&2
VEIL="${VEIL_BIN:-target/debug/veil}"
[ -x "$VEIL" ] || cargo build -q -p veil-cli

rm -rf "$WORK"
mkdir -p "$WORK"
# the handful: one file from each corpus package that has DICOM files
mapfile -t FILES < <(
    if [ "$ALL" = 1 ]; then
        find "$VEIL_CORPUS" -type f | sort
    else
        for d in "$VEIL_CORPUS"/*/; do
            find "$d" -type f -name '*.dcm' | sort | sed -n 1p
        done
    fi
)

"$VEIL" recipe import rules/sources/pydicom_deid_deid.dicom --from deid --allow-partial \
    -o "$WORK/deid.toml" >"$WORK/import-report.txt"
"$VEIL" key new "$WORK/peer.key" >/dev/null
# exit 1: some inputs quarantined (the corpus holds broken files on purpose)
"$VEIL" deid "${FILES[@]}" --out "$WORK/veil" --review "$WORK/veil.review" \
    --key "$WORK/peer.key" --recipe "$WORK/deid.toml" --report "$WORK/report.json" \
    >&2 || [ $? = 1 ]
MESSAGELEVEL=QUIET "$VENV/bin/python" scripts/deid_peer.py --veil "$VEIL" --key "$WORK/peer.key" \
    --recipe "$WORK/deid.toml" --report "$WORK/report.json" \
    --out "$WORK/veil" --review "$WORK/veil.review"
