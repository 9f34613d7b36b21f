"""Issue 19's attack tests in a real Chromium against `veil serve`, as an
attacker would try them (the router tests in crates/veil-portal/tests
repeat each with an injected clock):

- markup and script where a page shows text: a study description sent
  by the PACS (kept in the site-local study index and shown to the
  patient and to staff) is shown as text: no dialog opens, no script
  runs, no element is made. A recipient cannot be named so (`veil
  recipient add` refuses the name), and someone who edits the database to
  set a recipient's category to it finds `veil serve` refusing to start:
  the registration no longer matches the one pinned in the ledger;
- patient A asks for patient B's entry by its position: 404, and the
  page says nothing of B;
- a form posted without its CSRF token (from the signed-in browser, with
  its cookies) is 403 and changes nothing;
- the 6th wrong password within a minute is refused, even with the right
  password.
"""

import sqlite3

from portal_helpers import add_console, make_site, plant, run, run_any, serving, staff_sign_in

PID = "BROWSER-ATTACK-A"
PID_B = "BROWSER-ATTACK-B"
PASSWORD = "a browser attack-test password"
STAFF, STAFF_PASSWORD = "attack-admin", "an attack-test staff password"
EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_attacks_fail_in_a_real_browser(veil_bin, tmp_path, browser, page, js_errors):
    home, _, cfg, link, base = make_site(veil_bin, tmp_path, PID,
                                         tags=[("(0008,1030)", EVIL)])
    console = add_console(veil_bin, home, cfg, STAFF, STAFF_PASSWORD)
    assert run_any(veil_bin, home, "recipient", "add", EVIL, "--category", "x",
                   "--purpose", "ai-training", "--recipe", str(tmp_path / "r.toml"),
                   "--retention-days", "1").returncode == 2
    # patient B's study, released to the same recipient
    plant(tmp_path / "in-b", PID_B)
    run(veil_bin, home, "release", "--recipient", "acme", "--purpose", "ai-training",
        str(tmp_path / "in-b"), "--out", str(tmp_path / "out-b"))
    db = home / "veil.db"
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT seq, entry FROM ledger ORDER BY seq").fetchall()
        (category,) = c.execute("SELECT category FROM recipients WHERE name = 'acme'").fetchone()
        c.execute("UPDATE recipients SET category = ? WHERE name = 'acme'", (EVIL,))
    b_entry = max(seq for seq, e in rows if '"event":"release"' in e.replace(" ", ""))
    p = run_any(veil_bin, home, "serve", "--config", str(cfg))
    assert p.returncode != 0 and "does not match the ledger" in p.stderr, p.stderr
    with sqlite3.connect(db) as c:
        c.execute("UPDATE recipients SET category = ? WHERE name = 'acme'", (category,))

    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with serving(veil_bin, home, cfg, tmp_path / "serve.log",
                 secrets=(PID, PID_B, PASSWORD, STAFF_PASSWORD, link.rsplit("/", 1)[-1])):
        page.goto(link)
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("Type the password again").fill(PASSWORD)
        page.get_by_role("button", name="Set password and sign in").click()
        page.wait_for_url(base + "/")

        # the study description is shown as text on the entry
        entry = page.locator('main a[href^="/entries/"]').first.get_attribute("href")
        page.goto(base + entry)
        assert EVIL in page.locator("main").text_content()
        assert page.locator("main img").count() == 0
        # the page's only scripts: proof.js (by src) and the JSON data block
        assert page.locator("script:not([src]):not([type='application/json'])").count() == 0

        # B's entry by its position: 404, nothing of B
        r = page.goto(f"{base}/entries/{b_entry}")
        assert r.status == 404
        assert PID_B not in page.content()
        # Chromium logs the 404 itself as a console error: that one is expected
        js_errors[:] = [e for e in js_errors if "status of 404" not in e]

        # a form without its CSRF token, with the browser's cookies: 403
        r = page.request.post(base + "/choices", form={"purpose": "ai-training",
                                                       "choice": "deny"})
        assert r.status == 403
        with sqlite3.connect(db) as c:
            changes = c.execute("SELECT COUNT(*) FROM consents").fetchone()[0]
        assert changes == 0, "nothing was changed"

        # the console shows it as text too (the patient search)
        staff_sign_in(page, console, STAFF, STAFF_PASSWORD)
        page.goto(console + "/patients")
        page.get_by_label("Patient ID").fill(PID)
        page.get_by_role("button", name="Search").click()
        page.wait_for_selector("#result-h")
        assert EVIL in page.locator("main").text_content()
        assert page.locator("main img").count() == 0

        # the 6th wrong password within a minute: refused, even when right
        ctx = browser.new_context()
        other = ctx.new_page()
        for _ in range(5):
            other.goto(base + "/signin")
            other.get_by_label("Patient ID").fill(PID)
            other.get_by_label("Password").fill("not the password at all")
            other.get_by_role("button", name="Sign in").click()
            assert "Sign-in refused" in other.locator("main").text_content()
        other.goto(base + "/signin")
        other.get_by_label("Patient ID").fill(PID)
        other.get_by_label("Password").fill(PASSWORD)
        other.get_by_role("button", name="Sign in").click()
        text = other.locator("main").text_content()
        assert "Too many failed attempts" in text and "Sign-in refused" not in text, text
        assert other.url.startswith(base + "/signin")
        ctx.close()

    assert not dialogs, dialogs
    assert not js_errors, js_errors
