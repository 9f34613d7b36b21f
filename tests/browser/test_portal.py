"""Issue 19: the patient portal in a real Chromium, served by `veil serve`.

The site is made with the CLI as an operator would: `veil init`, a
recipient, a site default, `veil release` of a corpus file for a patient
(its PatientID set with dcmtk's dcmodify), `veil portal invite`, `veil
ledger checkpoint`. Then `veil serve` with `[portal]` (and a route with a
file:// destination) serves the pages, under their real
Content-Security-Policy, and the patient: opens the invitation, sets a
password, lands on "Where my images went", sees the release to the
recipient, opens it and sees the proof verified in the browser. axe-core
checks every page visited; screenshots (phone width) go to docs/portal/.
"""

import pytest

from portal_helpers import add_console, held_for_review, make_site, run, serving

PID = "BROWSER-PORTAL-1"
PASSWORD = "a browser test password"
# the staff console's admin (tests/browser/test_console.py)
STAFF = "dr-admin"
STAFF_PASSWORD = "a staff console password"
VERIFIED = "verified against the hospital's signed log"


@pytest.fixture(scope="module")
def portal(veil_bin, tmp_path_factory):
    """(base URL, invitation link, verifier key, the staff console's base
    URL with an admin account); `veil serve` runs until the module ends,
    then must stop cleanly on SIGTERM."""
    tmp = tmp_path_factory.mktemp("portal")
    home, _, cfg, link, base = make_site(veil_bin, tmp, PID)
    deid_out, review = held_for_review(veil_bin, tmp)
    console = add_console(veil_bin, home, cfg, STAFF, STAFF_PASSWORD, review=[review])
    pubkey = run(veil_bin, home, "ledger", "pubkey").strip()
    log = tmp / "serve.log"
    with serving(veil_bin, home, cfg, log,
                 secrets=(PID, PASSWORD, STAFF_PASSWORD, link.rsplit("/", 1)[-1])):
        yield {"base": base, "link": link, "pubkey": pubkey, "log": log, "console": console,
               "home": home, "deid_out": deid_out, "review": review}
    text = log.read_text()
    assert "route=/invite/{token}" in text, text


def test_invitation_to_verified_entry(portal, page, js_errors, assert_accessible, shot):
    # a phone's width: the pages must read well there
    page.set_viewport_size({"width": 390, "height": 800})
    visited = []

    def check(name):
        # stricter than the fixture: no violation of any impact (the
        # pages have none today; keep it so)
        violations = assert_accessible(page)
        assert not violations, (name, violations)
        visited.append(name)
        shot(page, name)

    page.goto(portal["link"])
    assert page.locator("h1").text_content() == "Set your password"
    check("invite")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()

    page.wait_for_url(portal["base"] + "/")
    assert page.locator("h1").text_content() == "Where my images went"
    link = page.get_by_role("link", name="Sent to acme")
    assert link.count() == 1
    assert "ai-vendor" in page.locator("main").text_content()
    check("where-my-images-went")

    link.click()
    page.wait_for_selector("[data-veil-proof-state=verified]", timeout=10_000)
    result = page.locator("[data-veil-proof-result]").text_content().strip()
    assert result == VERIFIED
    check("entry")

    page.get_by_role("link", name="What “verified” means", exact=False).first.click()
    page.wait_for_url(portal["base"] + "/about-proofs")
    assert portal["pubkey"] in page.locator("main").text_content()
    check("about-proofs")

    page.get_by_role("link", name="Who looked at my record").click()
    page.wait_for_url(portal["base"] + "/lookups")
    assert "No one has looked up your record" in page.locator("main").text_content()
    check("lookups")

    page.goto(portal["base"] + "/totp")
    assert page.locator("h1").text_content() == "Add a sign-in code"
    assert_accessible(page)  # no screenshot: it shows a (test) secret

    page.goto(portal["base"] + "/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(portal["base"] + "/signin")
    check("signin")

    # signed out: the list is behind the sign-in again
    page.goto(portal["base"] + "/")
    assert page.url == portal["base"] + "/signin"

    # sign in with the patient ID and password
    page.get_by_label("Patient ID").fill(PID)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(portal["base"] + "/")
    assert page.get_by_role("link", name="Sent to acme").count() == 1

    assert not js_errors, js_errors
    assert visited == ["invite", "where-my-images-went", "entry", "about-proofs",
                       "lookups", "signin"]


def test_pages_work_without_javascript(portal, browser):
    """Everything but the proof check is plain HTML and forms."""
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    try:
        page.goto(portal["base"] + "/signin")
        page.get_by_label("Patient ID").fill(PID)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(portal["base"] + "/")
        page.get_by_role("link", name="Sent to acme").click()
        text = page.locator("[data-veil-proof-result]").text_content()
        assert "needs JavaScript" in text
    finally:
        ctx.close()
