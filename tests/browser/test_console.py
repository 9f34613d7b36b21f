"""Issue 19: the staff console in a real Chromium, served by `veil serve`
on its own listener (`[console] listen`) beside the patient portal.

The site is test_portal.py's (made with the CLI; `veil staff add` of an
admin, password on stdin). A member of staff signs in, sees the
dashboard, searches the patient, sees the flag the lookup rule raised and
handles it; the recipients are listed; the ultrasound that `veil deid` held
for review is shown with its picture and approved (moved into OUT, a
`review-approval` ledger entry naming the member of staff). Then the patient, invited with
`veil portal invite`, sees the look-up under "Who looked at my record"
with the role only, never the staff member's name. axe-core checks every
console page; screenshots go to docs/portal/console-*.png only when
VEIL_PORTAL_SHOTS is set.
"""

# the site, `veil serve` and the screenshot fixture are test_portal.py's
import json
import sqlite3

from test_portal import PASSWORD, PID, STAFF, STAFF_PASSWORD, portal  # noqa: F401


def test_staff_search_is_seen_by_the_patient(portal, page, js_errors, assert_accessible, shot):
    console = portal["console"]
    page.set_viewport_size({"width": 1024, "height": 800})
    visited = []

    def check(name):
        violations = assert_accessible(page)
        assert not violations, (name, violations)
        visited.append(name)
        shot(page, f"console-{name}")

    def main_text():
        return page.locator("main").text_content()

    # signed out: every page leads to the sign-in
    page.goto(console + "/")
    assert page.url == console + "/signin"
    assert page.locator("h1").text_content() == "Staff sign-in"
    check("signin")

    page.get_by_label("Staff name").fill(STAFF)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console + "/")
    assert page.locator("h1").text_content() == "Dashboard"
    assert page.locator("[data-ledger-ok=true]").count() == 1
    assert "passed" in main_text()
    check("dashboard")

    page.get_by_role("link", name="Recipients").click()
    page.wait_for_url(console + "/recipients")
    assert "acme" in main_text() and "ai-vendor" in main_text()
    check("recipients")

    page.get_by_role("link", name="Staff", exact=True).click()
    page.wait_for_url(console + "/staff")
    assert STAFF in main_text() and "administrator" in main_text()
    check("staff")

    page.get_by_role("link", name="Patient search").click()
    page.wait_for_url(console + "/patients")
    page.get_by_label("Patient ID").fill(PID)
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#result-h")
    assert "acme" in main_text() and "released" in main_text()
    assert "This search was recorded" in main_text()
    check("patient")

    page.get_by_role("link", name="Flags", exact=True).click()
    page.wait_for_url(console + "/flags")
    assert "lookup_without_reason" in main_text()
    check("flags")
    page.get_by_role("button", name="Mark handled").click()
    page.wait_for_url(console + "/flags")
    assert "No flag to show" in main_text()
    page.get_by_label("Show").select_option("handled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(console + "/flags?status=handled")
    assert "lookup_without_reason" in main_text() and "handled" in main_text()

    # the review queue: the ultrasound `veil deid` held, its picture, approve
    page.get_by_role("link", name="Review", exact=True).click()
    page.wait_for_url(console + "/review")
    assert "ultrasound images usually carry burned-in patient text" in main_text()
    img = page.locator("main .pictures img")
    assert img.count() == 1
    img.first.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('main .pictures img').complete")
    assert img.first.evaluate("i => i.naturalWidth") > 0, "the held picture loads"
    check("review")
    held = [p for p in portal["review"].rglob("*.dcm")]
    assert len(held) == 1
    rel = held[0].relative_to(portal["review"])
    data = held[0].read_bytes()
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(console + "/review")
    assert "Nothing waits here" in main_text()
    assert (portal["deid_out"] / rel).read_bytes() == data, "approved: moved into OUT unchanged"
    assert not held[0].exists()
    # the decision is a ledger entry naming the member of staff (read from
    # the store's ledger table, as an auditor with the database would)
    with sqlite3.connect(portal["home"] / "veil.db") as db:
        last = json.loads(db.execute("SELECT entry FROM ledger ORDER BY seq DESC LIMIT 1")
                          .fetchone()[0])
    assert (last["event"], last["operator"]) == ("review-approval", STAFF), last

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(console + "/signin")

    # the patient: invitation, then "Who looked at my record"
    page.goto(portal["link"])
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Type the password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(portal["base"] + "/")
    page.get_by_role("link", name="Who looked at my record").click()
    page.wait_for_url(portal["base"] + "/lookups")
    rows = page.locator("main tbody tr")
    assert rows.count() == 1
    assert "administrator" in rows.first.text_content()
    assert STAFF not in main_text()
    assert_accessible(page)

    assert not js_errors, js_errors
    assert visited == ["signin", "dashboard", "recipients", "staff", "patient", "flags", "review"]
