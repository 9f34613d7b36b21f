#!/usr/bin/env bash
# Patient portal under load (issue 19): a site whose ledger holds
# PORTAL_PATIENTS x PORTAL_PER release/refusal entries (10,000 by
# default), PORTAL_CLIENTS patients (200) invited with `veil portal
# invite`, `veil ledger checkpoint`, then `veil serve` with [portal] and
# scripts/bench_portal.py: every patient accepts the invitation (the
# form), then browses for PORTAL_SECONDS (list page, 3 entry pages, the
# lookups page, over and over). Reports p50/p95/p99 page time per page,
# requests/s and the peak RSS of `veil serve`; replaces the section
# "Patient portal under load" of docs/benchmarks.md.
#
#   PORTAL_PATIENTS=1000 PORTAL_PER=10   ledger entries (patients x each)
#   PORTAL_CLIENTS=200                   concurrent patients
#   PORTAL_SECONDS=60                    browsing time
#   PORTAL_PROFILE=release               or debug (a debug `veil`: slower,
#                                        and said so in the report)
#
# The entries are appended with the Site API (crates/veil-portal/examples/
# bench_seed.rs, the gateway's `log_decisions` path: real signed ledger
# rows), not by `veil release` of 10,000 corpus files: the portal reads
# only the ledger, and de-identifying that many studies would take longer
# than the benchmark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PATIENTS=${PORTAL_PATIENTS:-1000}
PER=${PORTAL_PER:-10}
CLIENTS=${PORTAL_CLIENTS:-200}
SECONDS_=${PORTAL_SECONDS:-60}
PROFILE=${PORTAL_PROFILE:-release}
log() { echo "[bench-portal] $*" >&2; }

# two builds: with both -p, `--example` selects only that example, and
# the `veil` binary would not be rebuilt (a stale `veil` benchmarked)
if [ "$PROFILE" = release ]; then
    cargo build --release -p veil-cli
    cargo build --release -p veil-portal --example bench_seed
else
    cargo build -p veil-cli
    cargo build -p veil-portal --example bench_seed
fi
VEIL=$ROOT/target/$PROFILE/veil
SEED=$ROOT/target/$PROFILE/examples/bench_seed

WORK=$(mktemp -d "${TMPDIR:-/tmp}/veil-bench-portal.XXXXXX")
HOME_=$WORK/home
trap 'kill "${SERVE_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
v() { env -u VEIL_TEST_PG_URL VEIL_HOME="$HOME_" USER=bench "$VEIL" "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "site in $WORK"
v init >/dev/null
printf 'name = "t"\nversion = "1"\n' >"$WORK/r.toml"
v recipient add acme --category ai-vendor --purpose ai-training \
    --recipe "$WORK/r.toml" --retention-days 30 >/dev/null
v consent default ai-training opt-out >/dev/null
t=$(date +%s)
"$SEED" "$HOME_" "$PATIENTS" "$PER"
log "seeded $((PATIENTS * PER)) entries in $(( $(date +%s) - t )) s"

PORT=$(free_port)
mkdir -p "$WORK/dest"
cat >"$HOME_/veil.toml" <<TOML
[dicom]
port = $(free_port)
bind = "127.0.0.1"
allowed_calling_aes = ["PACS"]

[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme"
purpose = "ai-training"
destination = "file://$WORK/dest"

[portal]
listen = "127.0.0.1:$PORT"
public_url = "http://127.0.0.1:$PORT"
TOML
t=$(date +%s)
: >"$WORK/links"
for i in $(seq 0 $((CLIENTS - 1))); do
    v portal invite --patient-id "$(printf 'BENCH-%05d' "$i")" \
        --config "$HOME_/veil.toml" | tail -n1 >>"$WORK/links"
done
log "$CLIENTS invitations in $(( $(date +%s) - t )) s"
v ledger checkpoint >/dev/null
ENTRIES=$(v ledger verify 2>/dev/null | grep -oE '[0-9]+ entries' | head -1 || true)

env -u VEIL_TEST_PG_URL VEIL_HOME="$HOME_" USER=bench "$VEIL" serve \
    --config "$HOME_/veil.toml" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 200); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done

CPUS=$(nproc)
SCALE="ledger of $((PATIENTS * PER)) release/refusal entries for $PATIENTS patients \
plus $CLIENTS invitation entries and the site's setup (${ENTRIES:-size not read}), \
SQLite, \`veil serve\` $PROFILE build, $CPUS CPU cores shared by server and clients"
python3 scripts/bench_portal.py "http://127.0.0.1:$PORT" "$WORK/links" "$SERVE_PID" \
    "$SECONDS_" "$SCALE"
