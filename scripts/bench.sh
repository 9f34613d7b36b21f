#!/usr/bin/env bash
# Throughput and peak-memory benchmark of `veil deid` against peer tools.
#
#   usage: scripts/bench.sh          (run from anywhere; works in the repo root)
#
# What it does, in one run on one machine, one tool after the other:
#   1. builds veil: `cargo build --release -p veil-cli` -> target/release/veil;
#   2. builds the base corpus with scripts/fetch-corpus.sh (target/corpus/base)
#      and the bench corpus with
#        python3 scripts/corpus/make_bench.py BASE OUT $BENCH_COUNT $BENCH_SEED
#      (pydicom==3.0.2 in the venv target/bench-venv; the system Python is not
#      touched). With 7000/1 this is 7,000 files, 2,998,382,830 bytes; the tree
#      hash is checked against the value in scripts/corpus/README.md;
#   3. installs the peers (pinned):
#        dicognito==0.19.0 and dcmanon==0.3.1 from PyPI into target/bench-venv;
#        the dcmanon *command-line tool* is not in the PyPI wheel (that is only a
#        Python module, `dcmanon.Anonymizer().anonymize(path) -> bytes`); it is
#        the `dcmanon` binary of the crates.io crate dicom-anonymization 0.3.1:
#        `cargo install --locked --root target/bench-peers dicom-anonymization
#        --version 0.3.1` (takes ~3 min to compile once);
#   4. times each tool with `/usr/bin/time -v` (wall time, peak RSS), with a
#      `timeout $BENCH_TIMEOUT` on each, and a final `sync` inside the timed
#      command so every tool is charged for getting its output onto disk:
#        cp          cp -r BENCH OUT
#        veil        target/release/veil deid BENCH --out OUT --key KEY --jobs $BENCH_JOBS
#                    (KEY made by `target/release/veil key new KEY`)
#        dicognito   target/bench-venv/bin/python -m dicognito --output-directory OUT --quiet BENCH
#                    (single process; dicognito has no parallel mode. Its
#                    `dicognito` console script is broken in 0.19.0 -- main()
#                    needs an argument -- so `python -m dicognito` is used.
#                    It writes OUT/<new SOP Instance UID>.dcm, flat, and aborts
#                    the whole run on the first file it cannot handle.)
#        dcmanon     RAYON_NUM_THREADS=$BENCH_JOBS target/bench-peers/bin/dcmanon anonymize -i BENCH -o OUT -r --continue
#                    (Rust, rayon; OUT must exist; writes OUT/<study>/<series>/<sop>.dcm;
#                    --continue only skips unreadable files, any other error aborts the run)
#        dcmanon-py  target/bench-venv/bin/python target/bench/dcmanon_py.py BENCH OUT $BENCH_JOBS
#                    (the PyPI wheel driven by a $BENCH_JOBS-process pool, one
#                    Anonymizer per process; it counts failures and goes on)
#      and counts the files each tool wrote (a peer that fails part-way is
#      reported with the number of outputs it produced; the run continues);
#   5. peak-memory check ("mem"): veil deid --jobs 1 on a directory holding only
#      the largest bench-eligible base file (RGB_CINE.dcm, 104 MB US cine), and
#      on one holding only a small CT slice (CT_small.dcm, 39 kB);
#   6. writes the `## veil deid` section of docs/benchmarks.md (replaced in
#      place; the rest of the file is kept): machine info, results table with
#      files/s, MB/s (input bytes / wall seconds, MB = 10^6 bytes), peak RSS and
#      the ratio of veil to each peer. Raw logs stay in target/bench/logs/.
#
# Caches: before each timed tool the previous output is deleted and `sync` is
# run; then, if `echo 3 > /proc/sys/vm/drop_caches` is permitted (root, not in
# a restricted container), caches are dropped ("cold": every tool reads the
# corpus from disk); otherwise the corpus is read once with cat ("warm": every
# tool reads it from the page cache; needs RAM > corpus size). The report says
# which mode was used; all tools of a run get the same mode.
#
# Environment:
#   BENCH_COUNT=7000   number of bench files (e.g. 200 for a quick run)
#   BENCH_SEED=1       make_bench.py seed
#   BENCH_JOBS=2       worker threads/processes for veil, dcmanon, dcmanon-py
#   BENCH_ONLY=cp,veil,dicognito,dcmanon,dcmanon-py,mem   subset to run
#   BENCH_TIMEOUT=3600 seconds per tool
#   BENCH_CACHE=auto   cold | warm | auto (cold when drop_caches is permitted)
#   BENCH_SINK=disk    disk: outputs under target/bench (written to disk, each
#                      tool charged a final sync); tmpfs: outputs under
#                      /dev/shm, which with BENCH_CACHE=warm measures the
#                      processing itself rather than the disk
#   BENCH_SECTION="veil deid"   heading of the report section written
#   BENCH_REPORT=docs/benchmarks.md   where the section is written
#   BENCH_KEEP_OUTPUT=0  1 keeps target/bench/out-<tool> for inspection
#   CORPUS_CACHE       download cache for the base corpus (see fetch-corpus.sh)
#
# Needs: Debian/Ubuntu (apt), python3, cargo; as root it installs the missing
# Debian packages `time` and `python3-venv` itself. Disk: ~3 GB for the bench
# corpus plus ~3 GB for one tool's output at a time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BENCH_COUNT=${BENCH_COUNT:-7000}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_JOBS=${BENCH_JOBS:-2}
BENCH_ONLY=${BENCH_ONLY:-cp,veil,dicognito,dcmanon,dcmanon-py,mem}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}
BENCH_REPORT=${BENCH_REPORT:-docs/benchmarks.md}
BENCH_KEEP_OUTPUT=${BENCH_KEEP_OUTPUT:-0}
BENCH_CACHE=${BENCH_CACHE:-auto}
BENCH_SINK=${BENCH_SINK:-disk}
BENCH_SECTION=${BENCH_SECTION:-veil deid}

PYDICOM_VERSION=3.0.2
DICOGNITO_VERSION=0.19.0
DCMANON_PY_VERSION=0.3.1
DCMANON_CRATE=dicom-anonymization
DCMANON_CRATE_VERSION=0.3.1
# tree hash of make_bench.py BASE OUT 7000 1 (scripts/corpus/README.md)
BENCH_7000_1_SHA=47ea7e47d6226897ec36e904f4a24e12c2f73f180838dca821af6c0db39fb3fc

WORK=$ROOT/target/bench
case "$BENCH_SINK" in
    disk) OUTS=$WORK ;;
    tmpfs) OUTS=/dev/shm/veil-bench ;;
    *) echo "BENCH_SINK must be disk or tmpfs" >&2; exit 2 ;;
esac
VENV=$ROOT/target/bench-venv
PEERS=$ROOT/target/bench-peers
BASE=$ROOT/target/corpus/base
BENCH=$WORK/corpus-$BENCH_COUNT-s$BENCH_SEED
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
VEIL=$ROOT/target/release/veil
KEY=$WORK/veil.key

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 1; }

ALL_ITEMS="cp veil dicognito dcmanon dcmanon-py mem"
for item in ${BENCH_ONLY//,/ }; do
    case " $ALL_ITEMS " in *" $item "*) ;; *) die "unknown BENCH_ONLY item '$item' (known: ${ALL_ITEMS// /,})" ;; esac
done
selected() { case ",$BENCH_ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
apt_updated=0
apt_install() {
    is_root || die "missing Debian package(s) $*; install them (sudo apt-get install $*) and rerun"
    if [ "$apt_updated" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------- prerequisites
[ -x /usr/bin/time ] || apt_install time
command -v timeout >/dev/null || die "timeout (coreutils) not found"
command -v python3 >/dev/null || apt_install python3

mkdir -p "$WORK" "$LOGS"

# ---------------------------------------------------------------- veil
if selected veil || selected mem; then
    log "cargo build --release -p veil-cli"
    cargo build --release -p veil-cli
    [ -x "$VEIL" ] || die "$VEIL not found after the build"
fi

# ---------------------------------------------------------------- corpora
"$ROOT/scripts/fetch-corpus.sh" "$BASE"

if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
pkgs=("pydicom==$PYDICOM_VERSION")
selected dicognito && pkgs+=("dicognito==$DICOGNITO_VERSION")
selected dcmanon-py && pkgs+=("dcmanon==$DCMANON_PY_VERSION")
log "pip install ${pkgs[*]} (into $VENV)"
"${PIP[@]}" "${pkgs[@]}"

if [ -f "$BENCH.done" ] && [ -d "$BENCH" ] && [ "$(find "$BENCH" -type f | wc -l)" -eq "$BENCH_COUNT" ]; then
    log "reusing $BENCH"
else
    rm -rf "$BENCH" "$BENCH.done"
    log "make_bench.py $BASE $BENCH $BENCH_COUNT $BENCH_SEED"
    "$VENV/bin/python" scripts/corpus/make_bench.py "$BASE" "$BENCH" "$BENCH_COUNT" "$BENCH_SEED"
    tree_sha=$(cd "$BENCH" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    if [ "$BENCH_COUNT" = 7000 ] && [ "$BENCH_SEED" = 1 ] && [ "$tree_sha" != "$BENCH_7000_1_SHA" ]; then
        log "warning: bench tree hash $tree_sha != $BENCH_7000_1_SHA (published corpus); results are not comparable"
    fi
    echo "$tree_sha" >"$BENCH.done"
fi
IN_FILES=$(find "$BENCH" -type f | wc -l)
IN_BYTES=$(find "$BENCH" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
log "bench corpus: $IN_FILES files, $IN_BYTES bytes"

# ---------------------------------------------------------------- peers
DCMANON=$PEERS/bin/dcmanon
dcmanon_status=ok
if selected dcmanon; then
    if ! { [ -x "$DCMANON" ] && "$DCMANON" --version 2>/dev/null | grep -q " $DCMANON_CRATE_VERSION\$"; }; then
        log "cargo install $DCMANON_CRATE $DCMANON_CRATE_VERSION (dcmanon CLI)"
        if ! cargo install --locked --root "$PEERS" "$DCMANON_CRATE" --version "$DCMANON_CRATE_VERSION" \
            >"$LOGS/dcmanon-install.log" 2>&1; then
            dcmanon_status="install failed (see target/bench/logs/dcmanon-install.log)"
            log "warning: dcmanon $dcmanon_status; skipping it"
        fi
    fi
fi

DCMANON_PY=$WORK/dcmanon_py.py
cat >"$DCMANON_PY" <<'PYEOF'
"""Drive the PyPI `dcmanon` module over a directory tree (usage: IN OUT JOBS).

Output mirrors the input tree. One Anonymizer per worker process. Files that
fail are counted and reported, the run goes on; exit status 1 if any failed.
"""
import os
import sys
from multiprocessing import Pool

from dcmanon import Anonymizer

_anon = None


def _init():
    global _anon
    _anon = Anonymizer()


def _one(job):
    src, dst = job
    try:
        data = _anon.anonymize(src)
    except Exception as e:  # noqa: BLE001
        return f"{src}: {e}"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "wb") as f:
        f.write(data)
    return None


def main():
    src_root, dst_root, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    work = []
    for root, _dirs, files in os.walk(src_root):
        for fn in files:
            src = os.path.join(root, fn)
            work.append((src, os.path.join(dst_root, os.path.relpath(src, src_root))))
    failed = 0
    with Pool(jobs, initializer=_init) as pool:
        for err in pool.imap_unordered(_one, work, chunksize=8):
            if err:
                failed += 1
                if failed <= 20:
                    print("error:", err, file=sys.stderr)
    print(f"{len(work) - failed} written, {failed} failed", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
PYEOF

# ---------------------------------------------------------------- timing
if [ "$BENCH_CACHE" != warm ] && sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    CACHE_MODE=cold
    CACHE_NOTE="cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before each tool (the corpus is read from disk)"
else
    [ "$BENCH_CACHE" = cold ] && die "BENCH_CACHE=cold but drop_caches is not permitted"
    CACHE_MODE=warm
    CACHE_NOTE="warm: BENCH_CACHE=$BENCH_CACHE, so \`sync\` and a full read of the corpus (cat > /dev/null) before each tool (the corpus is read from the page cache)"
fi
log "cache mode: $CACHE_MODE, outputs on $BENCH_SINK ($OUTS)"
CACHE_NOTE="$CACHE_NOTE; outputs written to $BENCH_SINK ($OUTS)"
mkdir -p "$OUTS"

prepare() {  # prepare DIR...: clear outputs, flush, then drop or warm caches
    local d
    for d in "$@"; do rm -rf "$d" "$d.review"; done
    sync
    if [ "$CACHE_MODE" = cold ]; then
        echo 3 >/proc/sys/vm/drop_caches
    else
        find "$BENCH" -type f -print0 | xargs -0 cat >/dev/null
    fi
}

# parse_time LOG -> "WALL_SECONDS PEAK_RSS_KB"
parse_time() {
    awk '
        /Elapsed \(wall clock\) time/ {
            v = $NF; n = split(v, p, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + p[i]
            wall = s
        }
        /Maximum resident set size/ { rss = $NF }
        END { printf "%.2f %d\n", wall, rss }
    ' "$1"
}

printf 'tool\trc\twall_s\tpeak_rss_kb\toutputs\tcommand\n' >"$RESULTS"

# timed NAME OUTDIR MKDIR(0|1) CMD... : time one tool on the bench corpus
timed() {
    local name=$1 out=$2 mk=$3 rc wall rss n
    shift 3
    prepare "$out"
    [ "$mk" = 1 ] && mkdir -p "$out"
    log "timing $name: $*"
    # shellcheck disable=SC2016  # $0/$@ are expanded by the inner bash
    if /usr/bin/time -v -o "$LOGS/$name.time" \
        bash -c 'timeout "$0" "$@"; rc=$?; sync; exit $rc' "$BENCH_TIMEOUT" "$@" \
        >"$LOGS/$name.out" 2>"$LOGS/$name.err"; then
        rc=0
    else
        rc=$?
    fi
    read -r wall rss < <(parse_time "$LOGS/$name.time")
    # veil writes objects that need a person's review beside OUT (OUT.review)
    n=$({ find "$out" "$out.review" -type f 2>/dev/null || true; } | wc -l)
    log "$name: rc=$rc wall=${wall}s peak_rss=${rss}kB outputs=$n/$IN_FILES"
    [ "$rc" = 0 ] || log "  (see $LOGS/$name.err)"
    local cmd="$*"
    cmd=${cmd//$ROOT\//}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$wall" "$rss" "$n" "$cmd" >>"$RESULTS"
    [ "$BENCH_KEEP_OUTPUT" = 1 ] || rm -rf "$out" "$out.review"
}

if selected veil || selected mem; then
    rm -f "$KEY"
    "$VEIL" key new "$KEY"
fi

selected cp && timed cp "$OUTS/out-cp" 0 cp -r "$BENCH" "$OUTS/out-cp"
selected veil && timed veil "$OUTS/out-veil" 1 \
    "$VEIL" deid "$BENCH" --out "$OUTS/out-veil" --key "$KEY" --jobs "$BENCH_JOBS"
selected dicognito && timed dicognito "$OUTS/out-dicognito" 0 \
    "$VENV/bin/python" -m dicognito --output-directory "$OUTS/out-dicognito" --quiet "$BENCH"
if selected dcmanon; then
    if [ "$dcmanon_status" = ok ]; then
        timed dcmanon "$OUTS/out-dcmanon" 1 \
            env RAYON_NUM_THREADS="$BENCH_JOBS" "$DCMANON" anonymize -i "$BENCH" -o "$OUTS/out-dcmanon" -r --continue
    else
        printf 'dcmanon\t%s\t\t\t0\t%s\n' "-" "$dcmanon_status" >>"$RESULTS"
    fi
fi
selected dcmanon-py && timed dcmanon-py "$OUTS/out-dcmanon-py" 0 \
    "$VENV/bin/python" "$DCMANON_PY" "$BENCH" "$OUTS/out-dcmanon-py" "$BENCH_JOBS"

# ---------------------------------------------------------------- memory check
MEM_RESULTS=$WORK/mem.tsv
printf 'case\tfile\tbytes\trc\twall_s\tpeak_rss_kb\n' >"$MEM_RESULTS"
if selected mem; then
    huge=$("$VENV/bin/python" -c 'import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["bench_eligible"] == "yes"]
print(max(rows, key=lambda r: int(r["size_bytes"]))["file"])' scripts/corpus/inventory.csv)
    small=pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm
    for pair in "huge:$huge" "small:$small"; do
        c=${pair%%:*}
        f=${pair#*:}
        d=$WORK/mem-$c
        rm -rf "$d"
        mkdir -p "$d/in" "$d/out"
        cp "$BASE/$f" "$d/in/"
        sync
        if /usr/bin/time -v -o "$LOGS/mem-$c.time" \
            timeout "$BENCH_TIMEOUT" "$VEIL" deid "$d/in" --out "$d/out" --key "$KEY" --jobs 1 \
            >"$LOGS/mem-$c.out" 2>"$LOGS/mem-$c.err"; then rc=0; else rc=$?; fi
        read -r wall rss < <(parse_time "$LOGS/mem-$c.time")
        log "mem $c ($f): rc=$rc peak_rss=${rss}kB"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$f" "$(stat -c %s "$BASE/$f")" "$rc" "$wall" "$rss" >>"$MEM_RESULTS"
        rm -rf "$d"
    done
fi

# ---------------------------------------------------------------- report
ver() { "$@" 2>/dev/null | head -1 || true; }
export ROOT BENCH_SECTION BENCH_REPORT RESULTS MEM_RESULTS IN_FILES IN_BYTES CACHE_NOTE BENCH_JOBS BENCH_COUNT BENCH_SEED BENCH_ONLY BENCH_TIMEOUT
export R_NPROC R_CPU R_MEM R_DATE R_KERNEL R_COMMIT R_VEIL R_DICOGNITO R_DCMANON R_DCMANON_PY R_CP R_TREE
R_NPROC=$(nproc)
R_CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
R_MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
R_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
R_KERNEL=$(uname -sr)
if R_COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD -- 2>/dev/null || R_COMMIT="$R_COMMIT + uncommitted changes"
else
    R_COMMIT="none"
fi
R_VEIL=$( [ -x "$VEIL" ] && ver "$VEIL" --version || echo "-")
pyver() { "$VENV/bin/python" -c 'import sys; from importlib.metadata import version; print(sys.argv[1], version(sys.argv[1]))' "$1" 2>/dev/null || true; }
R_DICOGNITO=$(pyver dicognito)
R_DCMANON=$( [ -x "$DCMANON" ] && ver "$DCMANON" --version || echo "-")
R_DCMANON_PY=$(pyver dcmanon)
R_CP=$(ver cp --version)
R_TREE=$(cat "$BENCH.done")

"$VENV/bin/python" - <<'PYEOF'
import csv, os, re, sys

E = os.environ
in_files, in_bytes = int(E["IN_FILES"]), int(E["IN_BYTES"])
rows = list(csv.DictReader(open(E["RESULTS"]), delimiter="\t"))
mem = list(csv.DictReader(open(E["MEM_RESULTS"]), delimiter="\t"))
veil = next((r for r in rows if r["tool"] == "veil" and r["rc"] == "0" and r["wall_s"]), None)

def mib(kb):
    return f"{int(kb) / 1024:.0f}" if kb else "-"

out = ["## " + E["BENCH_SECTION"], ""]
out.append(f"Generated by `scripts/bench.sh` on {E['R_DATE']} (BENCH_COUNT={E['BENCH_COUNT']}, "
           f"BENCH_SEED={E['BENCH_SEED']}, BENCH_JOBS={E['BENCH_JOBS']}, BENCH_ONLY={E['BENCH_ONLY']}).")
out.append("")
out.append(f"* Machine: {E['R_NPROC']} CPUs (`nproc`), {E['R_CPU']}, {E['R_MEM']} RAM, {E['R_KERNEL']}")
out.append(f"* Corpus: {in_files} files, {in_bytes:,} bytes (`make_bench.py target/corpus/base OUT "
           f"{E['BENCH_COUNT']} {E['BENCH_SEED']}`, tree sha256 `{E['R_TREE'][:16]}…`)")
out.append(f"* Caches: {E['CACHE_NOTE']}. Each timed command ends with `sync`; timeout {E['BENCH_TIMEOUT']} s per tool.")
out.append(f"* Versions: veil {E['R_VEIL'] or '-'} (commit {E['R_COMMIT']}); {E['R_DICOGNITO'] or 'dicognito -'}; "
           f"dcmanon CLI: {E['R_DCMANON'] or '-'}; PyPI: {E['R_DCMANON_PY'] or 'dcmanon -'}; {E['R_CP']}")
out.append("* Wall time and peak RSS from `/usr/bin/time -v` (peak RSS is that of the largest single process). "
           "MB = 10^6 bytes of input; files/s and MB/s use input files/bytes and are only given for complete runs. "
           "*veil ×* = peer wall time / veil wall time (above 1: veil is faster).")
out.append("")
out.append("| tool | exit | outputs | wall s | files/s | MB/s | peak RSS MiB | veil × |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    ok = r["rc"] == "0" and r["wall_s"] and int(r["outputs"] or 0) == in_files
    wall = float(r["wall_s"]) if r["wall_s"] else None
    fps = f"{in_files / wall:.1f}" if ok and wall else "-"
    mbs = f"{in_bytes / 1e6 / wall:.1f}" if ok and wall else "-"
    if r["tool"] == "veil":
        ratio = "1.00" if ok else "-"
    else:
        ratio = f"{wall / float(veil['wall_s']):.2f}" if ok and veil and float(veil["wall_s"]) > 0 else "-"
    rc = {"124": "124 (timeout)"}.get(r["rc"], r["rc"])
    outs = f"{r['outputs']}/{in_files}"
    out.append(f"| {r['tool']} | {rc} | {outs} | {r['wall_s'] or '-'} | {fps} | {mbs} | {mib(r['peak_rss_kb'])} | {ratio} |")
out.append("")
out.append("Commands (each output directory starts empty or absent):")
out.append("")
for r in rows:
    out.append(f"* {r['tool']}: `{r['command']}`")
out.append("")
if mem:
    out.append("### Peak memory vs file size")
    out.append("")
    out.append("`veil deid DIR --out OUT --key KEY --jobs 1` on a directory holding a single file:")
    out.append("")
    out.append("| file | bytes | exit | wall s | peak RSS MiB |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for m in mem:
        name = m["file"].split("__")[-1]
        out.append(f"| {m['case']}: {name} | {int(m['bytes']):,} | {m['rc']} | {m['wall_s']} | {mib(m['peak_rss_kb'])} |")
    out.append("")
section = "\n".join(out)

path = E["BENCH_REPORT"]
sys.path.insert(0, os.path.join(E["ROOT"], "scripts"))
from bench_report import replace_section
replace_section(path, E["BENCH_SECTION"], section)
print(f"[bench] wrote {path}")
PYEOF
