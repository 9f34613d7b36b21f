"""Issue 19: an entry's proof bundle (`veil ledger proof --json`) is
checked in a real Chromium by crates/veil-ledger/web/proof.js, under the
portal's Content-Security-Policy, and every kind of tampering is reported.

The ledger is real: `veil init`, a recipient, a site default and two
consent records (each a signed ledger entry), then `veil ledger
checkpoint`. The page here is a stand-in for the portal's: the bundle in a
<script type="application/json"> data block, proof.js as a separate file.
"""

import base64
import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROOF_JS = ROOT / "crates/veil-ledger/web/proof.js"
VERIFIED = "verified against the hospital's signed log"
NOT_VERIFIED = "could NOT be verified: "
ENTRIES = 4


def run(veil_bin, home, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    env.update(VEIL_HOME=str(home), USER="browser-test")
    p = subprocess.run([str(veil_bin), *args], env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"veil {' '.join(args)}: {p.stdout}{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def ledger(veil_bin, tmp_path_factory):
    home = tmp_path_factory.mktemp("veil-home")
    recipe = home / "r.toml"
    recipe.write_text('name = "t"\nversion = "1"\n')
    run(veil_bin, home, "init")
    run(veil_bin, home, "recipient", "add", "acme", "--purpose", "ai-training",
        "--recipe", str(recipe), "--retention-days", "30")
    run(veil_bin, home, "consent", "default", "ai-training", "opt-out")
    for p in ("BROWSER-P1", "BROWSER-P2"):
        run(veil_bin, home, "consent", "set", p, "--deny", "--recipient", "acme")
    run(veil_bin, home, "ledger", "checkpoint")
    bundles = [
        json.loads(run(veil_bin, home, "ledger", "proof", "--position", str(i), "--json"))
        for i in range(ENTRIES)
    ]
    return {"pubkey": run(veil_bin, home, "ledger", "pubkey").strip(), "bundles": bundles}


def page_html(bundle):
    # '<' escaped so no entry text can close the data block early; JSON
    # reads \u003c back as '<'
    data = json.dumps(bundle).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Release record: proof check</title>
<script type="module" src="proof.js"></script>
</head>
<body>
<main>
<h1>Release record</h1>
<section data-veil-proof aria-labelledby="proof-heading">
<h2 id="proof-heading">Is this record in the hospital's signed log?</h2>
<script type="application/json">{data}</script>
<p data-veil-proof-result role="status" aria-live="polite">This check runs in
your browser and needs JavaScript. <a href="checking.html">How to check it
yourself</a>.</p>
</section>
<p>Hospital's verifier key: <code>{html.escape(bundle.get("verifier_key", ""))}</code></p>
</main>
</body>
</html>
"""


@pytest.fixture
def show(tmp_path, serve, page):
    """show(bundle) -> (state, text) once proof.js has decided."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PROOF_JS, site / "proof.js")
    base = serve(site)
    n = [0]

    def go(bundle):
        n[0] += 1
        name = f"entry{n[0]}.html"
        (site / name).write_text(page_html(bundle), encoding="utf-8")
        page.goto(f"{base}/{name}")
        el = page.wait_for_selector(
            "[data-veil-proof-state=verified], [data-veil-proof-state=failed]", timeout=10_000
        )
        text = page.locator("[data-veil-proof-result]").text_content().strip()
        return el.get_attribute("data-veil-proof-state"), text

    return go


def other_key():
    """A note key that is not the hospital's: (private key, name, key id)."""
    k = Ed25519PrivateKey.generate()
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = "veil-ledger/0000000000000000"
    keyid = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4]
    return k, name, keyid


def test_every_entry_verifies_in_chromium(ledger, show, page, js_errors, assert_accessible):
    for b in ledger["bundles"]:
        assert b["verifier_key"] == ledger["pubkey"]
        assert show(b) == ("verified", VERIFIED), b["index"]
    # proof.js ran under `script-src 'self'` without a violation or error
    assert js_errors == []
    assert_accessible(page)
    # the result is a live region, so screen readers announce the verdict
    assert page.locator("[data-veil-proof-result]").get_attribute("role") == "status"


def flip_hex(h):
    return ("1" if h[0] == "0" else "0") + h[1:]


def tampered(bundle, how):
    b = json.loads(json.dumps(bundle))
    if how == "proof":
        b["proof"][0] = flip_hex(b["proof"][0])
    elif how == "leaf":
        b["leaf"] = b["leaf"].replace('"v":1', '"v":2', 1)
    elif how == "index":
        b["index"] = (b["index"] + 1) % b["tree_size"]
    elif how == "root":
        b["root"] = flip_hex(b["root"])
    elif how == "size-line":
        b["checkpoint"] = b["checkpoint"].replace(f"\n{b['tree_size']}\n", "\n2\n", 1)
    elif how in ("other-key", "other-key-same-name"):
        text = b["checkpoint"].rsplit("\n\n", 1)[0] + "\n"
        k, name, keyid = other_key()
        if how == "other-key-same-name":
            # posing as the hospital's key: its name and key id, another
            # key's signature
            name = b["verifier_key"].split("+")[0]
            keyid = bytes.fromhex(b["verifier_key"].split("+")[1])
        sig = base64.b64encode(keyid + k.sign(text.encode())).decode()
        b["checkpoint"] = f"{text}\n\u2014 {name} {sig}\n"
    else:
        raise AssertionError(how)
    assert b != bundle
    return b


@pytest.mark.parametrize(
    "how, reason",
    [
        ("proof", "leaf not in tree"),
        ("leaf", "leaf not in tree"),
        ("index", "leaf not in tree"),
        ("root", "root does not match checkpoint"),
        ("size-line", "bad signature"),
        ("other-key", "wrong key"),
        ("other-key-same-name", "bad signature"),
    ],
)
def test_tampering_is_not_verified(ledger, show, page, js_errors, assert_accessible, how, reason):
    state, text = show(tampered(ledger["bundles"][1], how))
    assert state == "failed", text
    assert text.startswith(NOT_VERIFIED + reason), text
    assert js_errors == []
    if how == "proof":
        assert_accessible(page)


RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                  "606162636465666768696a6b6c6d6e6f"]
RFC6962_ROOT8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def test_inclusion_matches_the_rfc6962_vectors(serve, page, tmp_path):
    # the vectors merkle.rs is tested with (certificate-transparency's)
    site = tmp_path / "v"
    site.mkdir()
    shutil.copy(PROOF_JS, site / "proof.js")
    (site / "index.html").write_text("<!doctype html><title>v</title>")
    page.goto(serve(site) + "/index.html")
    results = page.evaluate(
        """async ([leaves, root8]) => {
            const m = await import('/proof.js');
            const b = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
            const p0 = ['96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
                        '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
                        '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4'];
            const p5 = ['bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
                        'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
                        'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7'];
            const p23 = ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'];
            const root3 = 'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77';
            return [
                await m.verifyInclusion(b(leaves[0]), 0, 8, p0, root8),
                await m.verifyInclusion(b(leaves[5]), 5, 8, p5, root8),
                await m.verifyInclusion(b(leaves[2]), 2, 3, p23, root3),
                // wrong leaf, wrong index, wrong size, index past the end
                await m.verifyInclusion(b(leaves[1]), 0, 8, p0, root8),
                await m.verifyInclusion(b(leaves[5]), 4, 8, p5, root8),
                await m.verifyInclusion(b(leaves[5]), 5, 9, p5, root8),
                await m.verifyInclusion(b(leaves[0]), 8, 8, p0, root8),
            ];
        }""",
        [RFC6962_LEAVES, RFC6962_ROOT8],
    )
    assert results == [True, True, True, False, False, False, False]


def test_without_javascript_the_page_says_how_to_check(browser, ledger, serve, tmp_path, assert_accessible):
    site = tmp_path / "nojs"
    site.mkdir()
    shutil.copy(PROOF_JS, site / "proof.js")
    (site / "p.html").write_text(page_html(ledger["bundles"][0]), encoding="utf-8")
    ctx = browser.new_context(java_script_enabled=False)
    try:
        tab = ctx.new_page()
        tab.goto(serve(site) + "/p.html")
        text = tab.locator("[data-veil-proof-result]").text_content()
        assert "How to check it" in text and VERIFIED not in text
    finally:
        ctx.close()


def docs_checker():
    """The Python block of docs/ledger.md's "Checking a proof yourself"."""
    doc = (ROOT / "docs/ledger.md").read_text(encoding="utf-8")
    section = doc.split("## Checking a proof yourself", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_check_in_the_docs_agrees(ledger, tmp_path):
    script = tmp_path / "check_proof.py"
    script.write_text(docs_checker(), encoding="utf-8")

    def check(bundle):
        f = tmp_path / "bundle.json"
        f.write_text(json.dumps(bundle), encoding="utf-8")
        p = subprocess.run([sys.executable, str(script), str(f), ledger["pubkey"]],
                           capture_output=True, text=True)
        return p.returncode, (p.stdout + p.stderr).strip()

    for b in ledger["bundles"]:
        code, out = check(b)
        assert code == 0 and out.startswith(VERIFIED), out
    for how, reason in [("proof", "leaf not in tree"), ("leaf", "leaf not in tree"),
                        ("root", "root does not match"), ("size-line", "bad signature"),
                        ("other-key", "wrong key")]:
        code, out = check(tampered(ledger["bundles"][1], how))
        assert code == 1 and out.startswith(NOT_VERIFIED + reason), (how, out)


def test_the_harness_enforces_the_csp(serve, page, js_errors, tmp_path):
    # so that a page passing here does not lean on inline script
    site = tmp_path / "csp"
    site.mkdir()
    (site / "p.html").write_text(
        "<!doctype html><html lang=en><title>before</title>"
        "<script>document.title = 'ran'</script>"
    )
    page.goto(serve(site) + "/p.html")
    assert page.title() == "before"
    assert any("Content Security Policy" in e for e in js_errors), js_errors


def test_the_harness_catches_an_inaccessible_page(serve, page, tmp_path, assert_accessible):
    # so that a page passing assert_accessible was really checked
    site = tmp_path / "a11y"
    site.mkdir()
    (site / "p.html").write_text(
        "<!doctype html><html lang=en><title>t</title><main><button></button></main>"
    )
    page.goto(serve(site) + "/p.html")
    with pytest.raises(AssertionError, match="critical: button-name"):
        assert_accessible(page)
