//! The recipe constructs that imported CTP and deid rules need
//! (`veil recipe import`): `add` creates an attribute the object lacks
//! (CTP `@always()`, deid `ADD`), `shift` moves a date even where the table
//! removes it (CTP `@incrementdate`, deid `JITTER`), and `keyword_regex`
//! selects by keyword pattern at any depth (deid `endswith:`/`contains:`).

use dicom_core::VR;
use veil_core::Tag;
use veil_deid::{Deidentified, Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element};
use veil_rules::Recipe;

const BODY_PART: Tag = Tag(0x0018, 0x0015);
const ISSUER: Tag = Tag(0x0010, 0x0021);
const LMP: Tag = Tag(0x0010, 0x21D0); // LastMenstrualDate: X in the Basic Profile
const STUDY_TIME: Tag = Tag(0x0008, 0x0030);
const SERIES_TIME: Tag = Tag(0x0008, 0x0031);
const PROCEDURE_CODES: Tag = Tag(0x0008, 0x1032);
const CODE_MEANING: Tag = Tag(0x0008, 0x0104);

fn object() -> DicomFile {
    let code = DataSet::of([
        Element::text(Tag(0x0008, 0x0100), VR::SH, "X1"),
        Element::text(CODE_MEANING, VR::LO, "CHEST"),
    ]);
    DicomFile::in_memory(DataSet::of([
        Element::text(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        Element::text(Tag(0x0008, 0x0018), VR::UI, "1.2.3.4"),
        Element::text(Tag(0x0008, 0x0020), VR::DA, "20240517"),
        Element::text(STUDY_TIME, VR::TM, "101112"),
        Element::text(SERIES_TIME, VR::TM, "101500"),
        Element::sequence(PROCEDURE_CODES, vec![code]),
        Element::text(Tag(0x0010, 0x0020), VR::LO, "MRN1"),
        Element::text(LMP, VR::DA, "20240401"),
    ]))
}

fn run(recipe: &str) -> Result<Deidentified, String> {
    let policy = Policy::new(
        Recipe::parse(recipe).map_err(|e| e.to_string())?,
        &[],
        Key::from_bytes([7; 32]),
    )
    .map_err(|e| e.to_string())?;
    Ok(Deidentifier::new(&policy).explain(&object()).unwrap())
}

#[test]
fn add_creates_or_replaces() {
    let d = run(r#"
        [[attribute]]
        keyword = "BodyPartExamined"
        action = "add"
        value = "CHEST"
        [[attribute]]
        tag = "(0010,0021)"
        action = "add"
        value = "STARR"
        "#)
    .unwrap();
    let e = d.dataset.get(BODY_PART).expect("created");
    assert_eq!(e.vr, VR::CS);
    assert_eq!(d.dataset.ascii(BODY_PART).as_deref(), Some("CHEST"));
    assert_eq!(d.dataset.ascii(ISSUER).as_deref(), Some("STARR"));
    // without `add` nothing is created
    let plain = run("name = \"plain\"").unwrap();
    assert!(plain.dataset.get(BODY_PART).is_none());
    // `add` needs a value and a keyword or tag, never a private tag
    assert!(run("[[attribute]]\nkeyword = \"BodyPartExamined\"\naction = \"add\"").is_err());
    assert!(run(
        "[[attribute]]\npath = \"ProcedureCodeSequence/CodeMeaning\"\naction = \"add\"\nvalue = \"x\""
    )
    .is_err());
    assert!(run("[[attribute]]\ntag = \"(0013,1010)\"\naction = \"add\"\nvalue = \"x\"").is_err());
}

#[test]
fn shift_moves_a_date_the_table_removes() {
    // whole-day offsets (as CTP's), so the interval is exact in days
    let with = r#"
        options = ["retain-long-modified-dates"]
        [dates]
        keep_times = true
        [[attribute]]
        keyword = "LastMenstrualDate"
        action = "shift"
        "#;
    let d = run(with).unwrap();
    let moved = d.dataset.ascii(LMP).expect("kept, shifted");
    assert_ne!(moved, "20240401");
    assert_eq!(moved.len(), 8);
    // the same offset as the StudyDate: intervals are kept
    let study = d.dataset.ascii(Tag(0x0008, 0x0020)).unwrap();
    let days = |s: &str| {
        let (y, m, dd) = (
            s[..4].parse::<i64>().unwrap(),
            s[4..6].parse::<i64>().unwrap(),
            s[6..].parse::<i64>().unwrap(),
        );
        // days from civil (Howard Hinnant)
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + dd - 1;
        era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy
    };
    assert_eq!(
        days(&study) - days(&moved),
        days("20240517") - days("20240401")
    );
    // without the option, `shift` has no offset to move by: an error
    let err =
        run("[[attribute]]\nkeyword = \"LastMenstrualDate\"\naction = \"shift\"").unwrap_err();
    assert!(err.contains("retain-long-modified-dates"), "{err}");
}

#[test]
fn keyword_regex_selects_at_any_depth_and_the_last_override_wins() {
    let d = run(r#"
        options = ["retain-long-modified-dates"]
        [[attribute]]
        keyword_regex = "(?i).*(time)"
        action = "remove"
        [[attribute]]
        keyword = "SeriesTime"
        action = "keep"
        [[attribute]]
        keyword_regex = ".*Meaning"
        action = "replace"
        value = "REDACTED"
        "#)
    .unwrap();
    assert!(d.dataset.get(STUDY_TIME).is_none());
    assert_eq!(d.dataset.ascii(SERIES_TIME).as_deref(), Some("101500"));
    let item = match &d.dataset.get(PROCEDURE_CODES).unwrap().value {
        veil_io::Value::Sequence(items) => items[0].clone(),
        _ => panic!("not a sequence"),
    };
    assert_eq!(item.ascii(CODE_MEANING).as_deref(), Some("REDACTED"));
    // a bad expression, or a second selector, is an error
    assert!(run("[[attribute]]\nkeyword_regex = \"(\"\naction = \"remove\"").is_err());
    assert!(run(
        "[[attribute]]\nkeyword_regex = \".*Time\"\nkeyword = \"StudyTime\"\naction = \"remove\""
    )
    .is_err());
}
