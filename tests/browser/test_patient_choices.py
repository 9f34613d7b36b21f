"""Issue 19: the patient's sharing choices and reports in a real Chromium,
served by `veil serve`, with `veil release` run from the CLI in between.

The site (portal_helpers.make_site): recipient acme (ai-vendor) for
ai-training, site default opt-out, one release of the patient's study.
The patient signs in through the invitation, opts out of ai-training on
"My sharing choices"; a new `veil release` for ai-training then refuses
the patient's study (its output says so, and `veil disclosures` shows the
refusal and the consent change that caused it); the patient reports the
refusal's entry and sees the report's status. axe-core checks every new
page (no violation of any impact).
"""

import json

import pytest

from portal_helpers import add_console, make_site, run, run_any, serving, staff_sign_in

PID = "BROWSER-CHOICES-1"
PASSWORD = "a browser test password for choices"
REASON = "I did not expect this one"
STAFF, STAFF_PASSWORD = "choices-admin", "a staff password for the choices test"


@pytest.fixture(scope="module")
def site(veil_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("choices")
    home, inp, cfg, link, base = make_site(veil_bin, tmp, PID)
    console = add_console(veil_bin, home, cfg, STAFF, STAFF_PASSWORD)
    log = tmp / "serve.log"
    with serving(veil_bin, home, cfg, log,
                 secrets=(PID, PASSWORD, REASON, STAFF_PASSWORD, link.rsplit("/", 1)[-1])):
        yield {"base": base, "link": link, "home": home, "inp": inp, "tmp": tmp,
               "console": console}


def disclosures(veil_bin, home):
    return json.loads(run(veil_bin, home, "disclosures", "--patient-id", PID, "--json"))


def test_opt_out_then_release_refuses_then_report(site, veil_bin, page, js_errors,
                                                  assert_accessible, shot):
    base = site["base"]
    # a phone's width, as test_portal.py
    page.set_viewport_size({"width": 390, "height": 800})

    def check(name):
        violations = assert_accessible(page)
        assert not violations, (name, violations)
        shot(page, name)

    page.goto(site["link"])
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(base + "/")

    # my sharing choices: ai-training is shared by the hospital's default
    page.get_by_role("link", name="My sharing choices").click()
    page.wait_for_url(base + "/choices")
    assert page.locator("h1").text_content() == "My sharing choices"
    every = page.get_by_role("group", name="AI training, every recipient")
    text = every.text_content()
    assert "shared unless you say no (opt-out)" in text
    assert "(hospital default)" in text
    assert "this recipient will be told: acme" in text
    check("choices")

    every.get_by_label("Do not share my images").check()
    every.get_by_role("button", name="Save my choice for AI training, every recipient").click()
    assert "Your choice is saved" in page.locator("main").text_content()
    assert "stopped sharing: acme" in page.locator("main").text_content()
    every = page.get_by_role("group", name="AI training, every recipient")
    assert "not shared (your choice)" in " ".join(every.text_content().split())
    check("choices-saved")

    # the change is a consent-change entry in the ledger
    d = disclosures(veil_bin, site["home"])
    events = [x["entry"]["event"] for x in d["entries"]]
    assert events[-1] == "consent-change", events

    # a new `veil release` for ai-training refuses the patient's study
    p = run_any(veil_bin, site["home"], "release", "--recipient", "acme",
                "--purpose", "ai-training", str(site["inp"]),
                "--out", str(site["tmp"] / "out2"))
    assert p.returncode == 0, p.stdout + p.stderr  # a consent refusal is no failure
    assert "0 released" in p.stdout + p.stderr, p.stdout + p.stderr
    d = disclosures(veil_bin, site["home"])
    last = d["entries"][-1]
    assert last["entry"]["event"] == "refusal", last
    assert "deny any recipient, all studies, ai-training" in last["entry"]["reason"], last
    refused = last["position"]

    # sharing requests: none (ai-training is opt-out)
    page.get_by_role("link", name="Sharing requests").click()
    page.wait_for_url(base + "/requests")
    assert "No request is waiting." in page.locator("main").text_content()
    check("requests")

    # the refusal is on the list; the patient reports it
    page.get_by_role("link", name="Where my images went").first.click()
    page.wait_for_url(base + "/")
    page.locator(f'a[href="/entries/{refused}"]').click()
    page.wait_for_url(f"{base}/entries/{refused}")
    # no checkpoint covers the refusal yet: the notice, and no failed check
    main = page.locator("main").text_content()
    assert "No proof is available yet" in main
    assert "could NOT be verified" not in main
    check("entry-report-form")
    page.get_by_label("What looks unusual?").fill(REASON)
    page.get_by_role("button", name="Send my report").click()
    page.wait_for_url(f"{base}/entries/{refused}#report")
    status = page.locator("#report").text_content()
    assert "Your report: received" in status, status
    assert page.get_by_role("button", name="Send my report").count() == 0
    check("entry-reported")

    # staff see the report on the console's flags, without the patient ID,
    # and handle it; the patient then sees it handled
    staff = page.context.browser.new_context().new_page()
    console = site["console"]
    staff_sign_in(staff, console, STAFF, STAFF_PASSWORD)
    staff.goto(console + "/flags")
    report = staff.locator("main article", has_text="Patient report")
    assert report.count() == 1, staff.locator("main").text_content()
    text = report.text_content()
    assert REASON in text and f"Ledgerposition{refused}" in text.replace(" ", ""), text
    assert PID not in staff.content()
    report.get_by_role("button", name="Mark handled").click()
    staff.wait_for_url(console + "/flags")
    staff.context.close()
    page.reload()
    assert "looked into by the hospital's privacy team, who acted on it" in \
        page.locator("#report").text_content()

    # download my history: the printable page, and the FHIR file
    page.get_by_role("link", name="Download my history").click()
    page.wait_for_url(base + "/history")
    assert page.locator("caption").text_content() == "My history, oldest first"
    check("history")
    page.emulate_media(media="print")
    assert not page.locator("header.site nav").is_visible()
    page.emulate_media(media="screen")
    with page.expect_download() as dl:
        page.get_by_role("link", name="download it as a file", exact=False).click()
    bundle = json.loads(open(dl.value.path(), encoding="utf-8").read())
    assert bundle["resourceType"] == "Bundle"
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in bundle["entry"])

    assert not js_errors, js_errors
