//! Issue 17, the review folder as a queue, end to end with the `veil`
//! binary and real files: `veil deid` holds the ultrasound images for
//! review and releases the CT; `veil review list` shows the three with
//! their reasons; one is approved (moved into OUT, byte for byte) and one
//! rejected (deleted), each with a signed ledger entry naming the
//! reviewer and the object's SHA-256; the third still waits.

use std::path::Path;

use sha2::{Digest, Sha256};
use veil_ledger::{Entry, Event};

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(VEIL, home, None).args(args))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn entries(home: &Path) -> Vec<Entry> {
    let mut st = veil_store::Store::open(None, home).unwrap();
    st.ledger_rows()
        .unwrap()
        .iter()
        .map(|r| Entry::from_leaf(&r.entry).unwrap())
        .collect()
}

#[test]
fn issue_17_review_list_approve_reject() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let home = veil_test::scratch("i17-review");
    veil_test::ok(veil(&home, &["init"]));
    let key = veil_test::new_key(VEIL, &home);
    let input = home.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for n in [
        "pydicom-data-1.0.0/data_store__data__US1_UNCR.dcm",
        "pydicom-data-1.0.0/data_store__data__OBXXXX1A_rle.dcm",
        "deb-octave-dicom-0.5.1-1/usr__share__octave__packages__dicom-0.5.1__imdata__US-PAL-8-10x-echo.dcm",
        "pydicom-3.0.2/pydicom__data__test_files__CT_small.dcm",
    ] {
        std::fs::copy(
            corpus.join(n),
            input.join(Path::new(n).file_name().unwrap()),
        )
        .unwrap();
    }
    let out = home.join("out");
    let review = home.join("out.review");
    let msg = veil_test::ok(veil(
        &home,
        &[
            "deid",
            &s(&input),
            "--out",
            &s(&out),
            "--key",
            &s(&key),
            "--jobs",
            "1",
        ],
    ));
    assert!(msg.contains("1 written, 3 to review"), "{msg}");
    assert_eq!(veil_test::files(&out).len(), 1);

    // the queue, with why each object is held; pseudonymous paths only
    let (code, list) = veil(&home, &["review", "list", &s(&review), "--json"]);
    assert_eq!(code, 0, "{list}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), 3, "{list}");
    for r in &rows {
        assert!(r["reason"].as_str().is_some_and(|x| !x.is_empty()), "{r}");
        assert!(!r["item"].as_str().unwrap().contains("US1"), "{r}");
    }
    let (code, text) = veil(&home, &["review", "list", &s(&review)]);
    assert_eq!(code, 0);
    assert!(text.contains("3 objects waiting for review"), "{text}");
    let item = |i: usize| rows[i]["item"].as_str().unwrap().to_string();
    let (a, r, w) = (item(0), item(1), item(2));
    let a_bytes = std::fs::read(review.join(&a)).unwrap();
    let r_sha = veil_ledger::hex(&Sha256::digest(std::fs::read(review.join(&r)).unwrap()));
    let n0 = entries(&home).len();

    // approve one: into OUT under the same path, the same bytes
    let msg = veil_test::ok(veil(
        &home,
        &["review", "approve", &s(&review), &a, "--reviewer", "dr-lee"],
    ));
    assert!(
        msg.contains("approved by dr-lee: 1 object moved into"),
        "{msg}"
    );
    assert_eq!(std::fs::read(out.join(&a)).unwrap(), a_bytes);
    assert!(!review.join(&a).exists());
    // reject one: deleted
    let msg = veil_test::ok(veil(
        &home,
        &["review", "reject", &s(&review), &r, "--reviewer", "dr-lee"],
    ));
    assert!(
        msg.contains("rejected by dr-lee: 1 object deleted"),
        "{msg}"
    );
    assert!(!review.join(&r).exists() && !out.join(&r).exists());
    // a decided object cannot be decided again
    let (code, msg) = veil(&home, &["review", "approve", &s(&review), &r]);
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("not waiting"), "{msg}");

    // OUT: the CT and the approved image; the third still waits
    assert_eq!(veil_test::files(&out).len(), 2);
    let (_, text) = veil(&home, &["review", "list", &s(&review)]);
    assert!(
        text.contains(&w) && text.contains("1 object waiting for review"),
        "{text}"
    );

    // the ledger: one entry per decision, the reviewer as operator
    let e = entries(&home);
    assert_eq!(e.len(), n0 + 2);
    let (ea, er) = (&e[n0], &e[n0 + 1]);
    assert_eq!(ea.event, Event::ReviewApproval);
    assert_eq!(er.event, Event::ReviewRejection);
    for x in [ea, er] {
        assert_eq!(x.operator, "dr-lee");
        assert!(x.reason.contains("held for: "), "{}", x.reason);
        assert!(x.patient_ref.is_none());
    }
    assert_eq!(
        ea.output_digest.as_deref(),
        Some(veil_ledger::hex(&Sha256::digest(&a_bytes)).as_str())
    );
    assert_eq!(er.output_digest.as_deref(), Some(r_sha.as_str()));
    let (code, msg) = veil(&home, &["ledger", "verify"]);
    assert_eq!(code, 0, "{msg}");
    // the audit export knows the new events
    let (code, x) = veil(&home, &["ledger", "export", "--format", "dicom"]);
    assert_eq!(code, 0, "{x}");
    assert!(x.contains("DICOM Instances Accessed"), "{x}");
    std::fs::remove_dir_all(&home).unwrap();
}
