#!/usr/bin/env bash
# Builds every cargo-fuzz target (fuzz/) and runs each for SECONDS
# (default 60) on its seed corpus (fuzz/seeds.sh); exits non-zero when any
# target crashes (panic, abort, stack overflow, timeout, or going past the
# memory limits below). The crashing inputs are left in
# fuzz/artifacts/<target>/. Needs the nightly toolchain; installs
# cargo-fuzz when missing.
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-60}
shift || true
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
bash fuzz/seeds.sh
cd fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
# -O release, with debug assertions and overflow checks from
# fuzz/Cargo.toml's profile. No sanitizer: Veil forbids unsafe code, and
# the bounds checked here are Rust's.
build=(-O --sanitizer none)
# Memory: one input may take what Veil allows one file (the inflate cap
# and frame limit, veil_core::limits) with room to spare, no more.
opts=(-max_total_time="$secs" -rss_limit_mb=3072 -malloc_limit_mb=2560 -timeout=30 -print_final_stats=1)
failed=()
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "${build[@]}" "$t"
  echo "fuzz: $t for ${secs}s"
  rc=0
  cargo +nightly fuzz run "${build[@]}" "$t" "corpus/$t" -- "${opts[@]}" >"run-$t.log" 2>&1 || rc=$?
  grep -E '^(stat::|SUMMARY|Done|==[0-9]+== ERROR)' "run-$t.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "run-$t.log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/, logs fuzz/run-*.log)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
