//! Issue 16: `veil verify --source` looks for the source's own values in
//! every place of the output, and says what it could not pair.
//!
//! A real corpus image is de-identified by `veil deid` (its output pairs
//! with its source by its pixel data); the clean output verifies clean. Then one leak at a time is written into a copy of it,
//! each in a place the verifier skipped before: the patient's name in the
//! Code Meaning of a procedure code, the Patient ID as the File Meta's
//! Source AE Title, "93-year-old" in a description, an Age String of
//! `093Y`. Each copy must fail with a finding of the right category at the
//! right place. Last, an SR whose source is not given: it pairs with
//! nothing, is still searched with the patterns and name lists, is counted
//! as unpaired, warns, and fails under `--strict`.
//!
//! Needs VEIL_CORPUS.
#![allow(clippy::print_stderr)] // the summary lines say what was verified

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, DicomFile, Element, Value, WriteMeta};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

/// A PN or text value, space-padded to an even length.
fn text(tag: Tag, vr: VR, v: &str) -> Element {
    let mut b = v.as_bytes().to_vec();
    if b.len() % 2 == 1 {
        b.push(b' ');
    }
    Element::bytes(tag, vr, b)
}

/// An identity the verifier can be asked about: the family and given
/// names (letters only, 4 or more) and a Patient ID of 3 or more
/// characters with a digit, none of them a placeholder.
struct Identity {
    family: String,
    given: String,
    id: String,
}

fn identity(f: &DicomFile) -> Option<Identity> {
    let pn = f.dataset.ascii(Tag(0x0010, 0x0010))?;
    let mut comps = pn.split('=').next()?.split('^');
    let (family, given) = (comps.next()?.trim(), comps.next()?.trim());
    let word = |s: &str| s.len() >= 4 && s.chars().all(|c| c.is_ascii_alphabetic());
    let placeholder = |s: &str| {
        [
            "ANONYMOUS",
            "ANONYMIZED",
            "PATIENT",
            "PHANTOM",
            "TEST",
            "NAME",
        ]
        .contains(&s.to_uppercase().as_str())
    };
    if !word(family) || !word(given) || placeholder(family) || placeholder(given) {
        return None;
    }
    let id = f.dataset.ascii(Tag(0x0010, 0x0020))?;
    let id_ok = id.len() >= 3
        && id.len() <= 16
        && id.chars().any(|c| c.is_ascii_digit())
        && id.chars().all(|c| c.is_ascii_alphanumeric());
    id_ok.then(|| Identity {
        family: family.to_string(),
        given: given.to_string(),
        id,
    })
}

/// The corpus images with an identity and the corpus SRs, in path order.
fn candidates(corpus: &Path) -> (Vec<(PathBuf, Identity)>, Vec<PathBuf>) {
    let (mut images, mut srs) = (Vec::new(), Vec::new());
    for p in veil_test::files(corpus) {
        let Ok(f) = veil_io::read(&p) else { continue };
        if f.is_dicomdir() {
            continue;
        }
        let class = f.sop_class().unwrap_or_default();
        if class.starts_with("1.2.840.10008.5.1.4.1.1.88.") {
            srs.push(p);
        } else if f.dataset.get(Tag(0x7FE0, 0x0010)).is_some() {
            if let Some(id) = identity(&f) {
                images.push((p, id));
            }
        }
    }
    (images, srs)
}

/// `veil deid` (Basic profile) of the first of `inputs` that it writes to
/// OUT (others go to review, for pixels it cannot clean): the source
/// folder, OUT, the output file and which input it was. An image output pairs with
/// its source by its pixel data, which is copied byte for byte.
fn deid(inputs: &[PathBuf], dir: &Path, key: &Path) -> (PathBuf, PathBuf, PathBuf, usize) {
    for (i, input) in inputs.iter().enumerate() {
        let src = dir.join(format!("src{i}"));
        let out = dir.join(format!("out{i}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::copy(input, src.join("x.dcm")).unwrap();
        let o = veil()
            .arg("deid")
            .arg(&src)
            .arg("--out")
            .arg(&out)
            .arg("--key")
            .arg(key)
            .output()
            .unwrap();
        assert!(
            o.status.code().unwrap_or(2) <= 1,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        if let [one] = veil_test::files(&out).as_slice() {
            return (src, out, one.clone(), i);
        }
    }
    panic!("veil deid wrote none of the candidates to OUT");
}

/// A copy of `base` in `dir` with `change` applied to its data set (bulk
/// values copied from `base`).
fn variant(base: &Path, dir: &Path, change: impl FnOnce(&mut DataSet)) -> PathBuf {
    let f = veil_io::read(base).unwrap();
    let mut ds = f.dataset.clone();
    change(&mut ds);
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("x.dcm");
    let meta = WriteMeta {
        sop_class: ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
        sop_instance: ds.ascii(Tag(0x0008, 0x0018)).unwrap_or_default(),
    };
    veil_io::write_file(&out, &meta, &f.ts, &ds, &f.source).unwrap();
    out
}

/// Adds (0002,0016) Source Application Entity Title to a written file's
/// File Meta (Veil's writer builds File Meta without AE titles) and fixes
/// the group length.
fn set_source_ae(path: &Path, ae: &str) {
    let mut b = std::fs::read(path).unwrap();
    assert_eq!(&b[128..132], b"DICM");
    assert_eq!(&b[132..136], &[2, 0, 0, 0], "group length first");
    let len = u32::from_le_bytes(b[140..144].try_into().unwrap()) as usize;
    let end = 144 + len;
    let mut v = ae.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    let mut el = vec![0x02, 0x00, 0x16, 0x00, b'A', b'E'];
    el.extend((v.len() as u16).to_le_bytes());
    el.extend(&v);
    // group 0002 elements are in tag order; (0002,0016) goes after the
    // ones below it
    let mut at = 144;
    while at < end {
        let elem = u16::from_le_bytes([b[at + 2], b[at + 3]]);
        let vr = &b[at + 4..at + 6];
        let (hdr, vlen) = if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
            (
                12,
                u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize,
            )
        } else {
            (8, u16::from_le_bytes([b[at + 6], b[at + 7]]) as usize)
        };
        if elem > 0x0016 {
            break;
        }
        at += hdr + vlen;
    }
    b.splice(at..at, el.iter().copied());
    let new_len = (len + el.len()) as u32;
    b[140..144].copy_from_slice(&new_len.to_le_bytes());
    veil_io::atomic::write_all(path, &b).unwrap();
}

/// Runs `veil verify OUT --source SRC --json` with `extra` flags: the exit
/// code and the report.
fn verify(out: &Path, src: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let json = out.with_extension("json");
    let o = veil()
        .arg("verify")
        .arg(out)
        .arg("--source")
        .arg(src)
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    let r = serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON");
    (o.status.code().unwrap_or(-1), r)
}

/// (place, category, detector, fails) of every finding.
fn findings(r: &serde_json::Value) -> Vec<(String, String, String, bool)> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["place"].as_str().unwrap_or("").to_string(),
                f["category"].as_str().unwrap_or("").to_string(),
                f["detector"].as_str().unwrap_or("").to_string(),
                f["fails"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn issue_16_own_values_count_everywhere_and_unpaired_outputs_are_searched() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("verify-everywhere");
    let (images, srs) = candidates(&corpus);
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &tmp);
    let paths: Vec<PathBuf> = images.iter().map(|(p, _)| p.clone()).collect();
    let (src, clean_dir, clean, i) = deid(&paths, &tmp.join("image"), &key);
    let who = &images[i].1;

    // the clean output verifies clean: no new rule fails Veil's output
    let (code, r) = verify(&clean_dir, &src, &[]);
    assert_eq!(code, 0, "{:#?}", findings(&r));
    assert_eq!(r["summary"]["unpaired"], 0);

    let name = format!("{} {}", who.given, who.family);
    let procedure = |ds: &mut DataSet| {
        ds.put(Element::sequence(
            Tag(0x0008, 0x1032),
            vec![DataSet::of([
                text(Tag(0x0008, 0x0100), VR::SH, "P1"),
                text(Tag(0x0008, 0x0102), VR::SH, "99LOCAL"),
                text(Tag(0x0008, 0x0104), VR::LO, &format!("CT HEAD {name}")),
            ])],
        ))
    };
    type Change<'a> = Box<dyn Fn(&mut DataSet) + 'a>;
    let cases: Vec<(&str, Change<'_>, &str, &str)> = vec![
        (
            "code-meaning",
            Box::new(procedure),
            "(0008,1032)[0]/(0008,0104)",
            "name",
        ),
        (
            "meta-ae",
            Box::new(|_: &mut DataSet| {}),
            "meta/(0002,0016)",
            "id",
        ),
        (
            "prose-age",
            Box::new(|ds: &mut DataSet| {
                ds.put(text(Tag(0x0008, 0x1030), VR::LO, "CT HEAD 93-year-old"))
            }),
            "(0008,1030)",
            "age",
        ),
        (
            "age-string",
            Box::new(|ds: &mut DataSet| ds.put(text(Tag(0x0010, 0x1010), VR::AS, "093Y"))),
            "(0010,1010)",
            "age",
        ),
    ];
    for (case, change, place, category) in cases {
        let dir = tmp.join(case);
        let out = variant(&clean, &dir, change);
        if case == "meta-ae" {
            set_source_ae(&out, &who.id);
        }
        let (code, r) = verify(&dir, &src, &[]);
        let got = findings(&r);
        assert_eq!(code, 1, "{case}: {got:#?}");
        assert!(
            got.iter()
                .any(|(p, c, _, fails)| p == place && c == category && *fails),
            "{case}: no failing {category} finding at {place}: {got:#?}"
        );
    }

    // an SR that pairs with no source: patterns and name lists still run
    let (_, _, sr_clean, _) = deid(&srs, &tmp.join("sr"), &key);
    let sr_dir = tmp.join("sr-leak");
    variant(&sr_clean, &sr_dir, |ds| {
        let item = DataSet::of([
            text(Tag(0x0040, 0xA010), VR::CS, "CONTAINS"),
            text(Tag(0x0040, 0xA040), VR::CS, "TEXT"),
            Element::sequence(
                Tag(0x0040, 0xA043),
                vec![DataSet::of([
                    text(Tag(0x0008, 0x0100), VR::SH, "121106"),
                    text(Tag(0x0008, 0x0102), VR::SH, "DCM"),
                    text(Tag(0x0008, 0x0104), VR::LO, "Comment"),
                ])],
            ),
            text(
                Tag(0x0040, 0xA160),
                VR::UT,
                "Discussed with Mary Johnson on 11-DEC-2018",
            ),
        ]);
        match ds.get_mut(Tag(0x0040, 0xA730)).map(|e| &mut e.value) {
            Some(Value::Sequence(items)) => items.push(item),
            _ => ds.put(Element::sequence(Tag(0x0040, 0xA730), vec![item])),
        }
    });
    // the image's source is given, the SR's is not
    let (code, r) = verify(&sr_dir, &src, &[]);
    let got = findings(&r);
    assert_eq!(code, 1, "{got:#?}");
    assert_eq!(r["summary"]["unpaired"], 1, "{:#?}", r["summary"]);
    for (category, detector) in [("name", "name-list"), ("date", "pattern:date")] {
        assert!(
            got.iter()
                .any(|(p, c, d, fails)| p.starts_with("(0040,A730)[")
                    && p.ends_with("/(0040,A160)")
                    && c == category
                    && d == detector
                    && *fails),
            "no {detector} finding in the SR's text: {got:#?}"
        );
    }
    assert!(
        got.iter()
            .any(|(p, _, d, fails)| p == "file" && d == "structure:unpaired" && !fails),
        "the unpaired output is a warning: {got:#?}"
    );

    // the clean SR, unpaired: a warning, which --strict makes a failure
    let sr_only = tmp.join("sr-clean");
    variant(&sr_clean, &sr_only, |_| {});
    let (code, r) = verify(&sr_only, &src, &[]);
    assert_eq!(code, 0, "{:#?}", findings(&r));
    assert_eq!(r["summary"]["unpaired"], 1);
    assert_eq!(r["summary"]["warnings"], 1, "{:#?}", findings(&r));
    let (code, r) = verify(&sr_only, &src, &["--strict"]);
    assert_eq!(code, 1, "{:#?}", findings(&r));
    assert_eq!(r["summary"]["failing"], 1);
    let html = tmp.join("sr.html");
    let o = veil()
        .arg("verify")
        .arg(&sr_only)
        .arg("--source")
        .arg(&src)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(line.contains("1 unpaired"), "{line}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("1 output(s) paired with no source"),
        "the HTML status says what was not paired"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
