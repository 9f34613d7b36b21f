#!/usr/bin/env bash
# Benchmark of `veil verify` beside `veil deid`, on the same machine in one
# run: de-identify the bench corpus (scripts/bench.sh builds it), verify the
# output against the sources without OCR, then with OCR (`--pixels`) on a
# sample of 512x512 images, reporting frames per second.
#
#   BENCH_COUNT=7000 BENCH_SEED=1   bench corpus size/seed (as bench.sh)
#   BENCH_OCR_FILES=40              images in the OCR sample
#   BENCH_REPORT=docs/benchmarks.md section "veil verify" is replaced
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH_COUNT=${BENCH_COUNT:-7000}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_OCR_FILES=${BENCH_OCR_FILES:-40}
BENCH_REPORT=${BENCH_REPORT:-docs/benchmarks.md}
WORK=$ROOT/target/bench
BENCH=$WORK/corpus-$BENCH_COUNT-s$BENCH_SEED
log() { echo "[bench-verify] $*" >&2; }

if [ ! -f "$BENCH.done" ]; then
    log "building the bench corpus with scripts/bench.sh (BENCH_ONLY=cp)"
    BENCH_ONLY=cp BENCH_REPORT=/dev/null scripts/bench.sh
fi
cargo build -q --release -p veil-cli
VEIL=$ROOT/target/release/veil
OUT=$WORK/verify-out
rm -rf "$OUT" "$OUT.review" "$WORK/ocr-in" "$WORK/ocr-out" "$WORK/ocr-out.review"
KEY=$WORK/verify.key
rm -f "$KEY"
"$VEIL" key new "$KEY" >/dev/null

# time CMD...: wall seconds of one run, warm cache (each input read once before)
secs() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1-$t0:.2f}')"
}
cat "$(find "$BENCH" -type f | head -1)" >/dev/null
find "$BENCH" -type f -print0 | xargs -0 cat >/dev/null
files=$(find "$BENCH" -type f | wc -l)
mb=$(du -sm "$BENCH" | cut -f1)

deid_s=$(secs "$VEIL" deid "$BENCH" --out "$OUT" --key "$KEY")
outs=$(find "$OUT" -type f | wc -l)
verify_s=$(secs "$VEIL" verify "$OUT" --source "$BENCH" --json "$WORK/verify.json")
deid_verify_s=$(secs "$VEIL" deid "$BENCH" --out "$OUT-inline" --key "$KEY" --verify)
rm -rf "$OUT-inline" "$OUT-inline.review"
summary=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["files"], s["files_with_findings"], s["failing"])' "$WORK/verify.json")
read -r vfiles vbad vfail <<<"$summary"

# OCR sample: 512x512 single-frame images of the bench corpus
mkdir -p "$WORK/ocr-in"
n=0
while IFS= read -r f; do
    if dcmdump +P 0028,0010 +P 0028,0011 +P 0028,0008 "$f" 2>/dev/null | tr -s ' ' |
        awk '/Rows/{r=$3} /Columns/{c=$3} /NumberOfFrames/{fr=$3} END{exit !(r==512 && c==512 && (fr=="" || fr=="[1]"))}'; then
        n=$((n + 1))
        cp "$f" "$WORK/ocr-in/$n.dcm"
        [ "$n" -ge "$BENCH_OCR_FILES" ] && break
    fi
done < <(find "$BENCH" -type f | sort)
"$VEIL" deid "$WORK/ocr-in" --out "$WORK/ocr-out" --key "$KEY" >/dev/null || true
frames=$(find "$WORK/ocr-out" -type f | wc -l)
ocr_s=$(secs "$VEIL" verify "$WORK/ocr-out" --source "$WORK/ocr-in" --pixels --jobs 2)

python3 - "$BENCH_REPORT" <<EOF
import re, sys, os, platform
p = sys.argv[1]
deid, ver, inline, ocr = float("$deid_s"), float("$verify_s"), float("$deid_verify_s"), float("$ocr_s")
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" \t:")
sec = f"""## veil verify

Run by \`scripts/bench-verify.sh\` on {os.cpu_count()} cores ({cpu}), warm cache,
release build. Bench corpus: $files files, $mb MB (\`corpus-$BENCH_COUNT-s$BENCH_SEED\`).

| step | wall s | files/s | ratio |
|---|---|---|---|
| \`veil deid\` (no verify) | {deid:.2f} | {$files/deid:.0f} | 1.00 |
| \`veil verify OUT --source IN\` ($outs outputs, no OCR) | {ver:.2f} | {$outs/ver:.0f} | {deid/ver:.2f} x deid's throughput (same corpus: deid time / verify time) |
| \`veil deid --verify\` (inline) | {inline:.2f} | {$files/inline:.0f} | {inline/deid:.2f} x the time of deid alone |
| \`veil verify --pixels\` on $frames 512x512 frames (OCR, 2 jobs) | {ocr:.2f} | {$frames/ocr:.2f} frames/s | |

Findings on the de-identified bench corpus: $vbad of $vfiles files ($vfail failing findings).
Throughput is per corpus: both steps take the same $files input files (verify reads them
as sources and the $outs outputs deid released). The target (issue 3) is verify throughput
without OCR at least half of deid's: ratio >= 0.5.
"""
sys.path.insert(0, "$ROOT/scripts")
from bench_report import replace_section
replace_section(p, "veil verify", sec)
print(sec)
EOF
