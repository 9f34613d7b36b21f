#!/usr/bin/env bash
# Regenerates crates/veil-verify/data/names/{first,last}.txt from the pinned
# PyPI package `names` 0.3.0 (MIT; its lists are the US Census Bureau's 1990
# name frequency files, public domain). First names: every male and female
# entry; surnames: the 20,000 most frequent (about 90% of the population).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHA=726e46254f2ed03f1ffb5d941dae3bc67c35123941c29becd02d48d0caa2a671
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download names==0.3.0 --no-deps --no-binary :all: -q -d "$tmp"
echo "$SHA  $tmp/names-0.3.0.tar.gz" | sha256sum -c --quiet
tar xzf "$tmp/names-0.3.0.tar.gz" -C "$tmp"
d=crates/veil-verify/data/names
cat "$tmp"/names-0.3.0/names/dist.male.first "$tmp"/names-0.3.0/names/dist.female.first \
    | awk '{print $1}' | sort -u > "$d/first.txt"
head -n 20000 "$tmp"/names-0.3.0/names/dist.all.last | awk '{print $1}' > "$d/last.txt"
wc -l "$d"/first.txt "$d"/last.txt
