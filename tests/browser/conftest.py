"""Fixtures shared by every browser test of Veil's pages (issue 19 on).

The browser is Debian's chromium driven by Playwright's Python API, never
a browser Playwright downloads itself (`playwright install` reaches a host
CI cannot). scripts/browser-deps.sh installs everything; scripts/
test-browser.sh runs the tests.

    browser            one Chromium per test session
    page               a fresh context and tab per test; what the page logs
                       as an error or warning (a CSP violation, an uncaught
                       exception) is collected in `js_errors`
    serve              serve(folder) -> base URL: a static server on
                       127.0.0.1 that sends the portal's
                       Content-Security-Policy, so a page that needs inline
                       script fails here as it would in production
    assert_accessible  assert_accessible(page): axe-core finds no serious or
                       critical violation
    veil_bin           the veil binary ($VEIL_BIN, else target/debug/veil)
    shot               shot(page, name): a full-page screenshot, into
                       $VEIL_PORTAL_SHOTS when set (docs/portal/ is
                       regenerated on purpose: VEIL_PORTAL_SHOTS=docs/portal
                       scripts/test-browser.sh -k "portal or choices"), else
                       a temporary folder (every run would dirty the tree)
"""

import functools
import http.server
import os
import pathlib
import threading

import pytest
from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("VEIL_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "target/browser-node/node_modules/axe-core/axe.min.js"

# What the portal will send: scripts and everything else from its own
# origin only, so no inline script or style can run.
CSP = "default-src 'self'; script-src 'self'"


@pytest.fixture(scope="session")
def veil_bin():
    p = pathlib.Path(os.environ.get("VEIL_BIN", ROOT / "target/debug/veil"))
    if not p.is_file():
        pytest.fail(f"{p} is missing: run `cargo build -p veil-cli` or set VEIL_BIN")
    return p


@pytest.fixture(scope="session")
def browser():
    if not pathlib.Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-deps.sh")
    # Chromium's sandbox needs user namespaces it does not get as root in
    # a container; as an ordinary user it stays on.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


@pytest.fixture
def js_errors():
    return []


@pytest.fixture
def page(browser, js_errors):
    ctx = browser.new_context()
    tab = ctx.new_page()
    tab.on("pageerror", lambda e: js_errors.append(f"uncaught: {e}"))
    tab.on(
        "console",
        lambda m: js_errors.append(f"console.{m.type}: {m.text}")
        if m.type in ("error", "warning")
        else None,
    )
    yield tab
    ctx.close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        # the browser asks for one on every page; a 404 would be logged as
        # a console error, which the tests treat as a failure
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def end_headers(self):
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):  # keep pytest's output to failures
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder):
        handler = functools.partial(_Handler, directory=str(folder))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        # 127.0.0.1 is a secure context, so WebCrypto's crypto.subtle is
        # there as it is on the portal's HTTPS
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="session")
def assert_accessible():
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run scripts/browser-deps.sh")
    source = AXE.read_text(encoding="utf-8")

    def check(page):
        # evaluated through the DevTools protocol, which the page's CSP does
        # not govern (a <script> tag with axe inline would be refused)
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(f"() => {{ {source}\n}}")
        violations = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']}))"
            ".violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' '))}))"
        )
        bad = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not bad, "accessibility violations:\n" + "\n".join(
            f"  {v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}"
            for v in bad
        )
        return violations

    return check


@pytest.fixture
def shot(tmp_path):
    env = os.environ.get("VEIL_PORTAL_SHOTS")
    folder = pathlib.Path(env) if env else tmp_path / "shots"
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return take
