//! Issue 19: the portal's core on both engines (SQLite always,
//! PostgreSQL when `VEIL_TEST_PG_URL` is set; `VEIL_REQUIRE_PG` makes its
//! absence a failure). Time is injected: every call takes unix seconds.

use std::path::Path;

use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_portal::{
    add_staff, confirm_totp, record_lookup, set_staff_disabled, sign_in_patient, sign_in_staff,
    start_totp, Invitation, Kind, Limits, Portal, PortalError, Role, Secret, SessionPolicy,
    Sessions,
};
use veil_release::Site;

const T0: i64 = 1_800_000_000;
const PID: &str = "MRN-4711-DOE";

fn pid() -> Phi<String> {
    Phi::new(PID.to_string())
}

fn pw(s: &str) -> Secret {
    Secret::from(s)
}

fn totp_code(uri: &Secret, at: i64) -> Secret {
    let t = totp_rs::TOTP::from_url(uri.expose()).unwrap();
    Secret::new(t.generate(at as u64))
}

/// Every text column of every portal table, and the whole ledger.
fn everything_stored(site: &mut Site) -> String {
    let mut all = String::new();
    for (t, cols) in [
        ("portal_invitations", "token_hash, patient_ref"),
        (
            "portal_patients",
            "patient_ref, password_hash, COALESCE(totp_nonce, '')",
        ),
        (
            "portal_staff",
            "name, role, password_hash, COALESCE(totp_nonce, '')",
        ),
        ("portal_sessions", "token_hash, kind, subject, csrf_token"),
        ("portal_attempts", "attempt_key, outcome"),
        ("portal_lookups", "id, staff_role, patient_ref"),
        ("ledger", "entry, leaf_hash"),
    ] {
        for r in site
            .store
            .query(&format!("SELECT {cols} FROM {t}"), &[])
            .unwrap()
        {
            for v in r {
                all.push_str(v.text().unwrap_or_default());
                all.push('\n');
            }
        }
    }
    all
}

fn staff_entries(site: &mut Site) -> Vec<Entry> {
    site.store
        .ledger_rows()
        .unwrap()
        .iter()
        .map(|r| Entry::from_leaf(&r.entry).unwrap())
        .filter(|e| e.event == Event::StaffAction)
        .collect()
}

fn suite(db: Option<&str>, home: &Path) {
    Site::init(db, home).unwrap();
    let mut site = Site::open(db, home).unwrap();
    let portal = Portal::default();
    assert_eq!(
        portal.limits,
        Limits {
            max_failures: 5,
            window_seconds: 60
        }
    );
    let mut secrets: Vec<String> = Vec::new();

    // ---- invitation -> redeem -> sign-in -----------------------------------
    let token = Invitation::issue(&mut site, &pid(), 14, "tester", T0).unwrap();
    assert_eq!(token.expose().len(), 43, "256 bits, URL-safe base64");
    assert!(token
        .expose()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    secrets.push(token.expose().clone());
    // a short password is refused before anything is used
    assert!(matches!(
        Invitation::redeem(&mut site, &portal.limits, &token, &pw("short"), T0 + 10),
        Err(PortalError::WeakPassword(_))
    ));
    let password = "first password, long enough";
    secrets.push(password.into());
    let pref =
        Invitation::redeem(&mut site, &portal.limits, &token, &pw(password), T0 + 10).unwrap();
    assert_eq!(pref, site.patient_ref(&pid()));
    let s = sign_in_patient(&mut site, &portal, &pid(), &pw(password), None, T0 + 20).unwrap();
    secrets.push(s.token.expose().clone());
    let live = Sessions::lookup(&mut site.store, &portal.sessions, s.token.expose(), T0 + 21)
        .unwrap()
        .unwrap();
    assert_eq!(
        (live.kind, live.subject.as_str()),
        (Kind::Patient, pref.as_str())
    );
    assert_eq!(live.csrf, s.csrf);
    assert!(Sessions::csrf_ok(&live, s.csrf.expose()));
    assert!(!Sessions::csrf_ok(&live, "forged"));
    // a wrong password for the same patient, a right one for another ID
    assert!(matches!(
        sign_in_patient(
            &mut site,
            &portal,
            &pid(),
            &pw("not the password!"),
            None,
            T0 + 22
        ),
        Err(PortalError::BadCredentials)
    ));
    assert!(matches!(
        sign_in_patient(
            &mut site,
            &portal,
            &Phi::new("someone else".to_string()),
            &pw(password),
            None,
            T0 + 22
        ),
        Err(PortalError::BadCredentials)
    ));

    // ---- one-time: a used invitation is refused ----------------------------
    assert!(matches!(
        Invitation::redeem(
            &mut site,
            &portal.limits,
            &token,
            &pw("another password ok"),
            T0 + 30
        ),
        Err(PortalError::InvitationUsed)
    ));
    assert!(matches!(
        Invitation::redeem(
            &mut site,
            &portal.limits,
            &pw("no-such-token"),
            &pw("another password ok"),
            T0 + 30
        ),
        Err(PortalError::InvitationUnknown)
    ));
    // ---- expiry: usable until the end of day 14, not after -----------------
    let late = Invitation::issue(&mut site, &pid(), 14, "tester", T0).unwrap();
    secrets.push(late.expose().clone());
    assert!(matches!(
        Invitation::redeem(
            &mut site,
            &portal.limits,
            &late,
            &pw("another password ok"),
            T0 + 14 * 86_400
        ),
        Err(PortalError::InvitationExpired)
    ));
    // the old password still works: nothing was changed by the refusals
    sign_in_patient(&mut site, &portal, &pid(), &pw(password), None, T0 + 40).unwrap();

    // ---- lost password: a new invitation replaces it, ends old sessions ----
    let again = Invitation::issue(&mut site, &pid(), 1, "tester", T0 + 100).unwrap();
    secrets.push(again.expose().clone());
    let password2 = "second password, also long";
    secrets.push(password2.into());
    Invitation::redeem(&mut site, &portal.limits, &again, &pw(password2), T0 + 200).unwrap();
    assert!(
        Sessions::lookup(
            &mut site.store,
            &portal.sessions,
            s.token.expose(),
            T0 + 201
        )
        .unwrap()
        .is_none(),
        "a replaced password ends the sessions signed in with the old one"
    );
    assert!(matches!(
        sign_in_patient(&mut site, &portal, &pid(), &pw(password), None, T0 + 202),
        Err(PortalError::BadCredentials)
    ));
    sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, T0 + 203).unwrap();

    // ---- lockout: 5 failures, the 6th is refused even when right -----------
    let t = T0 + 1000;
    for i in 0..5 {
        assert!(matches!(
            sign_in_patient(
                &mut site,
                &portal,
                &pid(),
                &pw("wrong password 123"),
                None,
                t + i
            ),
            Err(PortalError::BadCredentials)
        ));
    }
    match sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, t + 10) {
        Err(PortalError::Locked {
            retry_after_seconds,
        }) => assert_eq!(retry_after_seconds, 50),
        other => panic!("the 6th attempt in the minute must be refused: {other:?}"),
    }
    assert!(matches!(
        sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, t + 59),
        Err(PortalError::Locked { .. })
    ));
    // a minute after the first failure one slot is free again
    sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, t + 60).unwrap();
    // staff lockout is per name: another subject is not affected
    // (checked below with staff sign-in)

    // ---- invitations use the same limiter ----------------------------------
    let guess = pw("guessed-token");
    for i in 0..5 {
        assert!(matches!(
            Invitation::redeem(
                &mut site,
                &portal.limits,
                &guess,
                &pw("a password long enough"),
                t + i
            ),
            Err(PortalError::InvitationUnknown)
        ));
    }
    assert!(matches!(
        Invitation::redeem(
            &mut site,
            &portal.limits,
            &guess,
            &pw("a password long enough"),
            t + 5
        ),
        Err(PortalError::Locked { .. })
    ));

    // ---- TOTP: required once enrolled --------------------------------------
    let t = T0 + 5000;
    let en = start_totp(&site, Kind::Patient, &pref).unwrap();
    secrets.push(en.secret_base32.expose().clone());
    assert!(en.uri.expose().starts_with("otpauth://totp/Veil:"));
    assert!(!en.uri.expose().contains(PID), "the app never shows the ID");
    // not enrolled until confirmed with a code
    sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, t).unwrap();
    assert!(
        matches!(
            confirm_totp(&mut site, Kind::Patient, &pref, &en.nonce, &pw("000000"), t),
            Err(PortalError::BadCredentials)
        ) || totp_code(&en.uri, t).expose() == "000000"
    );
    let code = totp_code(&en.uri, t);
    confirm_totp(&mut site, Kind::Patient, &pref, &en.nonce, &code, t).unwrap();
    assert!(matches!(
        sign_in_patient(&mut site, &portal, &pid(), &pw(password2), None, t + 1),
        Err(PortalError::TotpRequired)
    ));
    let wrong = {
        let c: u32 = totp_code(&en.uri, t + 2).expose().parse().unwrap();
        Secret::new(format!("{:06}", (c + 1) % 1_000_000))
    };
    assert!(matches!(
        sign_in_patient(
            &mut site,
            &portal,
            &pid(),
            &pw(password2),
            Some(&wrong),
            t + 2
        ),
        Err(PortalError::BadCredentials)
    ));
    // one step either side is accepted, two steps are not
    sign_in_patient(
        &mut site,
        &portal,
        &pid(),
        &pw(password2),
        Some(&totp_code(&en.uri, t + 30)),
        t + 3,
    )
    .unwrap();
    assert!(matches!(
        sign_in_patient(
            &mut site,
            &portal,
            &pid(),
            &pw(password2),
            Some(&totp_code(&en.uri, t + 3 + 90)),
            t + 3
        ),
        Err(PortalError::BadCredentials)
    ));
    // the right code with the wrong password is still refused
    assert!(matches!(
        sign_in_patient(
            &mut site,
            &portal,
            &pid(),
            &pw("wrong password 123"),
            Some(&totp_code(&en.uri, t + 4)),
            t + 4
        ),
        Err(PortalError::BadCredentials)
    ));

    // ---- sessions: idle and absolute expiry, revoke -------------------------
    let pol = SessionPolicy {
        idle_seconds: 1800,
        max_seconds: 12 * 3600,
    };
    assert_eq!(pol, SessionPolicy::default());
    let t = T0 + 10_000;
    let a = Sessions::create(&mut site.store, &pol, Kind::Patient, &pref, t).unwrap();
    secrets.push(a.token.expose().clone());
    assert!(
        Sessions::lookup(&mut site.store, &pol, a.token.expose(), t + 1799)
            .unwrap()
            .is_some()
    );
    assert!(
        Sessions::lookup(&mut site.store, &pol, a.token.expose(), t + 1800)
            .unwrap()
            .is_none(),
        "idle for 30 minutes: gone"
    );
    assert!(
        Sessions::lookup(&mut site.store, &pol, a.token.expose(), t + 1)
            .unwrap()
            .is_none(),
        "an expired session is deleted, not just hidden"
    );
    // kept alive by use, it still ends after 12 hours
    let b = Sessions::create(&mut site.store, &pol, Kind::Patient, &pref, t).unwrap();
    let mut now = t;
    while now + 1500 < t + 12 * 3600 {
        now += 1500;
        assert!(
            Sessions::lookup(&mut site.store, &pol, b.token.expose(), now)
                .unwrap()
                .is_some(),
            "alive at {}",
            now - t
        );
        assert!(Sessions::touch(&mut site.store, b.token.expose(), now).unwrap());
    }
    assert!(
        Sessions::lookup(&mut site.store, &pol, b.token.expose(), t + 12 * 3600)
            .unwrap()
            .is_none()
    );
    let c = Sessions::create(&mut site.store, &pol, Kind::Patient, &pref, t).unwrap();
    assert!(Sessions::revoke(&mut site.store, c.token.expose()).unwrap());
    assert!(
        Sessions::lookup(&mut site.store, &pol, c.token.expose(), t + 1)
            .unwrap()
            .is_none()
    );

    // ---- staff: add, sign in, look up; each a ledger entry -----------------
    let issued = staff_entries(&mut site);
    assert_eq!(
        issued.len(),
        3,
        "each invitation is logged; patients' own actions are not"
    );
    assert!(issued.iter().all(|e| e.operator == "tester"
        && e.patient_ref.as_deref() == Some(pref.as_str())
        && e.reason
            .starts_with("portal invitation issued (expires in ")));
    let spw = "staff password, twelve+";
    secrets.push(spw.into());
    assert!(matches!(
        add_staff(
            &mut site,
            "alice",
            Role::Reviewer,
            &pw("too short"),
            "tester",
            t
        ),
        Err(PortalError::WeakPassword(_))
    ));
    add_staff(&mut site, "alice", Role::Reviewer, &pw(spw), "tester", t).unwrap();
    assert!(add_staff(&mut site, "alice", Role::Admin, &pw(spw), "tester", t).is_err());
    let ss = sign_in_staff(&mut site, &portal, "alice", &pw(spw), None, t + 1).unwrap();
    secrets.push(ss.token.expose().clone());
    let staff_session =
        Sessions::lookup(&mut site.store, &portal.sessions, ss.token.expose(), t + 2)
            .unwrap()
            .unwrap();
    assert_eq!(staff_session.kind, Kind::Staff);
    record_lookup(&mut site, &staff_session, &pid(), t + 3).unwrap();
    assert_eq!(
        site.store.portal_lookups_for(&pref).unwrap(),
        vec![("reviewer".to_string(), t + 3)],
        "the patient sees the role and the time, not the name"
    );
    // a wrong staff password does not lock the patient, and vice versa
    for i in 0..5 {
        assert!(sign_in_staff(
            &mut site,
            &portal,
            "alice",
            &pw("wrong password 123"),
            None,
            t + 10 + i
        )
        .is_err());
    }
    assert!(matches!(
        sign_in_staff(&mut site, &portal, "alice", &pw(spw), None, t + 20),
        Err(PortalError::Locked { .. })
    ));
    sign_in_patient(
        &mut site,
        &portal,
        &pid(),
        &pw(password2),
        Some(&totp_code(&en.uri, t + 20)),
        t + 20,
    )
    .unwrap();
    sign_in_staff(&mut site, &portal, "alice", &pw(spw), None, t + 80).unwrap();
    // staff TOTP: enrolled (a ledger entry), then required
    let se = start_totp(&site, Kind::Staff, "alice").unwrap();
    secrets.push(se.secret_base32.expose().clone());
    assert!(
        se.uri.expose().contains("console%20alice"),
        "{}",
        se.uri.expose()
    );
    confirm_totp(
        &mut site,
        Kind::Staff,
        "alice",
        &se.nonce,
        &totp_code(&se.uri, t + 90),
        t + 90,
    )
    .unwrap();
    assert!(matches!(
        sign_in_staff(&mut site, &portal, "alice", &pw(spw), None, t + 91),
        Err(PortalError::TotpRequired)
    ));
    // the patient's code is not the staff member's
    assert!(
        matches!(
            sign_in_staff(
                &mut site,
                &portal,
                "alice",
                &pw(spw),
                Some(&totp_code(&en.uri, t + 92)),
                t + 92
            ),
            Err(PortalError::BadCredentials)
        ) || totp_code(&en.uri, t + 92) == totp_code(&se.uri, t + 92)
    );
    sign_in_staff(
        &mut site,
        &portal,
        "alice",
        &pw(spw),
        Some(&totp_code(&se.uri, t + 93)),
        t + 93,
    )
    .unwrap();
    // the store holds the nonce, not the secret (checked below)
    let nonce = site
        .store
        .portal_staff("alice")
        .unwrap()
        .unwrap()
        .totp_nonce;
    assert_eq!(nonce.as_deref(), Some(se.nonce.expose().as_str()));
    // a disabled account cannot sign in
    let live = sign_in_staff(
        &mut site,
        &portal,
        "alice",
        &pw(spw),
        Some(&totp_code(&se.uri, t + 94)),
        t + 94,
    )
    .unwrap();
    set_staff_disabled(&mut site, "alice", true, "admin1", t + 95).unwrap();
    assert!(
        Sessions::lookup(
            &mut site.store,
            &portal.sessions,
            live.token.expose(),
            t + 96
        )
        .unwrap()
        .is_none(),
        "disabling ends the account's sessions"
    );
    assert!(matches!(
        sign_in_staff(&mut site, &portal, "alice", &pw(spw), None, t + 200),
        Err(PortalError::BadCredentials)
    ));
    let es = staff_entries(&mut site);
    let reasons: Vec<&str> = es.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons[3..],
        [
            "staff account alice added (role reviewer)",
            "signed in to the console",
            "looked up a patient (role reviewer)",
            "signed in to the console",
            "second factor (TOTP) enrolled",
            "signed in to the console",
            "signed in to the console",
            "staff account alice disabled",
        ],
        "{reasons:?}"
    );
    assert_eq!(es[3].operator, "tester");
    assert_eq!(es[4].operator, "alice");
    assert_eq!(es[5].patient_ref.as_deref(), Some(pref.as_str()));
    let report = site.verify_ledger().unwrap();
    assert!(report.ok, "{:?}", report.problems);

    // ---- flags ---------------------------------------------------------------
    let f = veil_store::portal::FlagRow {
        id: "f1".into(),
        patient_ref: pref.clone(),
        ledger_seq: Some(2),
        source: "patient".into(),
        rule_name: None,
        reason: "I did not agree to this".into(),
        status: "open".into(),
        created_at: t,
        updated_at: t,
    };
    site.store.portal_insert_flag(&f).unwrap();
    site.store
        .portal_insert_flag(&veil_store::portal::FlagRow {
            id: "f2".into(),
            ledger_seq: None,
            source: "rule".into(),
            rule_name: Some("many-lookups".into()),
            reason: "more than 3 lookups in a day".into(),
            ..f.clone()
        })
        .unwrap();
    assert!(site
        .store
        .portal_insert_flag(&veil_store::portal::FlagRow {
            id: "f3".into(),
            status: "maybe".into(),
            ..f.clone()
        })
        .is_err());
    assert!(site
        .store
        .portal_close_flag("f1", "handled", t + 5)
        .unwrap());
    assert!(!site
        .store
        .portal_close_flag("f1", "dismissed", t + 6)
        .unwrap());
    let flags = site.store.portal_flags_for(&pref).unwrap();
    assert_eq!(flags.len(), 2);
    assert_eq!(
        (
            flags[0].status.as_str(),
            flags[0].updated_at,
            flags[0].ledger_seq
        ),
        ("handled", t + 5, Some(2))
    );
    assert_eq!(
        (
            flags[1].status.as_str(),
            flags[1].rule_name.as_deref(),
            flags[1].ledger_seq
        ),
        ("open", Some("many-lookups"), None)
    );

    // ---- nothing secret or identifying is stored ---------------------------
    let stored = everything_stored(&mut site);
    assert!(!stored.contains(PID), "the patient ID is stored somewhere");
    for s in &secrets {
        assert!(!stored.contains(s.as_str()), "a secret is stored in clear");
    }
    // what is stored instead: the token's SHA-256, argon2id PHC strings
    assert!(stored.contains(&veil_portal::token_hash(token.expose())));
    let phc = site
        .store
        .portal_patient(&pref)
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
}

#[test]
fn issue_19_portal_core_sqlite() {
    let home = veil_test::scratch("portal19-sqlite");
    suite(None, &home);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_19_portal_core_postgresql() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_portal19_{}", std::process::id()))
            .unwrap();
    let home = veil_test::scratch("portal19-pg");
    suite(Some(&url), &home);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_19_secrets_and_errors_print_nothing() {
    let s = Secret::from("hunter2hunter2");
    assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
    let e = PortalError::Locked {
        retry_after_seconds: 12,
    };
    assert_eq!(e.to_string(), "too many failed attempts; try again in 12 s");
    assert_eq!(Role::parse("auditor"), Some(Role::Auditor));
    assert_eq!(Role::parse("root"), None);
}
