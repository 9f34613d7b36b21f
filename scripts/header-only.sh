#!/usr/bin/env bash
# The header-only build (issue 17): `veil` without the `ocr` feature links
# no OCR library, de-identifies headers, and refuses a pixel option with a
# message. It shares the default target folder (the dependencies are built
# once; only the crates whose features differ are rebuilt), keeps its binary
# in a temporary folder, and puts the default `veil` back on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; cargo build -q -p veil-cli' EXIT
cargo build -q -p veil-cli --no-default-features
veil="$tmp/veil-header-only"
cp target/debug/veil "$veil"
if ldd "$veil" | grep -Ei 'tesseract|lept'; then
    echo "header-only veil links an OCR library" >&2
    exit 1
fi
export VEIL_HOME="$tmp/home"
"$veil" key new "$tmp/k.key" >/dev/null
corpus="${VEIL_CORPUS:-target/corpus/base}"
"$veil" -q deid "$corpus/pydicom-3.0.2" --out "$tmp/out" --key "$tmp/k.key" >/dev/null || [ $? -eq 1 ]
test -n "$(find "$tmp/out" -name '*.dcm' -print -quit)"
if "$veil" -q deid "$corpus/pydicom-3.0.2" --out "$tmp/out2" --key "$tmp/k.key" \
    --option clean-pixel-data 2>"$tmp/err"; then
    echo "header-only veil accepted a pixel option" >&2
    exit 1
fi
grep -q "built without" "$tmp/err"
echo "header-only veil: no OCR library linked; deid ran; pixel option refused"
