//! Issue 19: the patient portal's pages, driven through the axum Router
//! (`tower::ServiceExt::oneshot`) on a real SQLite site with an injected
//! clock: invitation → password → signed in, sign-out, lockout, CSRF,
//! authorization between patients, escaping, session expiry, headers, and
//! logs without a patient ID or anything typed.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use support::{hidden, logs, Client, Reply, Target};
use tower::ServiceExt;
use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_portal::web::{router_with_clock, WebConfig, CSP};
use veil_portal::{Invitation, Secret};
use veil_release::Site;

const PID_A: &str = "WEB-PATIENT-A-7781";
const PID_B: &str = "WEB-PATIENT-B-9902";
const PW_A: &str = "a long password for A";
const EVIL: &str = "<script>alert(1)</script>";

// ---- a site and a client ---------------------------------------------------------

struct Portal {
    app: Router,
    rt: tokio::runtime::Runtime,
    clock: Arc<AtomicI64>,
}

impl Target for Portal {
    fn app(&self) -> Router {
        self.app.clone()
    }
    fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

const T0: i64 = 1_800_000_000;

fn entry(pref: &str, event: Event, recipient: &str, time: &str) -> Entry {
    Entry {
        v: 1,
        seq: 0,
        time: time.into(),
        event,
        release_id: "r1".into(),
        recipient: recipient.into(),
        purpose: "ai-training".into(),
        recipe: "t 1".into(),
        key_id: "k".into(),
        patient_ref: Some(pref.into()),
        study_ref: Some("s".repeat(32)),
        output_study_uid: Some("2.25.1".into()),
        instances: 3,
        inputs_digest: None,
        output_digest: None,
        verification: "pass".into(),
        operator: "gateway".into(),
        reason: "consent: opt-out default".into(),
        refers_to: None,
    }
}

/// A site with: patient A's release to `acme` (position 0), patient B's
/// release to a recipient named like a script (position 1), patient A's
/// refusal (position 2), a checkpoint, a staff lookup of A; and one
/// invitation per patient (returned: tokens for A and B).
fn portal(name: &str) -> (Portal, String, String) {
    logs();
    let home = veil_test::scratch(name);
    Site::init(None, &home).unwrap();
    let mut site = Site::open(None, &home).unwrap();
    let a = site.patient_ref(&Phi::new(PID_A.to_string()));
    let b = site.patient_ref(&Phi::new(PID_B.to_string()));
    site.log_decisions(
        vec![
            entry(&a, Event::Release, "acme", "2026-03-01T10:00:00Z"),
            entry(&b, Event::Release, EVIL, "2026-03-02T10:00:00Z"),
            entry(&a, Event::Refusal, EVIL, "2026-03-03T10:00:00Z"),
        ],
        |_, _| Ok(()),
    )
    .unwrap();
    site.checkpoint().unwrap().unwrap();
    site.store
        .portal_insert_lookup("l1", "reviewer", &a, T0 - 100)
        .unwrap();
    let ta = Invitation::issue(&mut site, &Phi::new(PID_A.into()), 14, "test", T0).unwrap();
    let tb = Invitation::issue(&mut site, &Phi::new(PID_B.into()), 14, "test", T0).unwrap();
    let clock = Arc::new(AtomicI64::new(T0 + 10));
    let c = clock.clone();
    let app = router_with_clock(
        site,
        WebConfig::default(),
        Arc::new(move || c.load(Ordering::SeqCst)),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (
        Portal { app, rt, clock },
        ta.expose().clone(),
        tb.expose().clone(),
    )
}

/// Redeems `token` with `password`; the client is then signed in.
fn redeem(p: &Portal, c: &mut Client, token: &str, password: &str) -> Reply {
    let form = c.get(p, &format!("/invite/{token}"));
    assert_eq!(form.status, StatusCode::OK);
    let csrf = Client::csrf(&form);
    c.post(
        p,
        &format!("/invite/{token}"),
        &[
            ("csrf", &csrf),
            ("password", password),
            ("password2", password),
        ],
    )
}

#[test]
fn invitation_sets_password_signs_in_and_lands_on_the_list() {
    let (p, ta, _) = portal("web-flow");
    let mut c = Client::default();
    // not signed in: the list redirects to sign-in
    let r = c.get(&p, "/");
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/signin"));

    let r = redeem(&p, &mut c, &ta, PW_A);
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
    let cookie = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("veil_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");

    let list = c.get(&p, "/");
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("<h1>Where my images went</h1>"));
    assert!(list.body.contains("Sent to acme"), "{}", list.body);
    assert!(list.body.contains("href=\"/entries/0\""));
    assert!(list.body.contains("href=\"/entries/2\""));
    assert!(list.body.contains("ai-training"));
    assert!(list.body.contains("2026-03-01"));
    // the TOTP step is offered
    assert!(list.body.contains("href=\"/totp\""));
    // B's entry is not listed
    assert!(!list.body.contains("/entries/1\""));

    // the invitation is one-time: the link says so before a password
    // is typed, and a form posted anyway is refused
    let mut other = Client::default();
    let r = other.get(&p, &format!("/invite/{ta}"));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("already used"), "{}", r.body);
    let r = other.get(&p, "/signin");
    let csrf = Client::csrf(&r);
    let r = other.post(
        &p,
        &format!("/invite/{ta}"),
        &[
            ("csrf", &csrf),
            ("password", "another long password"),
            ("password2", "another long password"),
        ],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("already used"), "{}", r.body);
    let r = other.get(&p, "/invite/not-a-token");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("not valid"), "{}", r.body);

    // one entry, with its proof block and the script as a file
    let e = c.get(&p, "/entries/0");
    assert_eq!(e.status, StatusCode::OK);
    assert!(e.body.contains("data-veil-proof"));
    assert!(e
        .body
        .contains("<script type=\"application/json\">{\"format\":\"veil-ledger-proof/1\""));
    assert!(e
        .body
        .contains("<script type=\"module\" src=\"/static/proof.js\">"));
    assert!(e.body.contains("role=\"status\""));

    // lookups: role and date, never a name
    let l = c.get(&p, "/lookups");
    assert_eq!(l.status, StatusCode::OK);
    assert!(l.body.contains("reviewer"));

    // about proofs: the verifier key
    let a = c.get(&p, "/about-proofs");
    assert!(a.body.contains("veil-ledger/"), "{}", a.body);

    // static files
    let js = c.get(&p, "/static/proof.js");
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.headers.get(header::CONTENT_TYPE).unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.body, veil_ledger::PROOF_JS);
    let css = c.get(&p, "/static/portal.css");
    assert!(css
        .headers
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/css"));

    // sign-out ends the session: the cookie is cleared, and the old
    // token no longer works either
    let old = c.jar.clone();
    let list = c.get(&p, "/");
    let csrf = Client::csrf(&list);
    let r = c.post(&p, "/signout", &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/signin"));
    assert!(!c.jar.contains_key("veil_session"));
    let mut replay = Client { jar: old };
    let r = replay.get(&p, "/");
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/signin"));

    // signing out without a session lands on the sign-in page
    let r = replay.post(&p, "/signout", &[("csrf", &csrf)]);
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/signin"));

    // sign in again with the patient ID and password
    let form = c.get(&p, "/signin");
    let csrf = Client::csrf(&form);
    let r = c.post(
        &p,
        "/signin",
        &[
            ("csrf", &csrf),
            ("patient_id", PID_A),
            ("password", PW_A),
            ("code", ""),
        ],
    );
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
    assert_eq!(c.get(&p, "/").status, StatusCode::OK);
}

/// The value of the hidden input `name` in a page.
#[test]
fn totp_enrollment_then_sign_in_needs_the_code() {
    let (p, ta, _) = portal("web-totp");
    let mut c = Client::default();
    redeem(&p, &mut c, &ta, PW_A);
    let page = c.get(&p, "/totp");
    assert_eq!(page.status, StatusCode::OK);
    let i = page.body.find("otpauth://").unwrap();
    let uri = page.body[i..i + page.body[i..].find('<').unwrap()].replace("&amp;", "&");
    assert!(!uri.contains(PID_A), "the app's account name is not the ID");
    let totp = totp_rs::TOTP::from_url(&uri).unwrap();
    let now = p.clock.load(Ordering::SeqCst) as u64;
    let (csrf, nonce) = (hidden(&page, "csrf"), hidden(&page, "nonce"));
    // a wrong code: refused, a new key shown
    let r = c.post(
        &p,
        "/totp",
        &[("csrf", &csrf), ("nonce", &nonce), ("code", "000000")],
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("did not match"));
    let code = totp.generate(now);
    let r = c.post(
        &p,
        "/totp",
        &[("csrf", &csrf), ("nonce", &nonce), ("code", &code)],
    );
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
    // enrolled: the list no longer offers it
    assert!(!c.get(&p, "/").body.contains("href=\"/totp\""));

    let mut d = Client::default();
    let csrf = Client::csrf(&d.get(&p, "/signin"));
    let r = d.post(
        &p,
        "/signin",
        &[("csrf", &csrf), ("patient_id", PID_A), ("password", PW_A)],
    );
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("enter the code"), "{}", r.body);
    p.clock.fetch_add(30, Ordering::SeqCst);
    let code = totp.generate(now + 30);
    let r = d.post(
        &p,
        "/signin",
        &[
            ("csrf", &csrf),
            ("patient_id", PID_A),
            ("password", PW_A),
            ("code", &code),
        ],
    );
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
}

#[test]
fn an_expired_invitation_is_refused() {
    let (p, ta, _) = portal("web-inv-expired");
    p.clock.fetch_add(15 * 86_400, Ordering::SeqCst);
    let mut c = Client::default();
    let r = c.get(&p, &format!("/invite/{ta}"));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("expired"), "{}", r.body);
}

#[test]
fn sixth_wrong_password_is_refused_without_checking() {
    let (p, ta, _) = portal("web-lockout");
    let mut c = Client::default();
    redeem(&p, &mut c, &ta, PW_A);
    let mut c = Client::default();
    let form = c.get(&p, "/signin");
    let csrf = Client::csrf(&form);
    for i in 0..5 {
        let r = c.post(
            &p,
            "/signin",
            &[
                ("csrf", &csrf),
                ("patient_id", PID_A),
                ("password", "wrong password here"),
            ],
        );
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(r.body.contains("Sign-in refused"));
    }
    // the 6th, even with the right password, is refused
    let r = c.post(
        &p,
        "/signin",
        &[("csrf", &csrf), ("patient_id", PID_A), ("password", PW_A)],
    );
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert!(r.body.contains("Too many failed attempts"));
    // a minute later it works
    p.clock.fetch_add(61, Ordering::SeqCst);
    let r = c.post(
        &p,
        "/signin",
        &[("csrf", &csrf), ("patient_id", PID_A), ("password", PW_A)],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[test]
fn parallel_wrong_passwords_get_no_more_than_five_checks() {
    // the password is verified outside the site's lock: attempts between
    // their check and their record count as failures, so 12 guesses sent
    // at once are not all checked
    let (p, ta, _) = portal("web-lockout-parallel");
    let mut c = Client::default();
    redeem(&p, &mut c, &ta, PW_A);
    let mut c = Client::default();
    let form = c.get(&p, "/signin");
    let csrf = Client::csrf(&form);
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (p, csrf) = (&p, csrf.clone());
                let mut c = Client { jar: c.jar.clone() };
                s.spawn(move || {
                    c.post(
                        p,
                        "/signin",
                        &[
                            ("csrf", &csrf),
                            ("patient_id", PID_A),
                            ("password", "wrong password here"),
                        ],
                    )
                    .status
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!((1..=5).contains(&checked), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // after five recorded failures, the right password is refused too
    for _ in checked..5 {
        let r = c.post(
            &p,
            "/signin",
            &[
                ("csrf", &csrf),
                ("patient_id", PID_A),
                ("password", "wrong password here"),
            ],
        );
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = c.post(
        &p,
        "/signin",
        &[("csrf", &csrf), ("patient_id", PID_A), ("password", PW_A)],
    );
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn every_post_without_its_csrf_token_is_403() {
    let (p, ta, _) = portal("web-csrf");
    let mut c = Client::default();
    // the invitation form without the token (and with a wrong one)
    c.get(&p, &format!("/invite/{ta}"));
    for csrf in [None, Some("x".repeat(43))] {
        let mut f = vec![("password", PW_A), ("password2", PW_A)];
        if let Some(t) = &csrf {
            f.push(("csrf", t));
        }
        let r = c.post(&p, &format!("/invite/{ta}"), &f);
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    // a cross-site form cannot carry the cookie (SameSite=Strict) nor
    // read the token: a request with a token but no cookie is refused
    let mut stranger = Client::default();
    let r = stranger.post(
        &p,
        "/signin",
        &[
            ("csrf", &"y".repeat(43)),
            ("patient_id", PID_A),
            ("password", PW_A),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // the invitation is still unused after the refusals
    let r = redeem(&p, &mut c, &ta, PW_A);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // signed in: sign-out and TOTP without the session's token
    for (uri, f) in [
        ("/signout", vec![]),
        ("/signout", vec![("csrf", "wrong")]),
        ("/totp", vec![("nonce", "n"), ("code", "123456")]),
    ] {
        let r = c.post(&p, uri, &f);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // still signed in
    assert_eq!(c.get(&p, "/").status, StatusCode::OK);
}

#[test]
fn a_patient_reaches_only_their_own_entries() {
    let (p, ta, tb) = portal("web-authz");
    let mut a = Client::default();
    redeem(&p, &mut a, &ta, PW_A);
    let mut b = Client::default();
    redeem(&p, &mut b, &tb, "a long password for B");
    // B's entry (1) for A: 404, like no entry at all
    for uri in ["/entries/1", "/entries/99", "/entries/x", "/entries/-1"] {
        let r = a.get(&p, uri);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!r.body.contains(EVIL));
    }
    // A's entries for B: 404
    assert_eq!(b.get(&p, "/entries/0").status, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&p, "/entries/2").status, StatusCode::NOT_FOUND);
    // B's own entry: 200
    assert_eq!(b.get(&p, "/entries/1").status, StatusCode::OK);
    // B sees no lookup (A's)
    assert!(b.get(&p, "/lookups").body.contains("No one has looked up"));
}

#[test]
fn a_recipient_named_like_a_script_is_escaped() {
    let (p, _, tb) = portal("web-escape");
    let mut b = Client::default();
    redeem(&p, &mut b, &tb, "a long password for B");
    for uri in ["/", "/entries/1"] {
        let r = b.get(&p, uri);
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.body.contains(EVIL), "{uri}: {}", r.body);
        assert!(
            r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{uri}"
        );
    }
    // inside the JSON data block, '<' is \u003c: the block cannot be closed
    let r = b.get(&p, "/entries/1");
    let start = r.body.find("<script type=\"application/json\">").unwrap();
    let end = start + r.body[start..].find("</script>").unwrap();
    let block = &r.body[start + 32..end];
    assert!(!block.contains('<'), "{block}");
    assert!(
        block.contains("\\u003cscript>alert(1)\\u003c/script>"),
        "{block}"
    );
    let bundle: veil_ledger::ProofBundle = serde_json::from_str(block).unwrap();
    assert!(bundle.leaf.contains(EVIL));
}

#[test]
fn an_expired_session_redirects_to_sign_in() {
    let (p, ta, _) = portal("web-expiry");
    let mut c = Client::default();
    redeem(&p, &mut c, &ta, PW_A);
    assert_eq!(c.get(&p, "/").status, StatusCode::OK);
    // idle: 30 minutes by default
    p.clock.fetch_add(29 * 60, Ordering::SeqCst);
    assert_eq!(
        c.get(&p, "/").status,
        StatusCode::OK,
        "touched: idle restarts"
    );
    p.clock.fetch_add(30 * 60, Ordering::SeqCst);
    for uri in ["/", "/entries/0", "/lookups", "/totp"] {
        let r = c.get(&p, uri);
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, "/signin"),
            "{uri}"
        );
    }
}

#[test]
fn security_headers_on_every_response() {
    let (p, ta, _) = portal("web-headers");
    let mut c = Client::default();
    let mut replies = vec![
        c.get(&p, "/signin"),
        c.get(&p, &format!("/invite/{ta}")),
        c.get(&p, "/nowhere"),
        c.get(&p, "/static/portal.css"),
    ];
    redeem(&p, &mut c, &ta, PW_A);
    replies.push(c.get(&p, "/"));
    replies.push(c.get(&p, "/entries/0"));
    replies.push(c.get(&p, "/about-proofs"));
    for r in &replies {
        let h = |n| r.headers.get(n).map(|v| v.to_str().unwrap()).unwrap_or("");
        assert_eq!(h(header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(h(header::REFERRER_POLICY), "no-referrer");
        assert!(!h(header::CACHE_CONTROL).is_empty());
    }
    for r in &replies[..3] {
        assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    }
    assert_eq!(replies[2].status, StatusCode::NOT_FOUND);
    // pages: a language, a viewport, a skip link to <main>, labels
    for r in [&replies[0], &replies[1], &replies[4]] {
        assert!(r.body.contains("<html lang=\"en\">"));
        assert!(r.body.contains("name=\"viewport\""));
        assert!(r.body.contains("href=\"#main\""));
        assert!(r.body.contains("<main id=\"main\""));
        assert!(!r.body.contains("style="), "no inline style");
    }
    assert!(replies[0].body.contains("<label for=\"patient_id\">"));
}

#[test]
fn secure_cookies_over_https() {
    logs();
    let home = veil_test::scratch("web-secure");
    Site::init(None, &home).unwrap();
    let site = Site::open(None, &home).unwrap();
    let app = router_with_clock(
        site,
        WebConfig {
            secure_cookies: true,
            ..Default::default()
        },
        Arc::new(|| T0),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        app.oneshot(Request::get("/signin").body(Body::empty()).unwrap())
            .await
            .unwrap()
    });
    let c = r
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(c.starts_with("__Host-veil_csrf="), "{c}");
    assert!(c.contains("; Secure"), "{c}");
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
}

#[test]
fn logs_hold_routes_and_statuses_never_a_patient_id_or_what_was_typed() {
    let (p, ta, _) = portal("web-logs");
    let mut c = Client::default();
    redeem(&p, &mut c, &ta, PW_A);
    let form = c.get(&p, "/signin");
    let csrf = Client::csrf(&form);
    c.post(
        &p,
        "/signin",
        &[
            ("csrf", &csrf),
            ("patient_id", PID_A),
            ("password", "typed wrong password"),
        ],
    );
    c.post(
        &p,
        "/signin",
        &[("csrf", &csrf), ("patient_id", PID_B), ("password", PW_A)],
    );
    c.get(&p, "/entries/0");
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(text.contains("route=/invite/{token}"), "{text}");
    assert!(
        text.contains("route=/signin") && text.contains("status=401"),
        "{text}"
    );
    for secret in [
        PID_A,
        PID_B,
        PW_A,
        "typed wrong password",
        ta.as_str(),
        &csrf,
    ] {
        assert!(!text.contains(secret), "a log line holds a secret");
    }
    let _ = Secret::from("unused");
}
