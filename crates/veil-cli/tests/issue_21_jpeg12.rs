//! Issue 21: 12-bit JPEG Extended (process 4) objects are cleaned, no
//! longer sent to review because their frames could not be decoded. The
//! corpus's 12-bit JPEG Extended files go through `veil deid --option
//! clean-pixel-data` (frames read for OCR), then through a recipe whose
//! region rule blanks a box, so the frames are decoded, redacted and
//! written again: in JPEG-LS lossless, as for every lossy source
//! (docs/pixels.md), still marked lossy.
#![allow(clippy::print_stderr)] // veil's own output is shown on failure

use std::path::{Path, PathBuf};
use std::process::Command;

use veil_core::Tag;

const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";

/// The corpus files in JPEG Extended with 12 bits stored.
fn twelve_bit_files(corpus: &Path) -> Vec<PathBuf> {
    veil_test::files(corpus)
        .into_iter()
        .filter(|p| {
            let Ok(f) = veil_io::read(p) else {
                return false;
            };
            let bits = match f.dataset.get(Tag(0x0028, 0x0101)).map(|e| &e.value) {
                Some(veil_io::Value::Bytes(b)) if b.len() >= 2 => {
                    Some(u16::from_le_bytes([b[0], b[1]]))
                }
                _ => None,
            };
            f.ts.uid == JPEG_EXTENDED && bits == Some(12)
        })
        .collect()
}

/// Runs `veil deid` on `input` with `args`; returns the files released
/// and the files sent to review, having checked the report's counts:
/// every input written or a duplicate (the corpus holds one image twice,
/// under one SOP Instance UID), none to review.
fn deid(
    tmp: &Path,
    key: &Path,
    input: &Path,
    name: &str,
    args: &[&str],
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let out = tmp.join(format!("out-{name}"));
    let review = tmp.join(format!("review-{name}"));
    let run = Command::new(env!("CARGO_BIN_EXE_veil"))
        .arg("deid")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(key)
        .arg("--review")
        .arg(&review)
        .arg("--report")
        .arg(tmp.join(format!("report-{name}.json")))
        .args(args)
        .output()
        .expect("run veil deid");
    let said = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "veil deid failed: {said}");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.join(format!("report-{name}.json"))).expect("report written"),
    )
    .expect("report is JSON");
    let count = |k: &str| report["counts"][k].as_u64().expect("a count");
    assert_eq!(count("review"), 0, "objects sent to review");
    assert_eq!(count("quarantined"), 0, "objects quarantined");
    assert!(count("written") >= 1);
    assert_eq!(
        count("written") + count("duplicates"),
        count("inputs"),
        "every input released"
    );
    let reviewed: Vec<PathBuf> = veil_test::files(&review)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    (veil_test::files(&out), reviewed)
}

#[test]
fn twelve_bit_jpeg_extended_is_cleaned_not_sent_to_review() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let sources = twelve_bit_files(&corpus);
    assert!(
        !sources.is_empty(),
        "no 12-bit JPEG Extended file in the corpus"
    );
    let tmp = veil_test::scratch("issue-21-jpeg12");
    let input = tmp.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (i, s) in sources.iter().enumerate() {
        std::fs::copy(s, input.join(format!("{i}.dcm"))).unwrap();
    }

    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &tmp);

    // 1. read for OCR: every object released, none to review
    let (out, review) = deid(&tmp, &key, &input, "ocr", &["--option", "clean-pixel-data"]);
    assert!(review.is_empty(), "sent to review: {review:?}");
    assert!(!out.is_empty(), "objects released");

    // 2. a box blanked on every frame: decoded, redacted, encoded again
    let recipe = tmp.join("r.toml");
    veil_io::atomic::write_all(
        &recipe,
        br#"
name = "box"
version = "1"
options = ["clean-pixel-data"]
[pixels]
builtin_region_rules = false
[[pixels.region]]
label = "top band"
when = { Modality = "NM" }
rects = [[0, 0, 64, 8]]
"#,
    )
    .unwrap();
    let recipe = recipe.to_string_lossy().into_owned();
    let (out, review) = deid(&tmp, &key, &input, "box", &["--recipe", &recipe]);
    assert!(review.is_empty(), "sent to review: {review:?}");
    assert!(!out.is_empty(), "objects released");
    for p in &out {
        let f = veil_io::read(p).expect("output parses");
        assert_eq!(f.ts.uid, JPEG_LS, "redacted frames in JPEG-LS lossless");
        let lossy = f.dataset.get(Tag(0x0028, 0x2110)).map(|e| e.value.clone());
        assert_eq!(
            lossy,
            Some(veil_io::Value::Bytes(b"01".to_vec())),
            "still marked lossy"
        );
    }
    let report = std::fs::read_to_string(tmp.join("report-box.json")).unwrap();
    assert!(
        report.contains("JPEG Extended → JPEG-LS Lossless"),
        "the report says the syntax changed"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
