//! Issue 19, the domain the portal's and console's pages call: the
//! site-local study index and "where my images went", the recipe in plain
//! language, flag rules (idempotent), patient reports, handling, and the
//! dashboard. Real releases of corpus files through `Site::release` (the
//! path `veil release` and the gateway share); SQLite always, PostgreSQL
//! when `VEIL_TEST_PG_URL` is set.

#[path = "../../veil-release/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use veil_consent::{Actor, Decision, Provision, SiteDefault};
use veil_core::{Phi, Tag};
use veil_ledger::{Entry, Event};
use veil_portal::flags::{self, rule, FlagRules, Outcome};
use veil_portal::{
    add_staff, dashboard, evaluate, portal_history, record_lookup, Kind, Role, Secret,
    SessionPolicy, Sessions,
};
use veil_release::{ReleaseRequest, Site};

const A: &str = "I19-PATIENT-A";
const B: &str = "I19-PATIENT-B";

fn study(n: &str) -> String {
    format!("1.2.826.0.1.3680043.9.7719.{n}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Rules with only `which` on.
fn only(which: &str) -> FlagRules {
    FlagRules {
        burst_releases: if which == "burst" { 3 } else { 0 },
        burst_window_hours: 24,
        volume_factor: if which == "volume" { 2.0 } else { 0.0 },
        volume_baseline_days: 7,
        volume_min_count: 5,
        lookup_without_reason: which == "lookup",
        release_after_withdrawal: which == "withdrawal",
    }
}

fn release(site: &mut Site, home: &Path, n: &mut usize, inputs: Vec<PathBuf>) -> Vec<u64> {
    *n += 1;
    let req = ReleaseRequest {
        recipient: "acme".into(),
        purpose: "ai-training".into(),
        inputs,
        out: home.join(format!("out{n}")),
        operator: Some("t".into()),
        jobs: 1,
    };
    site.release(&req, None).unwrap().ledger_positions
}

fn set_description(path: &Path, d: &str) {
    let mut f = veil_io::read(path).unwrap();
    f.dataset.put(veil_io::Element::text(
        Tag(0x0008, 0x1030),
        dicom_core::VR::LO,
        d,
    ));
    let meta = veil_io::WriteMeta {
        sop_class: f.dataset.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
        sop_instance: f.dataset.ascii(Tag(0x0008, 0x0018)).unwrap_or_default(),
    };
    veil_io::write_file(path, &meta, &f.ts, &f.dataset, &f.source).unwrap();
}

fn header(p: &Path, t: Tag) -> String {
    veil_io::read(p)
        .unwrap()
        .dataset
        .ascii(t)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn suite(db: Option<&str>, home: &Path, corpus: &Path) {
    Site::init(db, home).unwrap();
    let mut site = Site::open(db, home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(
        &recipe,
        b"name = \"t\"\nversion = \"1\"\noptions = [\"retain-long-modified-dates\", \"clean-descriptors\"]\n",
    )
    .unwrap();
    site.add_recipient(
        "acme",
        Some("research".into()),
        None,
        None,
        vec!["ai-training".into()],
        &recipe,
        30,
    )
    .unwrap();
    site.set_default("ai-training", SiteDefault::OptOut)
        .unwrap();
    let srcs = common::sources(corpus);
    let input = home.join("in");
    // A: study 1 (CT + MR, 2 instances), study 2 (MR); B: study 3 (CT)
    common::plant(&srcs[0], &input.join("a1.dcm"), A, &study("1"), 1);
    common::plant(&srcs[1], &input.join("a2.dcm"), A, &study("1"), 2);
    common::plant(&srcs[1], &input.join("a3.dcm"), A, &study("2"), 1);
    common::plant(&srcs[0], &input.join("b.dcm"), B, &study("3"), 1);
    set_description(&input.join("a3.dcm"), "HEAD WO CONTRAST");
    let mut n = 0;
    let first = release(&mut site, home, &mut n, vec![input.clone()]);
    assert_eq!(first.len(), 3);
    let (pa, pb) = (
        site.patient_ref(&Phi::new(A.to_string())),
        site.patient_ref(&Phi::new(B.to_string())),
    );

    // ---- the site-local index: one row per study and position ------------
    let rows = site.store.study_index_for(&pa).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let s1 = rows.iter().find(|r| r.instances == 2).expect("study 1");
    let s2 = rows.iter().find(|r| r.instances == 1).expect("study 2");
    assert_eq!(s1.modalities, "CT,MR");
    assert_eq!(s2.modalities, "MR");
    let src0 = input.join("a1.dcm");
    assert_eq!(s1.study_date, header(&src0, Tag(0x0008, 0x0020)));
    assert_eq!(
        s2.study_date,
        header(&input.join("a3.dcm"), Tag(0x0008, 0x0020))
    );
    assert_eq!(
        s2.description,
        header(&input.join("a3.dcm"), Tag(0x0008, 0x1030))
    );
    assert_eq!(site.store.study_index_for(&pb).unwrap().len(), 1);
    // the ledger never holds them
    let entries = site.entries().unwrap();
    let ledger: String = entries
        .iter()
        .map(|e| String::from_utf8(e.to_leaf()).unwrap())
        .collect();
    assert_eq!(s2.description, "HEAD WO CONTRAST");
    for r in &rows {
        assert!(
            r.description.is_empty() || !ledger.contains(&r.description),
            "{r:?}"
        );
        assert!(!ledger.contains(&r.modalities));
    }
    assert!(!ledger.contains(A));

    // ---- where my images went ---------------------------------------------
    let h = portal_history(&mut site, &pa).unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    for it in &h {
        assert_eq!(it.event, Event::Release);
        assert_eq!(it.recipient, "acme");
        assert_eq!(it.recipient_category.as_deref(), Some("research"));
        assert_eq!(it.purpose, "ai-training");
        assert_eq!(it.verification, "not-run");
        assert_eq!(it.studies.len(), 1);
        assert!(it
            .received
            .contains(&"Dates were shifted by a fixed number of days".to_string()));
        assert_eq!(
            it.received[0],
            "Your name and ID numbers were replaced with codes"
        );
    }
    let mods: Vec<Vec<String>> = h.iter().map(|i| i.studies[0].modalities.clone()).collect();
    assert!(mods.contains(&vec!["CT".to_string(), "MR".to_string()]));
    assert_eq!(portal_history(&mut site, &pb).unwrap().len(), 1);

    // ---- reports: own entries only ------------------------------------------
    let pos_a = h[0].position;
    let pos_b = portal_history(&mut site, &pb).unwrap()[0].position;
    let fid = flags::report(&mut site, &pa, pos_a, "I did not expect this", now()).unwrap();
    let e = flags::report(&mut site, &pa, pos_b, "not mine", now()).unwrap_err();
    assert_eq!(e.to_string(), "no such entry in your history");
    assert!(flags::report(&mut site, &pa, 10_000, "x", now()).is_err());
    assert!(flags::report(&mut site, &pa, pos_a, "  ", now()).is_err());
    assert!(flags::report(&mut site, &pa, pos_a, &"x".repeat(2001), now()).is_err());
    assert_eq!(
        flags::report(&mut site, &pa, pos_a, "again", now()).unwrap(),
        fid,
        "one open report per entry"
    );
    let mine = site.store.portal_flags_for(&pa).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, fid);
    assert_eq!(mine[0].source, "patient");
    assert_eq!(mine[0].ledger_seq, Some(pos_a as i64));

    // ---- burst: threshold 3; 2 releases of A raise nothing, 4 raise one ----
    assert!(evaluate(&mut site, &only("burst"), now())
        .unwrap()
        .is_empty());
    let one = vec![input.join("a3.dcm")];
    release(&mut site, home, &mut n, one.clone());
    release(&mut site, home, &mut n, one.clone());
    let raised = evaluate(&mut site, &only("burst"), now()).unwrap();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].rule, rule::BURST);
    assert_eq!(raised[0].patient_ref, pa);
    assert!(
        raised[0].reason.starts_with("4 releases"),
        "{}",
        raised[0].reason
    );
    assert!(evaluate(&mut site, &only("burst"), now())
        .unwrap()
        .is_empty());
    // B (one release) has none
    assert!(site
        .store
        .portal_flags_for(&pb)
        .unwrap()
        .iter()
        .all(|f| f.rule_name.as_deref() != Some(rule::BURST)));

    // ---- a release after a withdrawal: refused, flagged once ---------------
    site.set_consent(
        &Phi::new(A.to_string()),
        Provision {
            decision: Decision::Deny,
            actor: Some(Actor::Recipient("acme".into())),
            purpose: None,
            start: None,
            end: None,
            study_uid: None,
        },
    )
    .unwrap();
    let refused = release(&mut site, home, &mut n, one.clone());
    let e = &site.entries().unwrap()[refused[0] as usize];
    assert_eq!(e.event, Event::Refusal, "{e:?}");
    let raised = evaluate(&mut site, &only("withdrawal"), now()).unwrap();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].rule, rule::WITHDRAWAL);
    assert_eq!(raised[0].ledger_seq, Some(refused[0] as i64));
    assert!(evaluate(&mut site, &only("withdrawal"), now())
        .unwrap()
        .is_empty());
    assert_eq!(
        site.store
            .portal_flags_for(&pa)
            .unwrap()
            .iter()
            .filter(|f| f.rule_name.as_deref() == Some(rule::WITHDRAWAL))
            .count(),
        1
    );
    // the history shows the consent change and the refusal, its study too
    let h = portal_history(&mut site, &pa).unwrap();
    assert!(h.iter().any(|i| i.event == Event::ConsentChange));
    let r = h.iter().find(|i| i.event == Event::Refusal).unwrap();
    assert!(r.reason.starts_with("consent:"));
    assert!(r.received.is_empty());
    assert_eq!(r.studies.len(), 1);

    // ---- lookups: without an open flag (B) flagged, with one (A) not -------
    add_staff(
        &mut site,
        "rita",
        Role::Reviewer,
        &Secret::from("a long enough password"),
        "t",
        now(),
    )
    .unwrap();
    add_staff(
        &mut site,
        "otto",
        Role::Auditor,
        &Secret::from("a long enough password"),
        "t",
        now(),
    )
    .unwrap();
    let pol = SessionPolicy::default();
    let ns = Sessions::create(&mut site.store, &pol, Kind::Staff, "rita", now()).unwrap();
    let rita = Sessions::lookup(&mut site.store, &pol, ns.token.expose(), now())
        .unwrap()
        .unwrap();
    record_lookup(&mut site, &rita, &Phi::new(A.to_string()), now()).unwrap();
    record_lookup(&mut site, &rita, &Phi::new(B.to_string()), now()).unwrap();
    assert!(flags::evaluate_lookups(&mut site, &only("burst"), now())
        .unwrap()
        .is_empty());
    let raised = flags::evaluate_lookups(&mut site, &only("lookup"), now()).unwrap();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].rule, rule::LOOKUP);
    assert_eq!(raised[0].patient_ref, pb);
    assert!(raised[0].reason.contains("reviewer") && !raised[0].reason.contains("rita"));
    assert!(evaluate(&mut site, &only("lookup"), now())
        .unwrap()
        .is_empty());

    // ---- handling: a staff action in the ledger; auditors cannot ----------
    let open = flags::list(&mut site, Some("open")).unwrap();
    assert_eq!(open.len(), 4, "{open:?}");
    assert!(flags::handle(&mut site, "otto", &fid, Outcome::Handled, now()).is_err());
    let pos = flags::handle(&mut site, "rita", &fid, Outcome::Dismissed, now()).unwrap();
    let e: Entry = site.entries().unwrap().remove(pos as usize);
    assert_eq!(e.event, Event::StaffAction);
    assert_eq!(e.operator, "rita");
    assert_eq!(e.patient_ref.as_deref(), Some(pa.as_str()));
    assert!(e.reason.contains("dismissed") && !e.reason.contains("expect"));
    assert!(flags::handle(&mut site, "rita", &fid, Outcome::Handled, now()).is_err());
    assert_eq!(
        site.store.portal_flag(&fid).unwrap().unwrap().status,
        "dismissed"
    );

    // ---- the dashboard ---------------------------------------------------
    let d = dashboard(&mut site, now()).unwrap();
    assert_eq!(d.per_day.len(), 30);
    let today = d.per_day.last().unwrap();
    assert_eq!(today.releases, 5);
    assert_eq!(today.refusals, 1);
    assert_eq!(
        d.per_day[..29]
            .iter()
            .map(|c| c.releases + c.refusals)
            .sum::<u64>(),
        0
    );
    assert_eq!(d.open_flags, 3);
    assert!(d.ledger_ok, "{d:?}");
    assert_eq!(d.ledger_size, site.entries().unwrap().len() as u64);
    assert_eq!(d.last_checkpoint, None);
    site.checkpoint().unwrap().unwrap();
    let d = dashboard(&mut site, now()).unwrap();
    assert!(d.last_checkpoint.is_some());
    assert!(d.queue.is_empty());

    // ---- erasing the index keeps the entries, drops the details -----------
    assert_eq!(site.store.delete_study_index_for(&pa).unwrap(), 5);
    let h = portal_history(&mut site, &pa).unwrap();
    assert!(h.iter().all(|i| i.studies.is_empty()));
}

#[test]
fn issue_19_domain_sqlite() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("portal19-domain-sqlite");
    suite(None, &home, &corpus);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_19_domain_postgresql() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let Some(base) = veil_test::pg_url() else {
        return;
    };
    let url =
        veil_store::create_pg_database(&base, &format!("veil_portal19d_{}", std::process::id()))
            .unwrap();
    let home = veil_test::scratch("portal19-domain-pg");
    suite(Some(&url), &home, &corpus);
    std::fs::remove_dir_all(&home).unwrap();
}

/// The volume rule against a synthetic baseline: a recipient's releases
/// on the 7 days before today (10 a day), appended as ledger entries.
#[test]
fn issue_19_volume_rule() {
    let home = veil_test::scratch("portal19-volume");
    Site::init(None, &home).unwrap();
    let mut site = Site::open(None, &home).unwrap();
    let day = 86_400;
    let t = now();
    let today0 = t - t.rem_euclid(day);
    let entry = |at: i64, rec: &str| Entry {
        v: 1,
        seq: 0,
        time: chrono::DateTime::from_timestamp(at, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        event: Event::Release,
        release_id: "r".into(),
        recipient: rec.into(),
        purpose: "p".into(),
        recipe: String::new(),
        key_id: String::new(),
        patient_ref: None,
        study_ref: None,
        output_study_uid: None,
        instances: 1,
        inputs_digest: None,
        output_digest: None,
        verification: "pass".into(),
        operator: "t".into(),
        reason: String::new(),
        refers_to: None,
    };
    let mut es = Vec::new();
    for d in 1..=7 {
        for i in 0..10 {
            es.push(entry(today0 - d * day + i * 60, "steady"));
        }
    }
    // today: steady at 2x its average (not more), newbie with no history
    for i in 0..20 {
        es.push(entry(today0 + i, "steady"));
    }
    for i in 0..4 {
        es.push(entry(today0 + i, "newbie"));
    }
    site.log_decisions(es, |_, _| Ok(())).unwrap();
    let r = only("volume");
    // newbie: 4 < min count 5; steady: 20 is not more than 2 x 10
    assert!(evaluate(&mut site, &r, t).unwrap().is_empty());
    site.log_decisions(
        vec![entry(today0 + 30, "steady"), entry(today0 + 31, "newbie")],
        |_, _| Ok(()),
    )
    .unwrap();
    let raised = evaluate(&mut site, &r, t).unwrap();
    let mut recs: Vec<&str> = raised
        .iter()
        .map(|f| {
            assert_eq!(f.rule, rule::VOLUME);
            f.reason.split(' ').nth(1).unwrap()
        })
        .collect();
    recs.sort();
    assert_eq!(recs, ["newbie", "steady"], "{raised:?}");
    assert!(raised[0].reason.contains("daily average over the 7 days"));
    assert!(evaluate(&mut site, &r, t).unwrap().is_empty());
    // a factor of 3 would not have raised steady: 21 <= 30
    std::fs::remove_dir_all(&home).unwrap();
}
