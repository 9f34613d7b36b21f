//! Issue 19, the patient's own pages, driven through the axum Router on a
//! real SQLite site whose releases run through `Site::release` (the path
//! `veil release` and the gateway share), on corpus files (skipped
//! without `VEIL_CORPUS`): sharing choices → consent-change ledger entry
//! → the next release refuses; sharing requests approved or declined →
//! the next release includes or refuses; reports with their status;
//! the history download; CSRF on every new form; authorization.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::Router;
use support::{logs, Client, Reply, Target};
use veil_consent::SiteDefault;
use veil_core::Phi;
use veil_ledger::Event;
use veil_portal::web::{router_with_clock, WebConfig};
use veil_portal::Invitation;
use veil_release::{ReleaseRequest, Site};

const A: &str = "PATIENT-CHOICES-A-4411";
const B: &str = "PATIENT-CHOICES-B-5522";
const PW: &str = "a long password for the test";

impl Target for Env {
    fn app(&self) -> Router {
        self.app.clone()
    }
    fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

fn csrf(page: &Reply) -> String {
    Client::csrf(page)
}

/// The portal (its router owns one `Site`) and a second `Site` on the
/// same store, for the releases `veil release` would run meanwhile.
struct Env {
    app: Router,
    rt: tokio::runtime::Runtime,
    site: Site,
    home: PathBuf,
    input_a: PathBuf,
    input_b: PathBuf,
    runs: usize,
    ta: String,
    tb: String,
}

impl Env {
    /// Releases the inputs of A and B to `recipient` for `purpose`;
    /// returns the new entries as (patient ref, event, reason).
    fn release(&mut self, recipient: &str, purpose: &str) -> Vec<(String, Event, String)> {
        self.runs += 1;
        let req = ReleaseRequest {
            recipient: recipient.into(),
            purpose: purpose.into(),
            inputs: vec![self.input_a.clone(), self.input_b.clone()],
            out: self.home.join(format!("out{}", self.runs)),
            operator: Some("test".into()),
            jobs: 1,
        };
        let pos = self.site.release(&req, None).unwrap().ledger_positions;
        let entries = self.site.entries().unwrap();
        pos.iter()
            .map(|&p| {
                let e = &entries[p as usize];
                (
                    e.patient_ref.clone().unwrap_or_default(),
                    e.event,
                    e.reason.clone(),
                )
            })
            .collect()
    }

    fn pref(&self, pid: &str) -> String {
        self.site.patient_ref(&Phi::new(pid.to_string()))
    }

    fn outcome(&self, got: &[(String, Event, String)], pid: &str) -> (Event, String) {
        let r = self.pref(pid);
        let (_, e, why) = got.iter().find(|(p, _, _)| *p == r).expect("an entry");
        (*e, why.clone())
    }

    fn sign_in(&self, which: &str) -> Client {
        let token = if which == "A" { &self.ta } else { &self.tb };
        let mut c = Client::default();
        let form = c.get(self, &format!("/invite/{token}"));
        assert_eq!(form.status, StatusCode::OK);
        let t = csrf(&form);
        let r = c.post(
            self,
            &format!("/invite/{token}"),
            &[("csrf", &t), ("password", PW), ("password2", PW)],
        );
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A site with recipients `acme` (category `research`, purpose
/// `ai-training`, site default opt-out) and `beta` (category
/// `ai-vendor`, purpose `research`, site default opt-in); one study of A
/// and one of B, each released once to acme and refused once by beta.
fn env(name: &str) -> Option<Env> {
    env_on(name, None)
}

/// [`env`] on the store `db` (SQLite in the home when `None`).
fn env_on(name: &str, db: Option<&str>) -> Option<Env> {
    logs();
    let corpus = veil_test::corpus()?;
    let home = veil_test::scratch(name);
    Site::init(db, &home).unwrap();
    let mut site = Site::open(db, &home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(
        &recipe,
        b"name = \"t\"\nversion = \"1\"\noptions = [\"retain-long-modified-dates\", \"clean-descriptors\"]\n",
    )
    .unwrap();
    for (name, cat, purpose) in [
        ("acme", "research", "ai-training"),
        ("beta", "ai-vendor", "research"),
    ] {
        site.add_recipient(
            name,
            Some(cat.into()),
            None,
            None,
            vec![purpose.into()],
            &recipe,
            30,
        )
        .unwrap();
    }
    site.set_default("ai-training", SiteDefault::OptOut)
        .unwrap();
    site.set_default("research", SiteDefault::OptIn).unwrap();
    let srcs = common::sources(&corpus);
    let (input_a, input_b) = (home.join("in-a"), home.join("in-b"));
    common::plant(
        &srcs[0],
        &input_a.join("a.dcm"),
        A,
        "1.2.826.0.1.3680043.9.7719.81",
        1,
    );
    common::plant(
        &srcs[1],
        &input_b.join("b.dcm"),
        B,
        "1.2.826.0.1.3680043.9.7719.82",
        1,
    );
    let now = chrono::Utc::now().timestamp();
    let ta = Invitation::issue(&mut site, &Phi::new(A.into()), 14, "test", now).unwrap();
    let tb = Invitation::issue(&mut site, &Phi::new(B.into()), 14, "test", now).unwrap();
    let app = router_with_clock(
        site,
        WebConfig::default(),
        Arc::new(|| chrono::Utc::now().timestamp()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut e = Env {
        app,
        rt,
        site: Site::open(db, &home).unwrap(),
        home,
        input_a,
        input_b,
        runs: 0,
        ta: ta.expose().clone(),
        tb: tb.expose().clone(),
    };
    let first = e.release("acme", "ai-training");
    assert_eq!(e.outcome(&first, A).0, Event::Release);
    assert_eq!(e.outcome(&first, B).0, Event::Release);
    let asked = e.release("beta", "research");
    let (ev, why) = e.outcome(&asked, A);
    assert_eq!(ev, Event::Refusal);
    assert!(veil_portal::choices::is_opt_in_refusal(&why), "{why}");
    Some(e)
}

fn positions_of(site: &mut Site, pref: &str, event: Event) -> Vec<u64> {
    site.entries()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, e)| e.patient_ref.as_deref() == Some(pref) && e.event == event)
        .map(|(i, _)| i as u64)
        .collect()
}

#[test]
fn opting_out_is_a_consent_change_and_the_next_release_refuses() {
    let Some(mut e) = env("patient-optout") else {
        return;
    };
    opt_out_flow(&mut e);
}

#[test]
fn requests_are_approved_or_declined_and_the_next_release_follows() {
    let Some(mut e) = env("patient-requests") else {
        return;
    };
    requests_flow(&mut e);
}

/// Both flows on PostgreSQL (`VEIL_TEST_PG_URL`, see scripts/pg.sh).
#[test]
fn choices_and_requests_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    if veil_test::corpus().is_none() {
        return;
    }
    for (name, flow) in [
        ("optout", opt_out_flow as fn(&mut Env)),
        ("requests", requests_flow),
    ] {
        let url = veil_store::create_pg_database(
            &base,
            &format!("veil_patient_{name}_{}", std::process::id()),
        )
        .unwrap();
        let mut e = env_on(&format!("patient-pg-{name}"), Some(&url)).unwrap();
        flow(&mut e);
    }
}

fn opt_out_flow(e: &mut Env) {
    let mut a = e.sign_in("A");
    let page = a.get(e, "/choices");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("AI training, every recipient"),
        "{}",
        page.body
    );
    assert!(page.body.contains("shared unless you say no (opt-out)"));
    assert!(
        page.body.contains("this recipient will be told: acme"),
        "{}",
        page.body
    );
    let t = csrf(&page);
    let before = e.site.entries().unwrap().len();
    let r = a.post(
        e,
        "/choices",
        &[
            ("csrf", &t),
            ("purpose", "ai-training"),
            ("category", ""),
            ("choice", "deny"),
        ],
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Your choice is saved"));
    assert!(r
        .body
        .contains("tell these recipients that you stopped sharing: acme"));
    // one consent-change entry about A, and nothing else
    let entries = e.site.entries().unwrap();
    assert_eq!(entries.len(), before + 1);
    let last = entries.last().unwrap();
    assert_eq!(last.event, Event::ConsentChange);
    assert_eq!(last.patient_ref.as_deref(), Some(e.pref(A).as_str()));
    assert!(last.reason.contains("from veil portal"), "{}", last.reason);
    // the page now says "not shared (your choice)"
    let page = a.get(e, "/choices");
    assert!(
        page.body.contains("not shared</strong> (your choice)"),
        "{}",
        page.body
    );
    // the next release for ai-training refuses A's study, not B's
    let got = e.release("acme", "ai-training");
    let (ev, why) = e.outcome(&got, A);
    assert_eq!(ev, Event::Refusal);
    assert!(
        why.contains("deny any recipient, all studies, ai-training"),
        "{why}"
    );
    assert_eq!(e.outcome(&got, B).0, Event::Release);
    // the ledger still verifies with the portal's entries in it
    assert!(e.site.verify_ledger().unwrap().ok);
    // a category-wide choice the site does not offer is 404
    let r = a.post(
        e,
        "/choices",
        &[
            ("csrf", &t),
            ("purpose", "ai-training"),
            ("category", "nobody"),
            ("choice", "deny"),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // opting in by category brings it back for acme (category research)
    let r = a.post(
        e,
        "/choices",
        &[
            ("csrf", &t),
            ("purpose", "ai-training"),
            ("category", "research"),
            ("choice", "permit"),
        ],
    );
    assert_eq!(r.status, StatusCode::OK);
    let got = e.release("acme", "ai-training");
    assert_eq!(e.outcome(&got, A).0, Event::Release);

    // back to the hospital's default: both of A's provisions taken back
    // (two consent-change entries); the default (opt-out) shares again,
    // and the page says so
    for category in ["research", ""] {
        let before = e.site.entries().unwrap().len();
        let r = a.post(
            e,
            "/choices",
            &[
                ("csrf", &t),
                ("purpose", "ai-training"),
                ("category", category),
                ("choice", "default"),
            ],
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let entries = e.site.entries().unwrap();
        assert_eq!(entries.len(), before + 1, "{category:?}");
        assert_eq!(entries.last().unwrap().event, Event::ConsentChange);
    }
    let page = a.get(e, "/choices");
    assert!(
        page.body.contains("shared</strong> (hospital default)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("(your choice)"), "{}", page.body);
    // nothing of A's left to take back: no entry
    let before = e.site.entries().unwrap().len();
    let r = a.post(
        e,
        "/choices",
        &[
            ("csrf", &t),
            ("purpose", "ai-training"),
            ("category", ""),
            ("choice", "default"),
        ],
    );
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(e.site.entries().unwrap().len(), before);
    let got = e.release("acme", "ai-training");
    assert_eq!(e.outcome(&got, A).0, Event::Release);
    assert!(e.site.verify_ledger().unwrap().ok);
}

fn requests_flow(e: &mut Env) {
    let (pa, pb) = (e.pref(A), e.pref(B));
    let req_a = *positions_of(&mut e.site, &pa, Event::Refusal)
        .last()
        .unwrap();
    let req_b = *positions_of(&mut e.site, &pb, Event::Refusal)
        .last()
        .unwrap();
    let mut a = e.sign_in("A");
    let mut b = e.sign_in("B");
    let page = a.get(e, "/requests");
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("beta asks for your images for Research"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("action=\"/requests/{req_a}\"")));
    assert!(!page.body.contains(&format!("action=\"/requests/{req_b}\"")));
    let ta = csrf(&page);
    let tb = csrf(&b.get(e, "/requests"));
    // B cannot answer A's request, nor A B's: 404, nothing recorded
    let n = e.site.entries().unwrap().len();
    let r = b.post(
        e,
        &format!("/requests/{req_a}"),
        &[("csrf", &tb), ("decision", "approve")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = a.post(
        e,
        &format!("/requests/{req_b}"),
        &[("csrf", &ta), ("decision", "approve")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(e.site.entries().unwrap().len(), n);
    // A approves, B declines: one consent change each
    let r = a.post(
        e,
        &format!("/requests/{req_a}"),
        &[("csrf", &ta), ("decision", "approve")],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = b.post(
        e,
        &format!("/requests/{req_b}"),
        &[("csrf", &tb), ("decision", "decline")],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let entries = e.site.entries().unwrap();
    assert_eq!(entries.len(), n + 2);
    assert!(entries[n..].iter().all(|x| x.event == Event::ConsentChange));
    // answered: no longer pending; a second answer is 404
    let page = a.get(e, "/requests");
    assert!(page.body.contains("you said yes"), "{}", page.body);
    assert!(page.body.contains("No request is waiting."));
    let r = a.post(
        e,
        &format!("/requests/{req_a}"),
        &[("csrf", &ta), ("decision", "decline")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(b.get(e, "/requests").body.contains("you said no"));
    // the next release includes A's study and refuses B's
    let got = e.release("beta", "research");
    let (ev, why) = e.outcome(&got, A);
    assert_eq!(ev, Event::Release, "{why}");
    assert!(why.contains("permit recipient beta"), "{why}");
    let (ev, why) = e.outcome(&got, B);
    assert_eq!(ev, Event::Refusal);
    assert!(why.contains("deny recipient beta"), "{why}");
    assert!(!veil_portal::choices::is_opt_in_refusal(&why));
    // B's declined request stays answered, no new one appears
    let page = b.get(e, "/requests");
    assert!(
        page.body.contains("No request is waiting."),
        "{}",
        page.body
    );
}

#[test]
fn a_patient_reports_their_own_entry_and_sees_its_status() {
    let Some(mut e) = env("patient-report") else {
        return;
    };
    let (pa, pb) = (e.pref(A), e.pref(B));
    let own = positions_of(&mut e.site, &pa, Event::Release)[0];
    let other = positions_of(&mut e.site, &pb, Event::Release)[0];
    let mut a = e.sign_in("A");
    let page = a.get(&e, &format!("/entries/{own}"));
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Report something unusual"));
    // no checkpoint yet, so no proof: the notice, and nothing for
    // proof.js to report as "could not be verified"
    assert!(page.body.contains("No proof is available yet"));
    assert!(!page.body.contains("data-veil-proof"), "{}", page.body);
    assert!(!page.body.contains("/static/proof.js"));
    // the studies and what acme received, from the index and the recipe
    assert!(page.body.contains(" · CT · "), "{}", page.body);
    let t = csrf(&page);
    let reason = "I never agreed to this one";
    let r = a.post(
        &e,
        &format!("/entries/{other}/report"),
        &[("csrf", &t), ("reason", reason)],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(e.site.store.portal_flags_for(&pb).unwrap().is_empty());
    let r = a.post(
        &e,
        &format!("/entries/{own}/report"),
        &[("csrf", &t), ("reason", "  ")],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = a.post(
        &e,
        &format!("/entries/{own}/report"),
        &[("csrf", &t), ("reason", reason)],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let flags = e.site.store.portal_flags_for(&pa).unwrap();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].ledger_seq, Some(own as i64));
    assert_eq!(flags[0].source, "patient");
    let page = a.get(&e, &format!("/entries/{own}"));
    assert!(
        page.body.contains("Your report: <strong>received"),
        "{}",
        page.body
    );
    // closed by staff: the patient sees it
    let now = chrono::Utc::now().timestamp();
    assert!(e
        .site
        .store
        .portal_close_flag(&flags[0].id, "handled", now)
        .unwrap());
    let page = a.get(&e, &format!("/entries/{own}"));
    assert!(page.body.contains("who acted on it"), "{}", page.body);
}

#[test]
fn the_history_download_is_an_audit_bundle_of_only_this_patient() {
    let Some(mut e) = env("patient-download") else {
        return;
    };
    let (pa, pb) = (e.pref(A), e.pref(B));
    let mut a = e.sign_in("A");
    let r = a.get(&e, "/history/audit.json");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/fhir+json");
    assert!(r.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["resourceType"], "Bundle");
    let items = v["entry"].as_array().unwrap();
    let mut want = positions_of(&mut e.site, &pa, Event::Release);
    want.extend(positions_of(&mut e.site, &pa, Event::Refusal));
    assert_eq!(items.len(), want.len());
    for it in items {
        assert_eq!(it["resource"]["resourceType"], "AuditEvent");
        let who = &it["resource"]["entity"][0]["what"]["identifier"]["value"];
        assert_eq!(who, &serde_json::Value::String(pa.clone()));
    }
    assert!(!r.body.contains(&pb));
    assert!(!r.body.contains(A));
    // the printable page: no script, print styles in the stylesheet
    let page = a.get(&e, "/history");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("My history, oldest first"));
    assert!(!page.body.contains("<script"));
    assert!(veil_portal::web::PORTAL_CSS.contains("@media print"));
    // signed out: no download
    let r = Client::default().get(&e, "/history/audit.json");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[test]
fn every_new_form_needs_its_csrf_token() {
    let Some(mut e) = env("patient-csrf") else {
        return;
    };
    let pa = e.pref(A);
    let own = positions_of(&mut e.site, &pa, Event::Release)[0];
    let req = *positions_of(&mut e.site, &pa, Event::Refusal)
        .last()
        .unwrap();
    let mut a = e.sign_in("A");
    let n = e.site.entries().unwrap().len();
    for (uri, form) in [
        (
            "/choices".to_string(),
            vec![
                ("purpose", "ai-training"),
                ("category", ""),
                ("choice", "deny"),
            ],
        ),
        (format!("/requests/{req}"), vec![("decision", "approve")]),
        (format!("/entries/{own}/report"), vec![("reason", "odd")]),
    ] {
        let r = a.post(&e, &uri, &form);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        let mut bad = form.clone();
        bad.push(("csrf", "not-the-token"));
        let r = a.post(&e, &uri, &bad);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    assert_eq!(e.site.entries().unwrap().len(), n);
    assert!(e.site.store.portal_flags_for(&pa).unwrap().is_empty());
}

#[test]
fn logs_hold_no_patient_id_reference_or_typed_text() {
    let Some(mut e) = env("patient-logs") else {
        return;
    };
    let pa = e.pref(A);
    let own = positions_of(&mut e.site, &pa, Event::Release)[0];
    let req = *positions_of(&mut e.site, &pa, Event::Refusal)
        .last()
        .unwrap();
    let mut a = e.sign_in("A");
    let t = csrf(&a.get(&e, "/choices"));
    let typed = "UNUSUAL-TYPED-TEXT-31337";
    for (uri, form) in [
        (
            "/choices".to_string(),
            vec![
                ("purpose", "ai-training"),
                ("category", ""),
                ("choice", "deny"),
            ],
        ),
        (format!("/requests/{req}"), vec![("decision", "decline")]),
        (format!("/entries/{own}/report"), vec![("reason", typed)]),
    ] {
        let mut f = form.clone();
        f.push(("csrf", &t));
        let r = a.post(&e, &uri, &f);
        assert!(r.status.is_redirection() || r.status.is_success(), "{uri}");
    }
    a.get(&e, "/history/audit.json");
    a.get(&e, "/history");
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(text.contains("route=/entries/{position}/report"), "{text}");
    for secret in [A, B, typed, pa.as_str(), &e.pref(B)] {
        assert!(!text.contains(secret), "the logs hold {secret}");
    }
}
