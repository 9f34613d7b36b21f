#!/usr/bin/env bash
# Pixel cleaning and `veil verify --pixels` on the four burned-in text sets
# of issue 21, one run, on this machine:
#
#   must-show  veil-plant text-set --seed 4 (the set crates/veil-cli/tests/
#              clean_pixels.rs asserts on, and the one tuned on)
#   seed-1     --seed 1 (same kind, not tuned on)
#   full       --seed 1 --full (164 files, every template)
#   fresh      --seed 20261208 (first used on 2026-12-08; nothing tuned on it)
#
#   scripts/pixel-sets.sh [SET...]      (default: all four)
#
# For each set: `veil deid --option clean-pixel-data --option clean-graphics`
# scored by `veil-plant text-eval` (independent decoder, the known glyph
# masks, Tesseract read-back: lines unreadable, non-text pixels changed),
# and `veil verify --pixels` on the uncleaned copy, scored by which images
# holding planted lines it flags (scripts/pixel_sets_verify.py). Writes
# target/bench/pixel-sets/<set>/{eval.json,verify.json,verify.txt} and
# prints a summary table.
#
# Environment: VEIL_CORPUS (default target/corpus/base); VEIL_BIN (default
# target/release/veil, built if missing). Needs dcmtk, libgdcm-tools and
# tesseract-ocr (scripts/system-deps.sh). About 10 minutes on 2 cores for
# the three small sets, 25 more for the full one.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${VEIL_CORPUS:-target/corpus/base}
BENCH=target/bench/pixel-sets
mkdir -p "$BENCH"
if [ -z "${VEIL_BIN:-}" ]; then
    cargo build -q --release -p veil-cli
    VEIL_BIN=target/release/veil
fi
cargo build -q -p veil-plant
PLANT=target/debug/veil-plant
export OMP_THREAD_LIMIT=1
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(must-show seed-1 full fresh)
key="$BENCH/key"
[ -f "$key" ] || "$VEIL_BIN" key new "$key" >/dev/null
for s in "${sets[@]}"; do
    case $s in
        must-show) args=(--seed 4) ;;
        seed-1) args=(--seed 1) ;;
        full) args=(--seed 1 --full) ;;
        fresh) args=(--seed 20261208) ;;
        *) echo "pixel-sets: unknown set $s" >&2; exit 2 ;;
    esac
    d="$BENCH/$s"
    [ -f "$d/set/manifest.json" ] || { rm -rf "$d"; mkdir -p "$d"; $PLANT text-set "$d/set" --corpus "$CORPUS" "${args[@]}"; }
    rm -rf "$d/out" "$d/review"
    start=$(date +%s.%N)
    "$VEIL_BIN" deid "$d/set/in" --out "$d/out" --key "$key" --review "$d/review" \
        --report "$d/report.json" --option clean-pixel-data --option clean-graphics >/dev/null 2>&1 || true
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    $PLANT text-eval "$d/set/manifest.json" "$d/set/in" "$d/out" --map "$d/report.json" --json "$d/eval.json" > "$d/eval.txt"
    "$VEIL_BIN" verify "$d/set/in" --source "$d/set/in" --pixels --json "$d/verify.json" >/dev/null 2>&1 || true
    python3 scripts/pixel_sets_verify.py "$d/set/manifest.json" "$d/verify.json" > "$d/verify.txt"
    echo "== $s (veil deid ${secs%.*} s)"
    tail -n 3 "$d/eval.txt"
    tail -n 1 "$d/verify.txt"
done
