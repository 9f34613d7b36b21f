"""Compares pydicom/deid and Veil on the same files, attribute by attribute.

Run by scripts/deid-peer.sh with the venv's python (deid and pydicom
pinned there). deid runs its own default recipe (deid/data/deid.dicom, the
file Veil pins as rules/sources/pydicom_deid_deid.dicom) with
remove_private=True; Veil's outputs come from `veil deid` with the recipe
`veil recipe import --from deid` made from that file. Every difference is
given a reason from Veil's own account of the attribute (`veil explain
--json` on the input: the rule that decided it); a difference whose reason
is not one of the known ones makes the script fail, so a change in either
tool shows up as a new, unexplained row.

Prints a Markdown table (one row per attribute, kind of difference and
reason, with how often it occurs) on stdout; exit 1 when a row is
unexplained.
"""

import argparse
import collections
import json
import logging
import subprocess
import sys
import warnings

import pydicom
from deid.config import DeidRecipe
from deid.dicom import replace_identifiers

MARKERS = {(0x0012, 0x0062), (0x0012, 0x0063), (0x0012, 0x0064), (0x0028, 0x0303)}
OWN_UIDS = {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"}

REASONS = {
    "marker": "Veil writes PatientIdentityRemoved, DeidentificationMethod (+ code "
    "sequence) and LongitudinalTemporalInformationModified itself; deid's recipe "
    "adds only PatientIdentityRemoved",
    "own-uid": "deid's `REMOVE contains:UID` strips the object's own UIDs; Veil keeps "
    "the object valid: instance UIDs remapped to keyed 2.25 UIDs, the SOP Class kept",
    "not-named": "the deid recipe does not name it (or the sequence it sits in), so "
    "deid keeps it; Veil applies PS3.15 Table E.1-1 to it (the action column: removed, "
    "emptied, a dummy where the IOD requires a value, text of a D sequence replaced)",
    "uid-remap": "a UID the deid recipe's patterns do not reach; Veil remaps every "
    "instance UID (keyed 2.25), deid keeps it",
    "pattern": "the imported rule matches the keyword; deid also matches the "
    "attribute's name and its tag, and the nested names of sequence items",
    "variable": "deid's `ADD ... var:...` needs a value supplied at run time; "
    "without it deid leaves the attribute as the other lines made it, and the "
    "import lists the line as not expressed",
    "private": "private attributes: deid removes all of them (remove_private=True); "
    "Veil removes those not on a safe list",
    "overlay": "overlay planes and curves (60xx, 50xx): the deid recipe does not name "
    "them, so deid keeps them; Veil removes them whole (they can hold text or drawn "
    "annotations)",
    "net": "Veil's safety net found one of the object's own identifying values (or "
    "a PHI pattern) in a value the rules kept, and cleaned it (a coded value gets a "
    "dummy)",
    "group-length": "group lengths: Veil does not write them (retired), pydicom "
    "keeps what it read",
}


def flatten(ds, prefix="", out=None):
    """path -> (keyword, tag, VR, value text); paths as `veil explain` writes them."""
    out = {} if out is None else out
    for el in ds:
        tag = (el.tag.group, el.tag.element)
        path = f"{prefix}({el.tag.group:04X},{el.tag.element:04X})"
        if el.VR == "SQ":
            out[path] = (el.keyword, tag, "SQ", f"<{len(el.value)} items>")
            for i, item in enumerate(el.value):
                flatten(item, f"{path}[{i}]/", out)
        else:
            v = el.value
            if isinstance(v, bytes):
                text = v.hex() if len(v) <= 64 else f"<{len(v)} bytes {hash(v)}>"
            elif isinstance(v, pydicom.multival.MultiValue):
                text = "\\".join(str(x) for x in v)
            else:
                text = "" if v is None else str(v)
            out[path] = (el.keyword, tag, el.VR, text.strip().rstrip("\x00"))
    return out


def lookup(decisions, path):
    """Veil's decision for `path`, else for the nearest enclosing sequence
    that Veil decided on (an item of a removed sequence has no decision of
    its own); with the action as the table shows it."""
    p = path
    while True:
        if p in decisions:
            d = decisions[p]
            return d, d[0] if p == path else f"{d[0]} (the sequence it is in)"
        if "/" not in p:
            return None, "(written after the rules)"
        p = p.rsplit("/", 1)[0].rsplit("[", 1)[0]


def action_name(a):
    """`veil explain`'s action: a name, or {"pseudonym": "patient-id"}."""
    if isinstance(a, dict):
        return ",".join(f"{k} {v}" for k, v in a.items())
    return str(a)


def reason(kw, tag, top, decision):
    """The reason for one difference, from Veil's decision on the input
    (`top`: the tag at the top level of the path)."""
    action, why = decision or ("", "")
    if tag in MARKERS or top in MARKERS:
        return "marker"
    if tag[1] == 0:
        return "group-length"
    if tag[0] % 2 == 1:
        return "private"
    if tag[0] & 0xFF00 in (0x6000, 0x5000) and tag[0] <= 0x60FF:
        return "overlay"
    if kw in OWN_UIDS:
        return "own-uid"
    if kw in ("PatientID", "AccessionNumber", "StudyDate", "PatientBirthDate"):
        if "override" in why:
            return "variable"
    if "override" in why:
        return "pattern"
    if "safety net" in why or action == "clean":
        return "net"
    if why.startswith("E.1-1") or why.startswith("inside a"):
        return "not-named"
    if action == "uid":
        return "uid-remap"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--review", required=True)
    a = ap.parse_args()
    # pydicom and deid warn with the inputs' values (invalid UIDs, ...):
    # this comparison prints attribute names and counts only
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    report = json.load(open(a.report))
    recipe = DeidRecipe()
    rows = collections.Counter()
    examples = {}
    files = 0
    for f in report["files"]:
        root = {"written": a.out, "review": a.review}.get(f["status"])
        if root is None:
            continue
        src = f["input"]
        try:
            d = replace_identifiers([src], deid=recipe, save=False, remove_private=True)[0]
        except Exception as e:  # deid fails on some inputs: say so, count it
            rows[("(whole file)", "deid failed", "", type(e).__name__)] += 1
            continue
        files += 1
        v = pydicom.dcmread(f"{root}/{f['output']}", force=True)
        explain = json.loads(
            subprocess.run(
                [a.veil, "explain", src, "--key", a.key, "--recipe", a.recipe, "--json"],
                check=True,
                capture_output=True,
            ).stdout
        )
        decisions = {x["path"]: (action_name(x["action"]), x["why"]) for x in explain["decisions"]}
        fd, fv = flatten(d), flatten(v)
        for path in sorted(set(fd) | set(fv)):
            a_, b_ = fd.get(path), fv.get(path)
            if a_ and b_ and a_[3] == b_[3]:
                continue
            if a_ and b_:
                kind = "value differs"
            elif a_:
                kind = "kept by deid, removed by Veil"
            else:
                kind = "kept by Veil, removed by deid"
            kw, tag = (a_ or b_)[0], (a_ or b_)[1]
            top = (int(path[1:5], 16), int(path[6:10], 16))
            # one row per attribute, wherever it sits
            name = kw or f"({tag[0]:04X},{tag[1]:04X})"
            decision, action = lookup(decisions, path)
            r = reason(kw, tag, top, decision)
            rows[(name, kind, action, r or "UNEXPLAINED")] += 1
            if r is None:
                examples.setdefault((name, kind), decisions.get(path))
    print(f"{files} files compared.\n")
    print("| attribute | difference | Veil's action | occurrences | reason |")
    print("|---|---|---|---|---|")
    unexplained = 0
    for (name, kind, action, r), n in sorted(rows.items()):
        if r == "UNEXPLAINED":
            unexplained += 1
            text = f"UNEXPLAINED (Veil: {examples.get((name, kind))})"
        else:
            text = f"`{r}`"
        print(f"| {name} | {kind} | {action} | {n} | {text} |")
    print()
    print("Reasons:")
    used = {r for (_, _, _, r) in rows}
    for k, t in REASONS.items():
        if k in used:
            print(f"- `{k}`: {t}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
