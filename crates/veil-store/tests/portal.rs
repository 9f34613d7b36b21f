//! Issue 19: the portal's rows (migrations 6 and 7) on both engines (SQLite
//! always, PostgreSQL when `VEIL_TEST_PG_URL` is set). The rules are
//! veil-portal's; here, that the storage does what they rely on.

use veil_store::portal::{FlagRow, InvitationRow, SessionRow, StudyIndexRow};
use veil_store::Store;

fn rows(s: &mut Store) {
    assert_eq!(s.schema_version().unwrap(), 7);
    // an invitation is used once, and not after it expired
    let inv = InvitationRow {
        token_hash: "h1".into(),
        patient_ref: "ref1".into(),
        created_at: 100,
        expires_at: 200,
        used_at: None,
    };
    s.portal_insert_invitation(&inv).unwrap();
    s.portal_insert_invitation(&InvitationRow {
        token_hash: "h2".into(),
        ..inv.clone()
    })
    .unwrap();
    assert!(
        s.portal_insert_invitation(&inv).is_err(),
        "one row per token"
    );
    assert_eq!(s.portal_invitation("h1").unwrap(), Some(inv.clone()));
    assert!(s.portal_use_invitation("h1", 150).unwrap());
    assert!(!s.portal_use_invitation("h1", 151).unwrap(), "one-time");
    assert_eq!(
        s.portal_invitation("h1").unwrap().unwrap().used_at,
        Some(150)
    );
    assert!(!s.portal_use_invitation("h2", 200).unwrap(), "expired");
    assert_eq!(s.portal_invitation("nope").unwrap(), None);

    // a patient's password set, then replaced; the TOTP nonce kept
    s.portal_set_patient_password("ref1", "$argon2id$a", 150)
        .unwrap();
    assert!(s.portal_set_totp("patient", "ref1", Some("n1")).unwrap());
    s.portal_set_patient_password("ref1", "$argon2id$b", 160)
        .unwrap();
    let a = s.portal_patient("ref1").unwrap().unwrap();
    assert_eq!(
        (
            a.password_hash.as_str(),
            a.totp_nonce.as_deref(),
            a.created_at
        ),
        ("$argon2id$b", Some("n1"), 150)
    );
    assert!(!s.portal_set_totp("patient", "ref9", Some("n")).unwrap());
    assert!(s.portal_set_totp("robot", "ref1", None).is_err());

    // staff
    s.portal_insert_staff("alice", "auditor", "$argon2id$s", 170)
        .unwrap();
    assert!(s.portal_insert_staff("alice", "admin", "$x", 171).is_err());
    assert!(s.portal_set_staff_disabled("alice", true).unwrap());
    let st = s.portal_staff("alice").unwrap().unwrap();
    assert_eq!((st.role.as_deref(), st.disabled), (Some("auditor"), true));
    assert!(!s.portal_set_staff_disabled("bob", true).unwrap());

    // sessions: touched forward only, deleted by subject and by expiry
    let row = SessionRow {
        token_hash: "sh1".into(),
        kind: "patient".into(),
        subject: "ref1".into(),
        created_at: 100,
        last_seen_at: 100,
        expires_at: 1000,
        csrf_token: "c1".into(),
    };
    s.portal_insert_session(&row).unwrap();
    s.portal_insert_session(&SessionRow {
        token_hash: "sh2".into(),
        expires_at: 500,
        ..row.clone()
    })
    .unwrap();
    s.portal_insert_session(&SessionRow {
        token_hash: "sh3".into(),
        kind: "staff".into(),
        subject: "alice".into(),
        ..row.clone()
    })
    .unwrap();
    assert!(s.portal_touch_session("sh1", 300).unwrap());
    assert!(
        !s.portal_touch_session("sh1", 200).unwrap(),
        "never backwards"
    );
    assert_eq!(s.portal_session("sh1").unwrap().unwrap().last_seen_at, 300);
    assert_eq!(s.portal_delete_expired_sessions(500).unwrap(), 1);
    assert_eq!(s.portal_delete_sessions_of("patient", "ref1").unwrap(), 1);
    assert!(s.portal_session("sh3").unwrap().is_some());
    assert!(s.portal_delete_session("sh3").unwrap());
    assert!(!s.portal_delete_session("sh3").unwrap());

    // attempts: failures only, latest first, within the window
    for (at, outcome) in [
        (10, "failed"),
        (20, "ok"),
        (30, "failed"),
        (40, "refused"),
        (50, "failed"),
    ] {
        s.portal_record_attempt("patient:ref1", at, outcome)
            .unwrap();
    }
    s.portal_record_attempt("staff:alice", 50, "failed")
        .unwrap();
    assert_eq!(
        s.portal_failures_since("patient:ref1", 0).unwrap(),
        [50, 30, 10]
    );
    assert_eq!(
        s.portal_failures_since("patient:ref1", 30).unwrap(),
        [50, 30]
    );
    assert_eq!(s.portal_prune_attempts(30).unwrap(), 2);
    assert_eq!(
        s.portal_failures_since("patient:ref1", 0).unwrap(),
        [50, 30]
    );

    // lookups: role and time, for the patient
    s.portal_insert_lookup("l2", "reviewer", "ref1", 80)
        .unwrap();
    s.portal_insert_lookup("l1", "admin", "ref1", 70).unwrap();
    s.portal_insert_lookup("l3", "admin", "ref2", 70).unwrap();
    assert_eq!(
        s.portal_lookups_for("ref1").unwrap(),
        [("admin".to_string(), 70), ("reviewer".to_string(), 80)]
    );

    // flags
    let f = FlagRow {
        id: "f1".into(),
        patient_ref: "ref1".into(),
        ledger_seq: None,
        source: "rule".into(),
        rule_name: Some("r".into()),
        reason: "why".into(),
        status: "open".into(),
        created_at: 1,
        updated_at: 1,
    };
    s.portal_insert_flag(&f).unwrap();
    assert!(s
        .portal_insert_flag(&FlagRow {
            id: "f2".into(),
            source: "staff".into(),
            ..f.clone()
        })
        .is_err());
    assert!(s.portal_close_flag("f1", "open", 2).is_err());
    assert!(s.portal_close_flag("f1", "dismissed", 2).unwrap());
    assert_eq!(s.portal_flags_for("ref1").unwrap()[0].status, "dismissed");
    assert!(s.portal_flags_for("ref2").unwrap().is_empty());
    index_and_keyed_flags(s);
}

/// Migration 7: the study index, and flags raised once per key.
fn index_and_keyed_flags(s: &mut Store) {
    let row = StudyIndexRow {
        ledger_seq: 4,
        patient_ref: "ref1".into(),
        study_date: "20240102".into(),
        modalities: "CT,SR".into(),
        description: "CHEST".into(),
        instances: 12,
    };
    s.insert_study_index(&row).unwrap();
    s.insert_study_index(&StudyIndexRow {
        ledger_seq: 2,
        ..row.clone()
    })
    .unwrap();
    s.insert_study_index(&StudyIndexRow {
        ledger_seq: 3,
        patient_ref: "ref2".into(),
        ..row.clone()
    })
    .unwrap();
    assert!(s.insert_study_index(&row).is_err(), "one row per position");
    let mine = s.study_index_for("ref1").unwrap();
    assert_eq!(
        mine.iter().map(|r| r.ledger_seq).collect::<Vec<_>>(),
        [2, 4]
    );
    assert_eq!(mine[1], row);
    assert_eq!(s.delete_study_index_for("ref1").unwrap(), 2);
    assert!(s.study_index_for("ref1").unwrap().is_empty());
    assert_eq!(s.study_index_for("ref2").unwrap().len(), 1);

    let f = FlagRow {
        id: "k1".into(),
        patient_ref: "ref3".into(),
        ledger_seq: None,
        source: "rule".into(),
        rule_name: Some("burst_releases".into()),
        reason: "r".into(),
        status: "open".into(),
        created_at: 10,
        updated_at: 10,
    };
    assert!(s.portal_insert_flag_keyed(&f, "burst:ref3:1").unwrap());
    let again = FlagRow {
        id: "k2".into(),
        ..f.clone()
    };
    assert!(!s.portal_insert_flag_keyed(&again, "burst:ref3:1").unwrap());
    assert!(s.portal_insert_flag_keyed(&again, "burst:ref3:9").unwrap());
    // unkeyed flags (patient reports) never collide
    s.portal_insert_flag(&FlagRow {
        id: "k3".into(),
        ..f.clone()
    })
    .unwrap();
    s.portal_insert_flag(&FlagRow {
        id: "k4".into(),
        ..f.clone()
    })
    .unwrap();
    assert_eq!(s.portal_flags_for("ref3").unwrap().len(), 4);
    assert_eq!(s.portal_flag("k1").unwrap(), Some(f));
    assert!(s.portal_flag("nope").unwrap().is_none());
    assert!(s.portal_close_flag("k2", "handled", 11).unwrap());
    let open: Vec<String> = s
        .portal_flags(Some("open"))
        .unwrap()
        .into_iter()
        .filter(|f| f.patient_ref == "ref3")
        .map(|f| f.id)
        .collect();
    assert_eq!(open, ["k1", "k3", "k4"]);
    assert!(s.portal_flags(None).unwrap().len() >= 4);
}

#[test]
fn issue_19_portal_rows_sqlite() {
    let home = veil_test::scratch("portal-rows-sqlite");
    let mut s = Store::open(None, &home).unwrap();
    rows(&mut s);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_19_portal_rows_postgres() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_portal_rows_{}", std::process::id()))
            .unwrap();
    let home = veil_test::scratch("portal-rows-pg");
    let mut s = Store::open(Some(&url), &home).unwrap();
    assert_eq!(s.backend(), "postgresql");
    rows(&mut s);
    std::fs::remove_dir_all(&home).unwrap();
}
