#!/usr/bin/env bash
# Burned-in text benchmark: Veil's pixel cleaning and Presidio's
# DicomImageRedactorEngine on the same planted set, in one run, on this
# machine; both scored by `veil-plant text-eval` (independent decoder,
# known glyph masks, Tesseract read-back).
#
#   scripts/bench-pixels.sh [--quick]
#
# Writes target/bench/pixels-results.md (the table) and, per tool,
# target/bench/pixels-<tool>.json (metrics).
#
# Environment:
#   VEIL_CORPUS    the base corpus (default target/corpus/base)
#   VEIL_SIDE      deid (default): `veil deid --option clean-pixel-data
#                  --option clean-graphics`; identity: OUT = IN (no
#                  redaction, a floor); oracle: every planted box filled
#                  (a ceiling)
#   VEIL_BIN       the veil binary (default target/release/veil, built if
#                  missing)
#   SET_SIZE       --full (default) or --quick / "" (CI-sized set)
#
# Needs: dcmtk, libgdcm-tools (the set's peer encoders), tesseract-ocr
# (scripts/system-deps.sh), python3 with venv; pip reaches PyPI once to
# fill target/bench/presidio-venv.
#
# The screening micro-benchmark (frames/s of the cheap text screen on
# 512x512 frames) belongs to the pixel stage; hook it in at "VEIL SCREEN"
# below so that it runs on the same machine in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESIDIO_VERSION=0.0.62
BENCH=target/bench
SET=$BENCH/pixels-set
CORPUS=${VEIL_CORPUS:-target/corpus/base}
SIDE=${VEIL_SIDE:-deid}
SIZE=${SET_SIZE---full}
[ "${1:-}" = "--quick" ] && SIZE=""
mkdir -p "$BENCH"
cores=$(nproc)

# the measuring stick needs no release build (its hot loops are in
# dicom-pixeldata and Tesseract, optimized in dev builds too)
cargo build -q -p veil-plant
PLANT=target/debug/veil-plant

# 1. the set (rebuilt each run: deterministic, and the peers' versions
#    are part of the result)
rm -rf "$SET"
$PLANT text-set "$SET" --corpus "$CORPUS" $SIZE
files=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['files']))" "$SET/manifest.json")
export SIZE_NOTE="$SIZE"

# 2. Presidio, pinned, in its own venv
VENV=$BENCH/presidio-venv
have=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('presidio-image-redactor'))" 2>/dev/null || true)
if [ "$have" != "$PRESIDIO_VERSION" ]; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "presidio-image-redactor==$PRESIDIO_VERSION"
fi
presidio_version=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('presidio-image-redactor'))")

# 3. Presidio's run (timed inside the runner, model setup apart)
rm -rf "$BENCH/pixels-presidio-out"
"$VENV/bin/python" scripts/presidio_redact.py "$SET/in" "$BENCH/pixels-presidio-out" \
    "$BENCH/pixels-presidio-map.json" --model "$BENCH/presidio-blank-en"

# 4. Veil's run
VOUT=$BENCH/pixels-veil-out
rm -rf "$VOUT" "$VOUT.review" "$BENCH/pixels-veil-report.json"
case "$SIDE" in
deid)
    VEIL=${VEIL_BIN:-target/release/veil}
    [ -x "$VEIL" ] || cargo build --release -q -p veil-cli
    KEY=$BENCH/pixels.key
    [ -f "$KEY" ] || "$VEIL" key new "$KEY"
    t0=$(date +%s.%N)
    "$VEIL" deid "$SET/in" --out "$VOUT" --review "$VOUT.review" --key "$KEY" \
        --report "$BENCH/pixels-veil-report.json" \
        --option clean-pixel-data --option clean-graphics --jobs "$cores" || [ $? -eq 1 ]
    t1=$(date +%s.%N)
    VMAP=$BENCH/pixels-veil-report.json
    # VEIL SCREEN: the screen alone (no OCR) on the set's 512x512 frames,
    # on the same cores, written beside the comparison
    cargo run -q --release --example screen_bench -p veil-pixels -- "$SET/in" \
        > "$BENCH/pixels-screen.json"
    ;;
identity)
    t0=$(date +%s.%N)
    python3 - "$SET" "$BENCH/pixels-veil-map.json" <<'EOF'
import json, os, sys
m = json.load(open(os.path.join(sys.argv[1], "manifest.json")))
json.dump({"outputs": {f["file"]: os.path.abspath(os.path.join(sys.argv[1], "in", f["file"])) for f in m["files"]}, "review": []}, open(sys.argv[2], "w"))
EOF
    t1=$(date +%s.%N)
    VMAP=$BENCH/pixels-veil-map.json
    mkdir -p "$VOUT"
    ;;
oracle)
    t0=$(date +%s.%N)
    $PLANT text-oracle "$SET/manifest.json" "$SET/in" "$VOUT" "$BENCH/pixels-veil-map.json"
    t1=$(date +%s.%N)
    VMAP=$BENCH/pixels-veil-map.json
    ;;
*) echo "VEIL_SIDE must be deid, identity or oracle" >&2; exit 2 ;;
esac
veil_seconds=$(python3 -c "print(f'{$t1 - $t0:.2f}')")

# 5. both scored the same way
$PLANT text-eval "$SET/manifest.json" "$SET/in" "$BENCH/pixels-presidio-out" \
    --map "$BENCH/pixels-presidio-map.json" --json "$BENCH/pixels-presidio.json"
$PLANT text-eval "$SET/manifest.json" "$SET/in" "$VOUT" \
    --map "$VMAP" --json "$BENCH/pixels-veil.json"

# 6. the table
python3 - "$BENCH" "$SIDE" "$veil_seconds" "$presidio_version" "$cores" "$files" <<'EOF'
import json, os, platform, sys
bench, side, veil_s, pver, cores, files = sys.argv[1:7]
pm = json.load(open(os.path.join(bench, "pixels-presidio-map.json")))
rows = [
    (f"Veil (`{side}`)", float(veil_s), json.load(open(os.path.join(bench, "pixels-veil.json"))), 0),
    (f"Presidio {pver} DicomImageRedactorEngine", pm["seconds"], json.load(open(os.path.join(bench, "pixels-presidio.json"))), len(pm["errors"])),
]
out = [
    "# Burned-in text: Veil vs Presidio (one run, same machine, same files)",
    "",
    f"{files} files of the planted text set (`veil-plant text-set {os.environ.get('SIZE_NOTE', '')}`), {cores} cores, {platform.machine()}; files and frames: released / in the set, frames/s over released frames.",
    "Recall: planted lines unreadable afterwards (glyphs erased and Tesseract cannot read them back), over lines in released outputs;",
    "\"all\" also counts lines in files the tool failed on as readable. Non-text: pixels outside the planted boxes (+4 px) changed.",
    "",
    "| tool | files | frames | seconds | frames/s | recall | recall (all) | non-text changed, lossless | non-text changed, lossy | decode failures | tool errors / missing | to review |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
manifest = json.load(open(os.path.join(bench, "pixels-set", "manifest.json")))
frames_of = {f["file"]: f["frames"] for f in manifest["files"]}
for name, s, e, errs in rows:
    denom = e["lines"] - e["review_lines"]
    allrec = 100.0 * e["unreadable_lines"] / max(denom, 1)
    # files and frames the tool released (written to OUT, decodable or not)
    done = {d["file"] for d in e["details"] if d["status"] in ("out", "decode-failure")}
    frames = sum(frames_of[f] for f in done)
    out.append(
        f"| {name} | {len(done)}/{e['files']} | {frames}/{e['frames']} | {s:.1f} | {frames / max(s, 1e-9):.2f} | "
        f"{e['recall_percent']:.1f} % ({e['unreadable_lines']}/{e['evaluated_lines']}) | {allrec:.1f} % | "
        f"{e['nontext_lossless']['percent']:.3f} % | {e['nontext_lossy']['percent']:.3f} % | {e['decode_failures']} | "
        f"{max(errs, e['missing_files'])} | {e['review_files']} |"
    )
out += ["", "Recall by group (unreadable / lines):", "", "| group | " + " | ".join(r[0] for r in rows) + " |", "| --- |" + " ---: |" * len(rows)]
keys = sorted(set().union(*[r[2]["by"].keys() for r in rows]))
for k in keys:
    cells = []
    for r in rows:
        t = r[2]["by"].get(k, {"lines": 0, "unreadable": 0})
        cells.append(f"{t['unreadable']}/{t['lines']}")
    out.append(f"| {k} | " + " | ".join(cells) + " |")
open(os.path.join(bench, "pixels-results.md"), "w").write("\n".join(out) + "\n")
print("\n".join(out[:10]))
EOF
