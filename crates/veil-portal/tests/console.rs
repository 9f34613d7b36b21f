//! Issue 19: the staff console's pages, driven through the axum Router on
//! a real SQLite site with an injected clock: staff sign-in, lockout,
//! CSRF, roles checked on the server (an auditor cannot handle a flag),
//! a patient search that the patient sees with the role only and that
//! the ledger records as a staff action, the lookup rule's flag handled,
//! headers, and logs without a patient ID or anything typed. The search
//! runs on PostgreSQL too when `VEIL_TEST_PG_URL` is set.

mod support;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::Router;
use support::{hidden, logs, Client, Reply, Target};
use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_pipeline::review as queue;
use veil_portal::console::{router_with_clock, ConsoleConfig};
use veil_portal::web::CSP;
use veil_portal::{add_staff, Role, Secret};
use veil_release::Site;

const PID: &str = "CONSOLE-PATIENT-5150";
const ADMIN_PW: &str = "admin password, long enough";
const AUDITOR_PW: &str = "auditor password, long enough";
const T0: i64 = 1_800_000_000;

struct Console {
    app: Router,
    rt: tokio::runtime::Runtime,
    home: std::path::PathBuf,
    db: Option<String>,
    clock: Arc<AtomicI64>,
}

impl Target for Console {
    fn app(&self) -> Router {
        self.app.clone()
    }
    fn rt(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

impl Console {
    /// A second connection to the site, to check what the pages wrote.
    fn site(&self) -> Site {
        Site::open(self.db.as_deref(), &self.home).unwrap()
    }
}

fn release(pref: &str) -> Entry {
    Entry {
        v: 1,
        seq: 0,
        time: "2027-01-10T10:00:00Z".into(),
        event: Event::Release,
        release_id: "r1".into(),
        recipient: "acme-research".into(),
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

/// A site with one release about the patient, an admin `alice` and an
/// auditor `audrey`.
fn console(name: &str) -> Console {
    console_on(name, None)
}

/// As [`console`], on the store `db` (PostgreSQL) when given.
fn console_on(name: &str, db: Option<String>) -> Console {
    console_with(name, db, ConsoleConfig::default())
}

/// As [`console_on`], with the console's settings `cfg`.
fn console_with(name: &str, db: Option<String>, cfg: ConsoleConfig) -> Console {
    logs();
    let home = veil_test::scratch(name);
    Site::init(db.as_deref(), &home).unwrap();
    let mut site = Site::open(db.as_deref(), &home).unwrap();
    let pref = site.patient_ref(&Phi::new(PID.to_string()));
    site.log_decisions(vec![release(&pref)], |_, _| Ok(()))
        .unwrap();
    add_staff(
        &mut site,
        "alice",
        Role::Admin,
        &Secret::new(ADMIN_PW.into()),
        "test",
        T0,
    )
    .unwrap();
    add_staff(
        &mut site,
        "audrey",
        Role::Auditor,
        &Secret::new(AUDITOR_PW.into()),
        "test",
        T0,
    )
    .unwrap();
    let clock = Arc::new(AtomicI64::new(T0 + 10));
    let c = clock.clone();
    let app = router_with_clock(site, cfg, Arc::new(move || c.load(Ordering::SeqCst)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Console {
        app,
        rt,
        home,
        db,
        clock,
    }
}

fn sign_in(p: &Console, c: &mut Client, name: &str, password: &str) -> Reply {
    let form = c.get(p, "/signin");
    assert_eq!(form.status, StatusCode::OK);
    let csrf = Client::csrf(&form);
    c.post(
        p,
        "/signin",
        &[("csrf", &csrf), ("name", name), ("password", password)],
    )
}

/// The session's CSRF token, from a signed-in page.
fn session_csrf(p: &Console, c: &mut Client) -> String {
    let page = c.get(p, "/patients");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    Client::csrf(&page)
}

fn search(p: &Console, c: &mut Client) -> Reply {
    let csrf = session_csrf(p, c);
    c.post(p, "/patients", &[("csrf", &csrf), ("patient_id", PID)])
}

#[test]
fn staff_sign_in_lands_on_the_dashboard_with_the_headers() {
    let p = console("console-signin");
    let mut c = Client::default();
    assert_eq!(c.get(&p, "/").location(), "/signin");
    let r = sign_in(&p, &mut c, "alice", ADMIN_PW);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/");
    let cookie = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("veil_staff_session="))
        .expect("the console's own session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !c.jar.contains_key("veil_session"),
        "not the portal's cookie"
    );

    let d = c.get(&p, "/");
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.body.contains("Dashboard"));
    assert!(d.body.contains("data-ledger-ok=\"true\""), "{}", d.body);
    assert_eq!(d.headers[header::CONTENT_SECURITY_POLICY], CSP);
    assert_eq!(d.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(d.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(d.headers[header::REFERRER_POLICY], "no-referrer");
    assert!(!d.body.contains("<style") && !d.body.contains(" style="));
    assert!(!d.body.contains("<script"));
    for page in ["/recipients", "/flags", "/patients"] {
        assert_eq!(c.get(&p, page).status, StatusCode::OK, "{page}");
    }
    // a patient's session is not a staff session: the sign-in log only
    let mut site = p.site();
    let e = site.entries().unwrap();
    let last = e.last().unwrap();
    assert_eq!(last.event, Event::StaffAction);
    assert_eq!(last.operator, "alice");
}

#[test]
fn sixth_wrong_password_is_locked_out() {
    let p = console("console-lockout");
    let mut c = Client::default();
    for _ in 0..5 {
        let r = sign_in(&p, &mut c, "alice", "not the right password");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("wrong name, password or code"));
    }
    let r = sign_in(&p, &mut c, "alice", ADMIN_PW);
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // an unknown name reads like a wrong password
    let r = sign_in(&p, &mut c, "nobody", ADMIN_PW);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn every_post_without_its_csrf_token_is_403() {
    let p = console("console-csrf");
    let mut c = Client::default();
    c.get(&p, "/signin");
    let r = c.post(&p, "/signin", &[("name", "alice"), ("password", ADMIN_PW)]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sign_in(&p, &mut c, "alice", ADMIN_PW).status,
        StatusCode::SEE_OTHER
    );
    let r = c.post(&p, "/patients", &[("csrf", "forged"), ("patient_id", PID)]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.post(&p, "/flags/x", &[("outcome", "handled")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.post(&p, "/signout", &[]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // nothing was looked up
    let mut site = p.site();
    let pref = site.patient_ref(&Phi::new(PID.to_string()));
    assert!(site.store.portal_lookups_for(&pref).unwrap().is_empty());
    // and sign-out with the token works
    let csrf = session_csrf(&p, &mut c);
    let r = c.post(&p, "/signout", &[("csrf", &csrf)]);
    assert_eq!(r.location(), "/signin");
    assert_eq!(c.get(&p, "/").location(), "/signin");
}

#[test]
fn a_search_is_a_lookup_the_patient_sees_by_role_and_a_ledger_entry() {
    search_scenario(console("console-search"));
}

/// The search and the flag it raises, on PostgreSQL (`VEIL_TEST_PG_URL`).
#[test]
fn a_search_on_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_console19_{}", std::process::id()))
            .unwrap();
    search_scenario(console_on("console-search-pg", Some(url)));
}

fn search_scenario(p: Console) {
    let mut c = Client::default();
    sign_in(&p, &mut c, "alice", ADMIN_PW);
    let before = logs().lock().unwrap().len();
    let r = search(&p, &mut c);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("acme-research"), "{}", r.body);

    let mut site = p.site();
    let pref = site.patient_ref(&Phi::new(PID.to_string()));
    let rows = site.store.portal_lookups_for(&pref).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "admin");
    assert!(!format!("{rows:?}").contains("alice"));
    let entries = site.entries().unwrap();
    let e = entries
        .iter()
        .rev()
        .find(|e| e.event == Event::StaffAction && e.patient_ref.as_deref() == Some(&pref))
        .expect("a staff-action entry for the lookup");
    assert_eq!(e.operator, "alice");
    assert!(e.reason.contains("looked up a patient (role admin)"));
    assert!(!serde_json::to_string(e).unwrap().contains(PID));

    // the lookup rule raised a flag; an admin handles it
    let open = site.store.portal_flags(Some("open")).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].rule_name.as_deref(), Some("lookup_without_reason"));
    let flags = c.get(&p, "/flags");
    assert!(flags.body.contains("lookup_without_reason"));
    assert!(flags.body.contains(&format!("/flags/{}", open[0].id)));
    let csrf = Client::csrf(&flags);
    let r = c.post(
        &p,
        &format!("/flags/{}", open[0].id),
        &[("csrf", &csrf), ("outcome", "handled")],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(site.store.portal_flags(Some("open")).unwrap().is_empty());
    let last = site.entries().unwrap().pop().unwrap();
    assert_eq!(last.event, Event::StaffAction);
    assert!(last.reason.ends_with("handled"), "{}", last.reason);

    let text = String::from_utf8(logs().lock().unwrap()[before..].to_vec()).unwrap();
    assert!(text.contains("route=/patients"), "{text}");
    assert!(!text.contains(PID), "{text}");
    assert!(!text.contains(ADMIN_PW));
}

#[test]
fn an_auditor_reads_but_cannot_handle_a_flag() {
    let p = console("console-auditor");
    let mut admin = Client::default();
    sign_in(&p, &mut admin, "alice", ADMIN_PW);
    search(&p, &mut admin);
    let mut site = p.site();
    let flag = site.store.portal_flags(Some("open")).unwrap().remove(0);

    let mut c = Client::default();
    assert_eq!(
        sign_in(&p, &mut c, "audrey", AUDITOR_PW).status,
        StatusCode::SEE_OTHER
    );
    let list = c.get(&p, "/flags");
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("lookup_without_reason"));
    assert!(
        !list.body.contains(&format!("/flags/{}", flag.id)),
        "no handle form for an auditor"
    );
    let csrf = session_csrf(&p, &mut c);
    let r = c.post(
        &p,
        &format!("/flags/{}", flag.id),
        &[("csrf", &csrf), ("outcome", "dismissed")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(site.store.portal_flags(Some("open")).unwrap().len(), 1);
}

#[test]
fn staff_totp_enrollment_then_sign_in_needs_the_code() {
    let p = console("console-totp");
    let mut c = Client::default();
    sign_in(&p, &mut c, "alice", ADMIN_PW);
    let page = c.get(&p, "/totp");
    assert_eq!(page.status, StatusCode::OK);
    let i = page.body.find("otpauth://").unwrap();
    let uri = page.body[i..i + page.body[i..].find('<').unwrap()].replace("&amp;", "&");
    let totp = totp_rs::TOTP::from_url(&uri).unwrap();
    let now = p.clock.load(Ordering::SeqCst) as u64;
    let (csrf, nonce) = (hidden(&page, "csrf"), hidden(&page, "nonce"));
    let r = c.post(&p, "/totp", &[("nonce", &nonce), ("code", "000000")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c.post(
        &p,
        "/totp",
        &[
            ("csrf", &csrf),
            ("nonce", &nonce),
            ("code", &totp.generate(now)),
        ],
    );
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));

    let mut d = Client::default();
    let r = sign_in(&p, &mut d, "alice", ADMIN_PW);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("enter the code"), "{}", r.body);
    p.clock.fetch_add(30, Ordering::SeqCst);
    let csrf = Client::csrf(&r);
    let r = d.post(
        &p,
        "/signin",
        &[
            ("csrf", &csrf),
            ("name", "alice"),
            ("password", ADMIN_PW),
            ("code", &totp.generate(now + 30)),
        ],
    );
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/"));
}

/// A review folder as `veil deid` leaves it: the index naming the OUT,
/// key id and reasons, and two held objects (real corpus images at
/// pseudonymous paths): `a`, which the pixel stage redacted (its
/// before/after thumbnails beside it), and `b`, held as it is.
fn review_folder(home: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let corpus = veil_test::corpus()?;
    let src = corpus.join("pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm");
    let (review, out) = (home.join("out.review"), home.join("out"));
    for rel in ["P1/S1/R1/a.dcm", "P1/S1/R1/b.dcm"] {
        let dest = review.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dest).unwrap();
    }
    let png = queue::held_picture(&review, "P1/S1/R1/a.dcm", 64).expect("the CT renders");
    std::fs::create_dir_all(review.join(".pixel-review")).unwrap();
    for w in [queue::Picture::Before, queue::Picture::After] {
        veil_io::atomic::write_all(
            &review.join(queue::pixel_review_picture("P1/S1/R1/a.dcm", w)),
            &png,
        )
        .unwrap();
    }
    let mut items = std::collections::BTreeMap::new();
    items.insert(
        "P1/S1/R1/a.dcm".to_string(),
        queue::Item {
            reason: "verify: 1 finding(s): pixel-text".into(),
        },
    );
    items.insert(
        "P1/S1/R1/b.dcm".to_string(),
        queue::Item {
            reason: "modality US may carry burned-in text".into(),
        },
    );
    queue::save(
        &review,
        &queue::Index {
            veil_review: 1,
            out: out.clone(),
            key_id: "k".into(),
            recipe: "t 1".into(),
            items,
        },
    )
    .unwrap();
    Some((review, out))
}

#[test]
fn the_review_queue_shows_pictures_and_a_reviewer_decides() {
    let home = veil_test::scratch("console-review-folder");
    let Some((review, out)) = review_folder(&home) else {
        return;
    };
    let p = console_with(
        "console-review",
        None,
        ConsoleConfig {
            review: vec![review.clone()],
            ..Default::default()
        },
    );
    let mut c = Client::default();
    assert_eq!(c.get(&p, "/review").location(), "/signin");
    assert_eq!(
        c.get(&p, "/review/0/picture?item=P1/S1/R1/b.dcm&which=held")
            .location(),
        "/signin",
        "pictures are for signed-in staff only"
    );
    sign_in(&p, &mut c, "alice", ADMIN_PW);
    assert!(c.get(&p, "/").body.contains("2 objects wait for review"));
    let q = c.get(&p, "/review");
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    assert!(q.body.contains("verify: 1 finding(s): pixel-text"));
    assert!(q.body.contains("modality US may carry burned-in text"));
    for which in ["before", "after"] {
        assert!(q.body.contains(&format!(
            "/review/0/picture?item=P1%2FS1%2FR1%2Fa.dcm&amp;which={which}"
        )));
    }
    assert!(q
        .body
        .contains("/review/0/picture?item=P1%2FS1%2FR1%2Fb.dcm&amp;which=held"));
    for (item, which) in [("a", "before"), ("a", "after"), ("b", "held")] {
        let r = c.get(
            &p,
            &format!("/review/0/picture?item=P1%2FS1%2FR1%2F{item}.dcm&which={which}"),
        );
        assert_eq!(r.status, StatusCode::OK, "{item} {which}");
        assert_eq!(r.headers[header::CONTENT_TYPE], "image/png");
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        assert!(r.body.contains("PNG"));
    }
    // only what the index lists, in a configured folder
    for uri in [
        "/review/0/picture?item=P1%2FS1%2FR1%2Fb.dcm&which=before",
        "/review/0/picture?item=..%2F..%2Fetc%2Fpasswd&which=held",
        "/review/0/picture?item=.veil-review.json&which=held",
        "/review/1/picture?item=P1%2FS1%2FR1%2Fb.dcm&which=held",
    ] {
        assert_eq!(c.get(&p, uri).status, StatusCode::NOT_FOUND, "{uri}");
    }

    // an auditor sees the queue, without buttons, and cannot decide
    let mut a = Client::default();
    sign_in(&p, &mut a, "audrey", AUDITOR_PW);
    let q = a.get(&p, "/review");
    assert!(q.body.contains("modality US") && !q.body.contains(">Approve<"));
    let csrf = session_csrf(&p, &mut a);
    let r = a.post(
        &p,
        "/review/0",
        &[
            ("csrf", &csrf),
            ("item", "P1/S1/R1/b.dcm"),
            ("decision", "approve"),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // no CSRF token: 403, nothing moves
    let r = c.post(
        &p,
        "/review/0",
        &[("item", "P1/S1/R1/b.dcm"), ("decision", "approve")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(review.join("P1/S1/R1/b.dcm").is_file());

    // the admin approves b (into OUT) and rejects a (deleted)
    let csrf = session_csrf(&p, &mut c);
    let before = std::fs::read(review.join("P1/S1/R1/b.dcm")).unwrap();
    let r = c.post(
        &p,
        "/review/0",
        &[
            ("csrf", &csrf),
            ("item", "P1/S1/R1/b.dcm"),
            ("decision", "approve"),
        ],
    );
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/review"),
        "{}",
        r.body
    );
    assert_eq!(std::fs::read(out.join("P1/S1/R1/b.dcm")).unwrap(), before);
    assert!(!review.join("P1/S1/R1/b.dcm").exists());
    let r = c.post(
        &p,
        "/review/0",
        &[
            ("csrf", &csrf),
            ("item", "P1/S1/R1/a.dcm"),
            ("decision", "reject"),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!review.join("P1/S1/R1/a.dcm").exists());
    assert!(!out.join("P1/S1/R1/a.dcm").exists());
    // deciding again: refused with the reason, nothing changes
    let r = c.post(
        &p,
        "/review/0",
        &[
            ("csrf", &csrf),
            ("item", "P1/S1/R1/b.dcm"),
            ("decision", "approve"),
        ],
    );
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(c.get(&p, "/review").body.contains("Nothing waits here"));

    // both decisions are signed ledger entries naming the member of staff
    let mut site = p.site();
    let e = site.entries().unwrap();
    let decided: Vec<_> = e
        .iter()
        .filter(|e| matches!(e.event, Event::ReviewApproval | Event::ReviewRejection))
        .collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    assert!(decided.iter().all(|e| e.operator == "alice"));
    assert!(site.verify_ledger().unwrap().ok);
}

#[test]
fn an_admin_adds_and_disables_accounts_an_auditor_only_reads() {
    let p = console("console-accounts");
    let mut c = Client::default();
    sign_in(&p, &mut c, "alice", ADMIN_PW);
    let list = c.get(&p, "/staff");
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("audrey") && list.body.contains("auditor"));
    let csrf = Client::csrf(&list);

    // add: passwords must match, the name is checked, then it is added
    let add = |c: &mut Client, name: &str, pw2: &str| {
        c.post(
            &p,
            "/staff",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("role", "reviewer"),
                ("password", "reviewer password, long"),
                ("password2", pw2),
            ],
        )
    };
    let r = add(&mut c, "rita", "another password entirely");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("The two passwords differ"));
    let r = add(&mut c, "<b>rita</b>", "reviewer password, long");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("a staff name is 1-64"));
    let r = add(&mut c, "rita", "reviewer password, long");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut rita = Client::default();
    assert_eq!(
        sign_in(&p, &mut rita, "rita", "reviewer password, long").status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(rita.get(&p, "/").status, StatusCode::OK);

    // disable: rita's session ends at once, and she cannot sign in
    let csrf = Client::csrf(&c.get(&p, "/staff"));
    let r = c.post(&p, "/staff/rita", &[("csrf", &csrf), ("action", "disable")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(rita.get(&p, "/").location(), "/signin");
    let mut again = Client::default();
    assert_eq!(
        sign_in(&p, &mut again, "rita", "reviewer password, long").status,
        StatusCode::UNAUTHORIZED
    );
    // not oneself; not an unknown account; not without the token
    let r = c.post(
        &p,
        "/staff/alice",
        &[("csrf", &csrf), ("action", "disable")],
    );
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = c.post(
        &p,
        "/staff/nobody",
        &[("csrf", &csrf), ("action", "disable")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = c.post(&p, "/staff/audrey", &[("action", "disable")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // an auditor reads the list but changes nothing
    let mut a = Client::default();
    sign_in(&p, &mut a, "audrey", AUDITOR_PW);
    let list = a.get(&p, "/staff");
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.body.contains("Add the account") && !list.body.contains(">Enable<"));
    let csrf = session_csrf(&p, &mut a);
    let r = a.post(&p, "/staff/rita", &[("csrf", &csrf), ("action", "enable")]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // each change is a staff action naming the administrator
    let mut site = p.site();
    let reasons: Vec<(String, String)> = site
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.event == Event::StaffAction && e.reason.starts_with("staff account"))
        .map(|e| (e.operator, e.reason))
        .collect();
    assert!(reasons.contains(&(
        "alice".into(),
        "staff account rita added (role reviewer)".into()
    )));
    assert!(reasons.contains(&("alice".into(), "staff account rita disabled".into())));
    assert!(!reasons.iter().any(|(_, r)| r.contains("audrey disabled")));
}
