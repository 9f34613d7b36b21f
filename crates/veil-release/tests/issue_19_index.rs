//! Issue 19: the site-local study index is written by the path the
//! gateway uses (`decide_study`, then `log_decisions`), in the append's
//! transaction, and only for what was logged.

mod common;

use veil_consent::SiteDefault;
use veil_core::Phi;
use veil_release::{Site, Workspace};

#[test]
fn issue_19_index_rows_from_the_gateway_path() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("i19-index");
    Site::init(None, &home).unwrap();
    let mut site = Site::open(None, &home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\n").unwrap();
    site.add_recipient("acme", None, None, None, vec!["p".into()], &recipe, 30)
        .unwrap();
    site.set_default("p", SiteDefault::OptOut).unwrap();
    let srcs = common::sources(&corpus);
    let f1 = home.join("in/1.dcm");
    let f2 = home.join("in/2.dcm");
    common::plant(&srcs[0], &f1, "I19-IDX", "1.2.826.0.1.3680043.9.7719.91", 1);
    common::plant(&srcs[1], &f2, "I19-IDX", "1.2.826.0.1.3680043.9.7719.91", 2);
    let (staged, review) = (home.join("staged"), home.join("review"));
    let work = Workspace {
        staged_root: &staged,
        review: &review,
        jobs: 1,
        verifier: None,
    };
    let pref = site.patient_ref(&Phi::new("I19-IDX".to_string()));

    // decided but not logged: nothing indexed
    let p = site.prepare_release("acme", "p", Some("t")).unwrap();
    let ds = site
        .decide_study(&p, &[f1.clone(), f2.clone()], &work)
        .unwrap();
    assert_eq!(ds.len(), 1);
    assert!(site.store.study_index_for(&pref).unwrap().is_empty());
    // a failing bookkeeping step rolls the row back with the entry
    let entries: Vec<_> = ds.into_iter().map(|d| d.entry).collect();
    assert!(site
        .log_decisions(entries.clone(), |_, _| Err(
            veil_store::StoreError::Invalid("no".into())
        ))
        .is_err());
    assert!(site.store.study_index_for(&pref).unwrap().is_empty());

    // the same entries retried and logged: one row at the entry's position
    let pos = site.log_decisions(entries, |_, _| Ok(())).unwrap();
    let rows = site.store.study_index_for(&pref).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].ledger_seq, pos[0] as i64);
    assert_eq!(rows[0].modalities, "CT,MR");
    assert_eq!(rows[0].instances, 2);
    assert_eq!(rows[0].study_date.len(), 8);
    std::fs::remove_dir_all(&home).unwrap();
}
