//! The portal's ledger cache ([`veil_portal::LedgerCache`]): it grows by
//! reading only new rows, keeps a per-patient index, detects a rewritten
//! entry (and rebuilds rather than serve a stale proof), and its proofs
//! are exactly [`Site::proof`]'s. SQLite, and PostgreSQL when
//! `VEIL_TEST_PG_URL` is set.

use veil_core::Phi;
use veil_ledger::{Entry, Event, ProofError};
use veil_portal::LedgerCache;
use veil_release::Site;
use veil_store::Val;

fn entry(pref: &str, event: Event, n: u64) -> Entry {
    Entry {
        v: 1,
        seq: 0,
        time: "2027-01-10T10:00:00Z".into(),
        event,
        release_id: format!("r{n}"),
        recipient: "acme-research".into(),
        purpose: "ai-training".into(),
        recipe: "t 1".into(),
        key_id: "k".into(),
        patient_ref: Some(pref.into()),
        study_ref: Some("s".repeat(32)),
        output_study_uid: Some("2.25.1".into()),
        instances: n,
        inputs_digest: None,
        output_digest: None,
        verification: "pass".into(),
        operator: "gateway".into(),
        reason: "consent: opt-out default".into(),
        refers_to: None,
    }
}

fn sites(name: &str) -> Vec<Site> {
    let mut dbs = vec![None];
    if let Some(u) = veil_test::pg_url() {
        let db = format!("veil_{}_{}", name.replace('-', "_"), std::process::id());
        dbs.push(Some(veil_store::create_pg_database(&u, &db).unwrap()));
    }
    dbs.into_iter()
        .map(|db| {
            let home = veil_test::scratch(&format!("{name}-{}", db.is_some()));
            Site::init(db.as_deref(), &home).unwrap();
            Site::open(db.as_deref(), &home).unwrap()
        })
        .collect()
}

fn refs(site: &Site) -> (String, String) {
    (
        site.patient_ref(&Phi::new("CACHE-A".to_string())),
        site.patient_ref(&Phi::new("CACHE-B".to_string())),
    )
}

fn append(site: &mut Site, pref: &str, from: u64, n: u64) {
    let es = (from..from + n)
        .map(|i| entry(pref, Event::Release, i))
        .collect();
    site.log_decisions(es, |_, _| Ok(())).unwrap();
}

fn same_proofs(site: &mut Site, cache: &LedgerCache) {
    for p in 0..cache.len() + 2 {
        let mine = cache.proof(site, p);
        let theirs = site.proof(p).unwrap();
        match (&mine, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(
                veil_portal::web::proof_json(a),
                veil_portal::web::proof_json(b),
                "position {p}"
            ),
            _ => assert_eq!(mine.err(), theirs.err(), "position {p}"),
        }
    }
}

#[test]
fn grows_incrementally_with_a_patient_index() {
    for mut site in sites("cache-grows") {
        let (a, b) = refs(&site);
        let mut cache = LedgerCache::new();
        cache.refresh(&mut site, 1000).unwrap();
        assert_eq!(cache.len(), 0);
        append(&mut site, &a, 0, 3);
        append(&mut site, &b, 3, 2);
        cache.refresh(&mut site, 1001).unwrap();
        assert_eq!(cache.len(), 5);
        assert_eq!(cache.positions_of(&a), &[0, 1, 2]);
        assert_eq!(cache.positions_of(&b), &[3, 4]);
        assert!(cache.head_ok());
        append(&mut site, &a, 5, 1);
        cache.refresh(&mut site, 1002).unwrap();
        assert_eq!(cache.len(), 6);
        assert_eq!(cache.positions_of(&a), &[0, 1, 2, 5]);
        assert_eq!(cache.entry(5).unwrap().instances, 5);
        assert!(cache.head_ok());
        assert_eq!(cache.rebuilds(), 0);
        // the root is the ledger's, as verified
        let report = site.verify_ledger().unwrap();
        assert!(report.ok);
        assert_eq!(veil_ledger::hex(&cache.root()), report.root);
        // no checkpoint yet: the same errors as Site::proof
        same_proofs(&mut site, &cache);
        // a checkpoint, then more entries it does not cover
        site.checkpoint().unwrap().unwrap();
        append(&mut site, &b, 6, 3);
        cache.refresh(&mut site, 1003).unwrap();
        assert_eq!(cache.len(), 9);
        same_proofs(&mut site, &cache);
        assert!(matches!(
            cache.proof(&site, 7),
            Err(ProofError::NotCovered { .. })
        ));
        site.checkpoint().unwrap().unwrap();
        cache.refresh(&mut site, 1004).unwrap();
        same_proofs(&mut site, &cache);
        assert!(cache.proof(&site, 7).unwrap().verify().is_ok());
        assert_eq!(cache.rebuilds(), 0);
    }
}

#[test]
fn detects_a_rewritten_entry() {
    for mut site in sites("cache-rewrite") {
        let (a, b) = refs(&site);
        append(&mut site, &a, 0, 4);
        site.checkpoint().unwrap().unwrap();
        let mut cache = LedgerCache::new();
        cache.refresh(&mut site, 1000).unwrap();
        assert!(cache.proof(&site, 1).is_ok());
        // position 1 rewritten to be about patient B
        let forged = String::from_utf8(
            Entry {
                seq: 1,
                ..entry(&b, Event::Release, 1)
            }
            .to_leaf(),
        )
        .unwrap();
        site.store
            .exec(
                "UPDATE ledger SET entry = ? WHERE seq = ?",
                &[Val::t(forged.clone()), Val::i(1)],
            )
            .unwrap();
        // within the full-check interval and with the same checkpoint an
        // old row is not re-read; at the interval it is, and the cache is
        // rebuilt from what is stored
        cache
            .refresh(&mut site, 1000 + veil_portal::cache::FULL_CHECK_SECS)
            .unwrap();
        assert_eq!(cache.rebuilds(), 1);
        assert_eq!(cache.positions_of(&a), &[0, 2, 3]);
        assert_eq!(cache.positions_of(&b), &[1]);
        // the stored head no longer signs this log, and no proof is served
        assert!(!cache.head_ok());
        same_proofs(&mut site, &cache);
        assert!(matches!(
            cache.proof(&site, 1),
            Err(ProofError::LogMismatch(4))
        ));
    }
}

#[test]
fn a_rewritten_last_entry_or_a_new_checkpoint_is_seen_at_once() {
    for mut site in sites("cache-rewrite-last") {
        let (a, b) = refs(&site);
        append(&mut site, &a, 0, 3);
        let mut cache = LedgerCache::new();
        cache.refresh(&mut site, 1000).unwrap();
        let forged = String::from_utf8(
            Entry {
                seq: 2,
                ..entry(&b, Event::Release, 2)
            }
            .to_leaf(),
        )
        .unwrap();
        site.store
            .exec(
                "UPDATE ledger SET entry = ? WHERE seq = ?",
                &[Val::t(forged), Val::i(2)],
            )
            .unwrap();
        // the last cached row is re-read with every refresh
        cache.refresh(&mut site, 1001).unwrap();
        assert_eq!(cache.rebuilds(), 1);
        assert_eq!(cache.positions_of(&b), &[2]);
        // an old row rewritten, then a checkpoint stored (by hand: `veil
        // ledger checkpoint` refuses a bad log): the new checkpoint makes
        // the next refresh compare the whole prefix
        let forged0 = String::from_utf8(
            Entry {
                seq: 0,
                ..entry(&b, Event::Release, 0)
            }
            .to_leaf(),
        )
        .unwrap();
        site.store
            .exec(
                "UPDATE ledger SET entry = ? WHERE seq = ?",
                &[Val::t(forged0), Val::i(0)],
            )
            .unwrap();
        site.store
            .insert_checkpoint(&veil_store::CheckpointRow {
                size: 3,
                root: "00".repeat(32),
                time: "2027-01-10T10:00:00Z".into(),
                key_id: "k".into(),
                signature: "00".into(),
            })
            .unwrap();
        cache.refresh(&mut site, 1001).unwrap();
        assert_eq!(cache.rebuilds(), 2);
        assert_eq!(cache.positions_of(&b), &[0, 2]);
        same_proofs(&mut site, &cache);
    }
}
