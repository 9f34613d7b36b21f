//! `deid_object` (in memory) gives the bytes and names the batch writes,
//! for a few corpus files, with and without the pixel options.
//!
//! Needs VEIL_CORPUS (skipped without it, failing with
//! VEIL_REQUIRE_CORPUS=1).

use std::path::{Path, PathBuf};

use veil_core::ProfileOption;
use veil_deid::{Key, Policy};
use veil_pipeline::object::{deid_object, ObjectOptions, ObjectOutcome};
use veil_pipeline::{Batch, Outcome};

fn corpus_files(n: usize) -> Option<Vec<PathBuf>> {
    let Some(root) = std::env::var_os("VEIL_CORPUS") else {
        assert!(
            std::env::var_os("VEIL_REQUIRE_CORPUS").is_none(),
            "VEIL_CORPUS is not set"
        );
        return None;
    };
    let mut files: Vec<PathBuf> = veil_pipeline::walk(&[PathBuf::from(root)])
        .expect("walk corpus")
        .into_iter()
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.len() < 1_000_000)
                && std::fs::read(p).is_ok_and(|b| b.get(128..132) == Some(b"DICM"))
        })
        .collect();
    files.sort();
    let step = (files.len() / n).max(1);
    Some(files.into_iter().step_by(step).take(n).collect())
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("veil-object-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

fn same_as_batch(name: &str, options: &[ProfileOption]) {
    let Some(files) = corpus_files(6) else {
        return;
    };
    let policy = Policy::new(
        veil_rules::Recipe::default(),
        options,
        Key::from_bytes([7; 32]),
    )
    .expect("policy");
    let dir = scratch(name);
    let (out, review) = (dir.join("out"), dir.join("review"));
    let batch = Batch {
        inputs: files.clone(),
        out: out.clone(),
        review: review.clone(),
        jobs: 2,
        policy: &policy,
        dicomdir: false,
        verify: None,
    };
    let report = batch.run(&|_, _| {}).expect("batch");
    let mut compared = 0;
    for (f, row) in files.iter().zip(&report.files) {
        let bytes = std::fs::read(f).expect("read input");
        let r = deid_object(&policy, bytes, &ObjectOptions::default());
        let (root, rel): (&Path, &String) = match (&row.outcome, &r.outcome) {
            (Outcome::Written { output }, ObjectOutcome::Written) => (&out, output),
            (Outcome::Review { output, .. }, ObjectOutcome::Review { .. }) => (&review, output),
            (Outcome::Quarantined { .. }, ObjectOutcome::Quarantined { .. }) => continue,
            (Outcome::NotDicom, ObjectOutcome::NotDicom) => continue,
            (Outcome::DuplicateInstance { .. }, _) => continue,
            (a, b) => panic!("outcomes differ: batch {} object {}", a.kind(), b.kind()),
        };
        assert_eq!(r.name.as_ref(), Some(rel));
        let written = std::fs::read(root.join(rel)).expect("batch output");
        assert!(
            r.output.as_deref() == Some(&written[..]),
            "bytes differ for {rel}"
        );
        compared += 1;
    }
    assert!(compared >= 3, "only {compared} outputs compared");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deid_object_equals_batch_output() {
    same_as_batch("header", &[]);
}

#[cfg(feature = "ocr")]
#[test]
fn deid_object_equals_batch_output_with_pixel_options() {
    same_as_batch(
        "pixels",
        &[ProfileOption::CleanPixelData, ProfileOption::CleanGraphics],
    );
}
