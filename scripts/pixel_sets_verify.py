"""Which images of a burned-in text set (veil-plant text-set) does `veil
verify --pixels` flag? Prints each missed image with its planted lines
(kind, height, contrast, placement; never the text), then the count.

    python3 pixel_sets_verify.py MANIFEST.json VERIFY.json
"""
import collections
import json
import sys

manifest, verify = sys.argv[1], sys.argv[2]
m = json.load(open(manifest))
r = json.load(open(verify))
flagged = collections.Counter()
for f in r["findings"]:
    if f["place"] in ("pixels", "overlay"):
        flagged[f["file"].rsplit("/", 1)[-1]] += 1
n = missed = 0
for f in m["files"]:
    if not f["lines"]:
        continue
    n += 1
    if flagged[f["file"]]:
        continue
    missed += 1
    lines = [(l["kind"], l["px_height"], l["contrast"], l["placement"]) for l in f["lines"]]
    print("missed", f["file"], f["ts_name"], f["pi"], f"{f['frames']} frame(s)", lines)
print(f"verify --pixels flagged {n - missed}/{n} images with burned-in text")
