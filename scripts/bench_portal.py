"""Load driver for the patient portal (scripts/bench-portal.sh): N
concurrent patients (threads, stdlib only) each accept their invitation
(the form a patient fills in), then browse until the deadline: the list
page, 3 entry pages, the lookups page, again and again. Reports p50, p95
and p99 page time per page kind, requests/s and `veil serve`'s peak RSS
(VmHWM), and writes "## Patient portal under load" into
docs/benchmarks.md.

Usage: bench_portal.py BASE_URL LINKS_FILE SERVE_PID SECONDS SCALE_TEXT
"""

import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import replace_section  # noqa: E402

PASSWORD = "a load test password"


class Client:
    """One patient's browser: a connection and a cookie jar."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = None
        self.cookies = {}

    def request(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            headers = {}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if body is not None:
                body = urllib.parse.urlencode(body)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read().decode("utf-8", "replace")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            for k, v in r.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    value = rest.split(";", 1)[0]
                    if "Max-Age=0" in v or value == "":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = value
            return r.status, data
        raise RuntimeError("unreachable")


def csrf(html):
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def accept(c, link):
    path = urllib.parse.urlsplit(link).path
    status, html = c.request("GET", path)
    assert status == 200, (status, html[:300])
    status, html = c.request("POST", path, {"csrf": csrf(html), "password": PASSWORD,
                                            "password2": PASSWORD})
    assert status in (200, 303), (status, html[:300])
    status, html = c.request("GET", "/")
    assert status == 200 and "Where my images went" in html, (status, html[:300])


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def vm(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def main():
    base, links_file, pid, seconds, scale = sys.argv[1:6]
    seconds = float(seconds)
    links = [line.strip() for line in open(links_file) if line.strip()]
    times = {"list": [], "entry": [], "lookups": []}
    errors = []
    lock = threading.Lock()
    ready = threading.Barrier(len(links) + 1)
    state = {"deadline": None}
    go = threading.Event()

    def patient(link, seed):
        rnd = random.Random(seed)
        c = Client(base)
        try:
            accept(c, link)
        except Exception as e:  # noqa: BLE001 -- counted, reported
            with lock:
                errors.append(f"invite: {e!r}"[:300])
            ready.wait()
            return
        ready.wait()
        go.wait()
        mine = {"list": [], "entry": [], "lookups": []}
        while time.monotonic() < state["deadline"]:
            t = time.monotonic()
            status, html = c.request("GET", "/")
            mine["list"].append(time.monotonic() - t)
            if status != 200:
                with lock:
                    errors.append(f"list {status}")
                continue
            positions = re.findall(r'href="/entries/(\d+)"', html)
            for p in rnd.sample(positions, min(3, len(positions))):
                t = time.monotonic()
                status, html = c.request("GET", f"/entries/{p}")
                mine["entry"].append(time.monotonic() - t)
                if status != 200 or "data-veil-proof" not in html:
                    with lock:
                        errors.append(f"entry {p} {status}")
            t = time.monotonic()
            status, _ = c.request("GET", "/lookups")
            mine["lookups"].append(time.monotonic() - t)
            if status != 200:
                with lock:
                    errors.append(f"lookups {status}")
        with lock:
            for k, v in mine.items():
                times[k].extend(v)

    threads = [threading.Thread(target=patient, args=(link, i), daemon=True)
               for i, link in enumerate(links)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    ready.wait()
    signin_s = time.monotonic() - t0
    rss_after_signin = vm(pid, "VmRSS")
    state["deadline"] = time.monotonic() + seconds
    start = time.monotonic()
    go.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(len(v) for v in times.values())
    hwm = vm(pid, "VmHWM")
    rss = vm(pid, "VmRSS")
    result = {
        "patients": len(links),
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        "signin_s": round(signin_s, 1),
        "peak_rss_mib": hwm,
        "rss_mib": rss,
        "rss_after_signin_mib": rss_after_signin,
        "pages": {k: {"n": len(v),
                      "p50_ms": round(pct(v, 50) * 1000, 1),
                      "p95_ms": round(pct(v, 95) * 1000, 1),
                      "p99_ms": round(pct(v, 99) * 1000, 1)} for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} |"
        for k, v in result["pages"].items())
    section = f"""## Patient portal under load

`scripts/bench-portal.sh` ({time.strftime('%Y-%m-%d', time.gmtime())}): {scale}.
{len(links)} concurrent patients (threads of `scripts/bench_portal.py`,
one keep-alive connection each) accept their invitation, then browse for
{result['seconds']} s: the list page ("Where my images went"), 3 of their
entry pages (each with its Merkle proof against the latest checkpoint),
the lookups page, again and again. Page time is the client's, request
sent to body read.

| page | requests | p50 (ms) | p95 (ms) | p99 (ms) |
|---|---|---|---|---|
{rows}

- {result['requests_per_s']} requests/s over all pages; {result['errors']} errors.
- `veil serve` peak RSS (VmHWM): {hwm} MiB ({rss} MiB at the end;
  {rss_after_signin} MiB after the {len(links)} sign-ins, which took
  {result['signin_s']} s: argon2 per password).
"""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")
    replace_section(os.path.normpath(doc), "Patient portal under load", section)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
