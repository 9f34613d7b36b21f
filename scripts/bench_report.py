"""Writing one section of docs/benchmarks.md (shared by the bench scripts).

Each bench script owns one `## ` section; a run replaces that section in
place (or appends it), leaving the others as the last run of their script
wrote them, so the page is one document with each number's provenance.
"""
import os
import re


def replace_section(path, heading, section):
    """Replaces the `## {heading}` section of `path` with `section` (which
    starts with that heading line), or appends it."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    m = re.search(r"^## " + re.escape(heading) + r"[ \t]*$", text, flags=re.M)
    if m:
        nxt = re.search(r"^## ", text[m.end():], flags=re.M)
        end = m.end() + nxt.start() if nxt else len(text)
        text = text[:m.start()] + section.rstrip("\n") + "\n\n" + text[end:].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")
