#!/usr/bin/env bash
# Gateway benchmark (issue 18): instances per second from a PACS Orthanc
# through `veil serve` to a recipient Orthanc, against the PACS Orthanc
# sending the same studies straight to the recipient; storescu -> Veil ->
# storescp against storescu -> storescp; and 8 storescu at once (8
# concurrent associations) with the peak RSS of `veil serve`. All on this
# machine, in one run, fresh peers per leg, minimum over the rounds.
#
#   GW_COUNT=3000 GW_SEED=1   bench corpus size/seed (make_bench.py)
#   GW_ROUNDS=3               rounds (the minimum time of each leg is kept)
#   GW_STABLE=1               study_stable_seconds of the bench route
#   BENCH_REPORT=docs/benchmarks.md   section "veil serve (gateway)" is replaced
#
# The studies are those Veil releases: make_bench.py's set is passed
# through `veil deid --verify` once (not timed) and the files it would hold
# for review (secondary captures, burned-in annotation, documents: a person
# decides on those, no gateway forwards them) are left out, so both paths
# carry the same instances. storescu legs send the uncompressed files only
# (storescu decompresses anything else itself, and fails on some).
#
# Needs: Debian packages orthanc and dcmtk (scripts/system-deps.sh),
# python3 with venv (pydicom==3.0.2 for make_bench.py, in target/bench-venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
GW_COUNT=${GW_COUNT:-3000}
GW_SEED=${GW_SEED:-1}
GW_ROUNDS=${GW_ROUNDS:-3}
GW_STABLE=${GW_STABLE:-1}
BENCH_REPORT=${BENCH_REPORT:-docs/benchmarks.md}
PYDICOM_VERSION=3.0.2
WORK=$ROOT/target/bench
VENV=$ROOT/target/bench-venv
SET=$WORK/gw-$GW_COUNT-s$GW_SEED
VEIL=$ROOT/target/release/veil
log() { echo "[bench-gateway] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in Orthanc storescu storescp; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
        die "$tool not found; run scripts/system-deps.sh (Debian packages orthanc, dcmtk)"
done
mkdir -p "$WORK"
log "cargo build --release -p veil-cli"
cargo build -q --release -p veil-cli
"$ROOT/scripts/fetch-corpus.sh" "$ROOT/target/corpus/base" >&2

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian package python3-venv)"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "pydicom==$PYDICOM_VERSION"

if [ ! -f "$SET.done" ]; then
    rm -rf "$SET" "$SET.released"
    log "make_bench.py: $GW_COUNT files, seed $GW_SEED"
    "$VENV/bin/python" scripts/corpus/make_bench.py target/corpus/base "$SET" "$GW_COUNT" "$GW_SEED" \
        --patients $((GW_COUNT / 30 + 1)) >&2
    # keep what Veil releases (see above): one deid --verify, not timed
    tmp=$(mktemp -d "$WORK/gw-filter.XXXXXX")
    "$VEIL" key new "$tmp/key" >/dev/null
    "$VEIL" deid "$SET" --out "$tmp/out" --key "$tmp/key" --verify --report "$tmp/report.json" >&2
    python3 - "$tmp/report.json" "$SET" "$SET.released" <<'EOF'
import json, os, sys
report, base, dst = sys.argv[1:]
n = 0
for f in json.load(open(report))["files"]:
    if f["status"] == "written":
        rel = os.path.relpath(f["input"], base)
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        os.link(f["input"], os.path.join(dst, rel))
        n += 1
print(f"[bench-gateway] {n} files released by Veil are the benchmark set", file=sys.stderr)
EOF
    rm -rf "$tmp"
    touch "$SET.done"
fi

python3 scripts/bench_gateway.py "$VEIL" "$SET.released" "$WORK/gateway-run" \
    --rounds "$GW_ROUNDS" --stable "$GW_STABLE" --report "$BENCH_REPORT" >"$WORK/gateway.json"
log "results: $WORK/gateway.json; section \"veil serve (gateway)\" of $BENCH_REPORT"
