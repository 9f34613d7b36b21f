//! Issue 22, releases that fail closed (library level, with verifier stubs):
//! a study whose verification fails never reaches OUT and a removal that
//! fails is an error; nothing is in OUT while it is verified; a staged
//! release the ledger does not know is discarded by the next run; the
//! ledger's `inputs_digest` is keyed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use veil_consent::SiteDefault;
use veil_release::{ReleaseRequest, Site, VerifyOutcome};

/// A site with recipient `acme` (opt-out for ai-training) and two studies
/// of two patients in `home/in`: `a*.dcm` (2 instances) and `b.dcm`.
fn site(name: &str) -> Option<(PathBuf, Site, ReleaseRequest)> {
    let corpus = veil_test::corpus()?;
    let home = veil_test::scratch(name);
    Site::init(None, &home).unwrap();
    let mut site = Site::open(None, &home).unwrap();
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    site.add_recipient(
        "acme",
        None,
        None,
        None,
        vec!["ai-training".into()],
        &recipe,
        30,
    )
    .unwrap();
    site.set_default("ai-training", SiteDefault::OptOut)
        .unwrap();
    let srcs = common::sources(&corpus);
    let input = home.join("in");
    let study = |n: &str| format!("1.2.826.0.1.3680043.9.7776.{n}");
    common::plant(&srcs[0], &input.join("a1.dcm"), "I22-A", &study("1"), 1);
    common::plant(&srcs[1], &input.join("a2.dcm"), "I22-A", &study("1"), 2);
    common::plant(&srcs[1], &input.join("b.dcm"), "I22-B", &study("2"), 1);
    let req = ReleaseRequest {
        recipient: "acme".into(),
        purpose: "ai-training".into(),
        inputs: vec![input],
        out: home.join("out"),
        operator: Some("t".into()),
        jobs: 1,
    };
    Some((home, site, req))
}

fn is_study_a(sources: &[PathBuf]) -> bool {
    sources.iter().any(|s| {
        s.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('a'))
    })
}

#[test]
fn issue_22_verification_failure_publishes_nothing_and_a_failed_removal_is_an_error() {
    let Some((home, mut site, req)) = site("i22-verify-fail") else {
        return;
    };
    let out = req.out.clone();
    let seen_in_out = Mutex::new(Vec::new());
    // study A fails verification, and one of its files cannot be removed
    // (a folder stands where the file was: even root cannot unlink it)
    let stub = |_root: &Path, sources: &[PathBuf], files: &[PathBuf]| {
        seen_in_out
            .lock()
            .unwrap()
            .extend(files.iter().filter(|f| f.starts_with(&out)).cloned());
        if !is_study_a(sources) {
            return VerifyOutcome::Pass;
        }
        let last = files.last().unwrap();
        std::fs::remove_file(last).unwrap();
        std::fs::create_dir(last).unwrap();
        VerifyOutcome::Findings(1)
    };
    let before = site.entries().unwrap().len();
    let r = site.release(&req, Some(&stub));
    let err = r.expect_err("a removal that fails must be reported, not ignored");
    assert!(
        err.to_string()
            .contains("removing a study that failed verification"),
        "{err}"
    );
    assert!(
        seen_in_out.lock().unwrap().is_empty(),
        "files are verified before they are in OUT"
    );
    assert!(
        veil_test::files(&out).is_empty(),
        "nothing of the release is in OUT"
    );
    assert_eq!(site.entries().unwrap().len(), before, "nothing was logged");

    // the next run discards the unlogged staged release, then releases;
    // study A fails verification again (removals work now): B only
    let fail_a = |_root: &Path, sources: &[PathBuf], _files: &[PathBuf]| {
        if is_study_a(sources) {
            VerifyOutcome::Findings(1)
        } else {
            VerifyOutcome::Pass
        }
    };
    let sum = site.release(&req, Some(&fail_a)).unwrap();
    assert_eq!((sum.released, sum.refused_total()), (1, 1), "{sum:?}");
    let files: Vec<PathBuf> = veil_test::files(&out);
    let dicom: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    assert_eq!(dicom.len(), 1, "only study B's instance: {files:?}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["studies"].as_array().unwrap().len(), 1);
    let ctl = home.join(".out.veil-release");
    let left: Vec<String> = std::fs::read_dir(&ctl)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".staging"))
        .collect();
    assert!(left.is_empty(), "no staged release left: {left:?}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_22_a_staged_release_the_ledger_does_not_know_is_discarded() {
    let Some((home, mut site, req)) = site("i22-discard") else {
        return;
    };
    // what a run killed before its ledger append leaves beside OUT
    let ctl = home.join(".out.veil-release");
    let staged = ctl.join("00112233445566ff.staging");
    std::fs::create_dir_all(staged.join("files/x")).unwrap();
    veil_io::atomic::write_all(&staged.join("files/x/unlogged.dcm"), b"not logged").unwrap();
    let r = site.recover(&req.out).unwrap();
    assert_eq!((r.published.len(), r.discarded), (0, 1));
    assert!(!staged.exists());
    assert!(veil_test::files(&req.out).is_empty());

    // the journal says it was logged, but the ledger has no such entry (a
    // truncated ledger): kept and refused, never published
    std::fs::create_dir_all(staged.join("files")).unwrap();
    veil_io::atomic::write_all(
        &staged.join("journal.json"),
        br#"{"release_id":"00112233445566ff","stage":"logged","recipient":"acme","purpose":"ai-training","manifest":null}"#,
    )
    .unwrap();
    let err = site.release(&req, None).expect_err("refused");
    assert!(err.to_string().contains("veil ledger verify"), "{err}");
    assert!(staged.exists() && veil_test::files(&req.out).is_empty());
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn issue_22_inputs_digest_is_keyed_by_the_site_key() {
    let Some((home, mut site, req)) = site("i22-inputs") else {
        return;
    };
    site.release(&req, None).unwrap();
    let key = veil_deid::Key::load(&home.join("site.key")).unwrap();
    let sop = "1.2.826.0.1.3680043.9.7776.2.1";
    let e = site
        .entries()
        .unwrap()
        .into_iter()
        .find(|e| e.instances == 1)
        .unwrap();
    let got = e.inputs_digest.unwrap();
    assert_ne!(
        got,
        veil_ledger::hex(&Sha256::digest(sop.as_bytes())),
        "an unkeyed hash of the UIDs"
    );
    assert_eq!(
        got,
        veil_ledger::hex(&key.mac("veil ledger inputs", sop.as_bytes()))
    );
    std::fs::remove_dir_all(&home).unwrap();
}
