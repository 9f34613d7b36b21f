#!/usr/bin/env bash
# Issue 20's benchmarks, in one run on one machine, as ratios:
#   spark     python -m veil.spark --master local[$JOBS] against
#             veil deid --jobs $JOBS on the bench corpus (make_bench.py
#             $COUNT $SEED; 7,000 files by default): the engine's overhead;
#   python    Policy.deid_bytes in a Python loop (one thread) against
#             veil deid --jobs 1, per file, on the first $PY_FILES files;
#   s3        veil deid with input and OUT in S3 (SeaweedFS on loopback,
#             scripts/seaweedfs.sh) against local disk, on the first
#             $S3_FILES files.
# Release builds (target/release/veil, the release wheel). Each leg runs
# once, with a fresh OUT; wall time includes a final sync. Replaces the
# section "Spark, Python and S3" of docs/benchmarks.md.
#
#   BENCH_COUNT=7000 BENCH_SEED=1 BENCH_JOBS=2 PY_FILES=500 S3_FILES=1000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
COUNT=${BENCH_COUNT:-7000}
SEED=${BENCH_SEED:-1}
JOBS=${BENCH_JOBS:-2}
PY_FILES=${PY_FILES:-500}
S3_FILES=${S3_FILES:-1000}
WORK=$ROOT/target/bench
BENCH=${BENCH_CORPUS:-$WORK/corpus-$COUNT-s$SEED}
VENV=$ROOT/target/spark-venv
VEIL=$ROOT/target/release/veil
log() { echo "[bench-spark] $*" >&2; }

cargo build -q --release -p veil-cli
WHEEL=$(VEIL_PY_PROFILE=release scripts/build-python.sh)
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pyspark" 2>/dev/null; then
    log "creating $VENV with pyspark (PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check pyspark
fi
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
if [ ! -f "$BENCH.done" ]; then
    [ -x "$ROOT/target/bench-venv/bin/python" ] || scripts/bench.sh >/dev/null 2>&1 || true
    log "make_bench.py $COUNT $SEED"
    "$ROOT/target/bench-venv/bin/python" scripts/corpus/make_bench.py target/corpus/base "$BENCH" "$COUNT" "$SEED"
    touch "$BENCH.done"
fi
mkdir -p "$WORK/spark"
OUT=$WORK/spark
KEY=$OUT/k.key
# BENCH_REUSE=1 keeps the Spark leg's results of the last run (for a rerun
# of the other legs)
if [ "${BENCH_REPORT_ONLY:-0}" = 1 ]; then
    : # the section again from the last run's results (BENCH_REPORT_ONLY=1)
elif [ "${BENCH_REUSE:-0}" = 1 ] && [ -f "$OUT/spark.s" ]; then
    rm -rf "$OUT/pyin" "$OUT/cli1" "$OUT/s3in" "$OUT/local"
else
    rm -rf "${OUT:?}"/*
    "$VEIL" key new "$KEY" >/dev/null
fi
FILES=$(find "$BENCH" -type f | wc -l)
BYTES=$(du -sb "$BENCH" | cut -f1)
export OMP_THREAD_LIMIT=1

timed() { # NAME CMD...: wall seconds into $OUT/NAME.s
    local name=$1; shift
    local t0 t1
    sync
    t0=$(date +%s.%N)
    "$@" >"$OUT/$name.log" 2>&1 || { log "$name failed: $(tail -3 "$OUT/$name.log")"; return 1; }
    sync
    t1=$(date +%s.%N)
    python3 -c "print(round($t1 - $t0, 2))" >"$OUT/$name.s"
    log "$name: $(cat "$OUT/$name.s") s"
}

if [ "${BENCH_REPORT_ONLY:-0}" = 1 ]; then
    identical=$(cat "$OUT/identical"); S3_BYTES=$(du -sb "$OUT/s3in" | cut -f1)
else
# spark against veil deid, the whole corpus; the inputs read once first,
# so that neither leg pays for a cold page cache (3 GB fit in memory here)
warm() { find "$BENCH" -type f -print0 | xargs -0 cat >/dev/null; }
if [ ! -f "$OUT/spark.s" ]; then
warm
timed cli "$VEIL" -q deid "$BENCH" --out "$OUT/cli" --key "$KEY" --jobs "$JOBS"
warm
timed spark "$VENV/bin/python" -m veil.spark --master "local[$JOBS]" --key "$KEY" \
    --input "$BENCH" --out "$OUT/sparkout" --report "$OUT/report.json"
same=$( (cd "$OUT/cli" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
same2=$( (cd "$OUT/sparkout" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
[ "$same" = "$same2" ] && identical=yes || identical=no
echo "$identical" >"$OUT/identical"
fi
identical=$(cat "$OUT/identical")
log "trees identical: $identical"

# the job's fixed cost: the same job on 20 files (JVM, Python workers,
# stages), so the corpus run's time beyond it is the per-file work
mkdir -p "$OUT/tiny"
find "$BENCH" -type f | sort | sed -n 1,20p | while read -r f; do
    cp "$f" "$OUT/tiny/$(echo "$f" | sha256sum | cut -c1-16).dcm"
done
rm -rf "$OUT/tinyout" "$OUT/tinyout.review"
timed spark0 "$VENV/bin/python" -m veil.spark --master "local[$JOBS]" --key "$KEY" \
    --input "$OUT/tiny" --out "$OUT/tinyout"

# deid_bytes per file against veil deid --jobs 1
mkdir -p "$OUT/pyin"
find "$BENCH" -type f | sort >"$OUT/all.txt"
sed -n "1,${PY_FILES}p" "$OUT/all.txt" | while read -r f; do
    cp "$f" "$OUT/pyin/$(echo "$f" | sha256sum | cut -c1-16).dcm"
done
timed cli1 "$VEIL" -q deid "$OUT/pyin" --out "$OUT/cli1" --key "$KEY" --jobs 1
timed py "$VENV/bin/python" -c "
import os, sys, veil
p = veil.Policy(veil.Key.load(sys.argv[1]))
d = sys.argv[2]
for f in sorted(os.listdir(d)):
    p.deid_bytes(open(os.path.join(d, f), 'rb').read())
" "$KEY" "$OUT/pyin"

# S3 against local disk, on a subset
# room for the subset, its outputs and a copy (64 MB volumes)
eval "$(VEIL_S3_VOLUMES=96 scripts/seaweedfs.sh start)"
trap 'scripts/seaweedfs.sh stop' EXIT
S3=s3://$VEIL_TEST_S3_BUCKET/bench-$$
mkdir -p "$OUT/s3in"
sed -n "1,${S3_FILES}p" "$OUT/all.txt" | while read -r f; do
    cp "$f" "$OUT/s3in/$(echo "$f" | sha256sum | cut -c1-16).dcm"
done
S3_BYTES=$(du -sb "$OUT/s3in" | cut -f1)
"$VENV/bin/python" -c "
import os, sys, veil
r = veil.Root(sys.argv[2])
for f in sorted(os.listdir(sys.argv[1])):
    r.write(f, open(os.path.join(sys.argv[1], f), 'rb').read())
" "$OUT/s3in" "$S3/in"
timed local "$VEIL" -q deid "$OUT/s3in" --out "$OUT/local" --key "$KEY" --jobs "$JOBS"
timed s3 "$VEIL" -q deid "$S3/in" --out "$S3/out" --key "$KEY" --jobs "$JOBS"
fi

"$VENV/bin/python" - "$OUT" "$FILES" "$BYTES" "$JOBS" "$PY_FILES" "$S3_FILES" "$S3_BYTES" "$identical" "$COUNT" "$SEED" <<'EOF'
import sys, datetime
sys.path.insert(0, "scripts")
from bench_report import replace_section
out, files, nbytes, jobs, pyn, s3n, s3b, identical, count, seed = sys.argv[1:]
files, nbytes, pyn, s3n, s3b = int(files), int(nbytes), int(pyn), int(s3n), int(s3b)
s = {k: float(open(f"{out}/{k}.s").read()) for k in ("cli", "spark", "spark0", "cli1", "py", "local", "s3")}
work = s["spark"] - s["spark0"]
per_core = files / work / int(jobs)
mb = nbytes / 1e6
row = lambda name, t, n, b: f"| {name} | {t:.1f} | {n / t:.1f} | {b / 1e6 / t:.1f} |" if b else f"| {name} | {t:.1f} | {n / t:.1f} | — |"
text = f"""## Spark, Python and S3

`scripts/bench-spark.sh` ({datetime.date.today()}): release builds, one run, 2 CPU cores, bench corpus `make_bench.py {count} {seed}` ({files} files, {mb:.0f} MB), local disk; S3 is SeaweedFS on loopback (`scripts/seaweedfs.sh`), on the same 2 cores.

| run | seconds | files/s | MB/s |
|---|---|---|---|
{row(f"`veil deid --jobs {jobs}`", s["cli"], files, nbytes)}
{row(f"`python -m veil.spark --master local[{jobs}]`", s["spark"], files, nbytes)}
{row(f"the same job, 20 files (its fixed cost)", s["spark0"], 20, 0)}
{row(f"`veil deid --jobs 1`, {pyn} files", s["cli1"], pyn, 0)}
{row(f"`Policy.deid_bytes` loop, {pyn} files", s["py"], pyn, 0)}
{row(f"`veil deid --jobs {jobs}`, local, {s3n} files", s["local"], s3n, s3b)}
{row(f"`veil deid --jobs {jobs}`, S3 in and out, {s3n} files", s["s3"], s3n, s3b)}

- Spark `local[{jobs}]` against `veil deid --jobs {jobs}`: **{s["cli"] / s["spark"]:.2f}x** the CLI's throughput, start-up included; beyond its fixed cost of {s["spark0"]:.1f} s (JVM, Python workers, stages), **{s["cli"] / work:.2f}x** ({files / work:.0f} files/s). The two OUT trees are byte-identical: {identical}.
- `deid_bytes` from Python against the CLI per file (one thread each): {1000 * s["py"] / pyn:.1f} ms against {1000 * s["cli1"] / pyn:.1f} ms, **{s["cli1"] / s["py"]:.2f}x**.
- S3 in and out against local disk: **{s["local"] / s["s3"]:.2f}x**.

Where the time goes (read with care: one run, 2 cores). `veil deid` streams:
it parses the header, writes the new one and copies the bulk data (pixels)
from the input by offset, never holding a file, and commits outputs in
groups (one `syncfs` per chunk). `deid_bytes` (and so the Spark job and
`veil deid` on S3) works on whole objects in memory, which costs little
per file now: the Python loop keeps up with the CLI's single thread.
(Until 2026-12-07 each call took 4.9 ms: pyo3 filled a `Vec<u8>` from the
`bytes` argument one element at a time; the package now borrows the
buffer and copies it once.) The Spark job's own costs are its start-up
(the fixed cost above), reading each input into a Python `bytes`,
writing each output to staging and renaming it in stage 2, with one
`syncfs` per partition instead of fsyncs per file, and the shuffle of one
row per input. On S3 every object goes through SeaweedFS's HTTP gateway
on the same two cores; `veil deid` decides in input order and then puts a
chunk's outputs in parallel (a HEAD and a PUT each).

On paper, 100 nodes: the work per input is independent (keyed
pseudonyms: no shared state), so stage 1 scales with executors until the
storage does. At this machine's Spark rate beyond start-up (about
{per_core:.0f} files/s per core), 100 nodes of 16 cores give about
{per_core * 1600:,.0f} files/s, {per_core * 1600 * mb / files / 1000:.0f} GB/s of this corpus:
far beyond what one S3 prefix serves (S3 scales by prefix, about 3,500
PUT and 5,500 GET requests/s each), so outputs should spread over
prefixes (they do: one per patient pseudonym) and the input listing
(one LIST stream on the driver, about 1,000 keys per request) becomes the
start-up cost for millions of objects. Stage 2 shuffles one small row per
input; its renames are S3 copies (a whole second write of each output),
so on S3 a direct write of unique names, with only duplicates settled
afterwards, would halve the bytes written. The ledger is not on this
path; a release on Spark (`--recipient`) appends one entry per study
from each executor, serialized by the store (PostgreSQL), which bounds a
release at the database's commit rate: one transaction per study.
"""
replace_section("docs/benchmarks.md", "Spark, Python and S3", text)
print(text)
EOF
