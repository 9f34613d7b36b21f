//! Issue 18: the gateway's queue on both engines (SQLite always,
//! PostgreSQL when `VEIL_TEST_PG_URL` is set; `VEIL_REQUIRE_PG` makes its
//! absence a failure).

use veil_store::queue::QueueState as Q;
use veil_store::Store;

fn lifecycle(s: &mut Store) {
    // two instances of one study, and a retry of the first
    let a = s
        .queue_receive("acme", "sk1", "i1", "f1", "s-1", 100)
        .unwrap();
    assert_eq!((a.study_id.as_str(), a.already.as_deref()), ("s-1", None));
    let b = s
        .queue_receive("acme", "sk1", "i2", "f2", "unused", 105)
        .unwrap();
    assert_eq!(b.study_id, "s-1", "joins the receiving study");
    let again = s
        .queue_receive("acme", "sk1", "i1", "f3", "unused", 106)
        .unwrap();
    assert_eq!(
        again.already.as_deref(),
        Some("f1"),
        "a retry is not recorded twice"
    );
    // the same study on another route is another queue entry
    let other = s
        .queue_receive("beta", "sk1", "i1", "g1", "s-2", 106)
        .unwrap();
    assert_eq!(other.study_id, "s-2");
    let st = s.queue_study("s-1").unwrap().unwrap();
    assert_eq!(
        (st.state, st.instances, st.last_received_at),
        (Q::Receiving, 2, 106)
    );

    // stable only once nothing arrived since the cutoff
    assert_eq!(s.queue_mark_ready("acme", 105, 110).unwrap(), 0);
    assert_eq!(s.queue_mark_ready("acme", 106, 116).unwrap(), 1);
    assert_eq!(s.queue_study("s-2").unwrap().unwrap().state, Q::Receiving);
    // an instance arriving now starts a new study: the ready one is closed
    let late = s
        .queue_receive("acme", "sk1", "i3", "f4", "s-3", 117)
        .unwrap();
    assert_eq!(late.study_id, "s-3");
    let mut live = s.queue_live_spool_names().unwrap();
    live.sort();
    assert_eq!(live, ["f1", "f2", "f4", "g1"]);

    // decided inside a transaction; a second decision is refused and
    // rolls back with whatever else that transaction wrote
    s.transaction(|s| {
        s.queue_decide(
            "s-1",
            true,
            None,
            &[7, 8],
            &["a.dcm".into(), "b.dcm".into()],
            120,
        )
    })
    .unwrap();
    let e = s.transaction(|s| {
        s.set_default("x", veil_consent::SiteDefault::OptIn)?;
        s.queue_decide("s-1", false, Some("consent"), &[9], &[], 121)
    });
    assert!(e.is_err());
    assert_eq!(s.default_for("x").unwrap(), None, "rolled back together");
    let st = s.queue_study("s-1").unwrap().unwrap();
    assert_eq!(
        (st.state, st.decision.as_deref(), st.ledger_seqs.clone()),
        (Q::Decided, Some("released"), vec![7, 8])
    );

    // delivery: one output, a failure, then dead-letter
    s.queue_transition("s-1", &[Q::Decided], Q::Delivering, 122)
        .unwrap();
    s.queue_output_delivered("s-1", "a.dcm", 123).unwrap();
    assert_eq!(
        s.queue_outputs("s-1").unwrap(),
        [("a.dcm".to_string(), true), ("b.dcm".to_string(), false)]
    );
    assert_eq!(
        s.queue_attempt_failed("s-1", "delivery: refused", Some(130), 124)
            .unwrap(),
        1
    );
    assert_eq!(
        s.queue_attempt_failed("s-1", "delivery: refused", None, 131)
            .unwrap(),
        2
    );
    let st = s.queue_study("s-1").unwrap().unwrap();
    assert_eq!(
        (st.state, st.reason.as_deref()),
        (Q::DeadLetter, Some("delivery: refused"))
    );
    assert!(
        s.queue_transition("s-1", &[Q::Decided], Q::Delivering, 132)
            .is_err(),
        "guarded"
    );
    // retry resets the attempts; delivered; cleared
    s.queue_transition("s-1", &[Q::DeadLetter], Q::Delivering, 133)
        .unwrap();
    assert_eq!(s.queue_study("s-1").unwrap().unwrap().attempts, 0);
    s.queue_transition("s-1", &[Q::Delivering], Q::Delivered, 134)
        .unwrap();
    s.queue_cleared("s-1", 135).unwrap();
    let mut live = s.queue_live_spool_names().unwrap();
    live.sort();
    assert_eq!(live, ["f4", "g1"], "a cleared study's files are not live");
    let states: Vec<Q> = s
        .queue_studies(&[])
        .unwrap()
        .iter()
        .map(|s| s.state)
        .collect();
    assert_eq!(states, [Q::Delivered, Q::Receiving, Q::Receiving]);
    assert_eq!(s.queue_studies(&[Q::Delivered]).unwrap().len(), 1);
    assert!(s.queue_uncleared().unwrap().is_empty(), "cleared");
    assert_eq!(
        s.queue_counts().unwrap(),
        [
            ("acme".to_string(), Q::Delivered, 1),
            ("acme".to_string(), Q::Receiving, 1),
            ("beta".to_string(), Q::Receiving, 1)
        ]
    );
}

#[test]
fn issue_18_queue_lifecycle_sqlite() {
    let home = veil_test::scratch("queue-sqlite");
    let mut s = Store::open(None, &home).unwrap();
    lifecycle(&mut s);
    drop(s);
    // reopened: the rows are there
    let mut s = Store::open(None, &home).unwrap();
    assert_eq!(s.queue_studies(&[]).unwrap().len(), 3);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_18_queue_lifecycle_postgres() {
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url = veil_store::create_pg_database(&base, &format!("veil_queue_{}", std::process::id()))
        .unwrap();
    let home = veil_test::scratch("queue-pg");
    let mut s = Store::open(Some(&url), &home).unwrap();
    assert_eq!(s.backend(), "postgresql");
    lifecycle(&mut s);
    std::fs::remove_dir_all(&home).unwrap();
}
