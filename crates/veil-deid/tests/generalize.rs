//! The recipe's `[generalize]` section acts after every other action: ages
//! banded (lower bound, `NNNY`), dates truncated after the shift, listed
//! attributes emptied (sequences removed), and `veil explain` names the
//! generalization as the reason.

use dicom_core::VR;
use veil_core::{ProfileOption, Tag};
use veil_deid::{Act, Deidentified, Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element};
use veil_rules::Recipe;

const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
const ACQ_DATETIME: Tag = Tag(0x0008, 0x002A);
const MANUFACTURER: Tag = Tag(0x0008, 0x0070);
const PROCEDURE_CODES: Tag = Tag(0x0008, 0x1032);
const AGE: Tag = Tag(0x0010, 0x1010);
const SIZE: Tag = Tag(0x0010, 0x1020);
const WEIGHT: Tag = Tag(0x0010, 0x1030);

fn object(age: &str) -> DicomFile {
    let code = DataSet::of([
        Element::text(Tag(0x0008, 0x0100), VR::SH, "X1"),
        Element::text(Tag(0x0008, 0x0102), VR::SH, "99LOCAL"),
    ]);
    DicomFile::in_memory(DataSet::of([
        Element::text(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        Element::text(Tag(0x0008, 0x0018), VR::UI, "1.2.3.4"),
        Element::text(STUDY_DATE, VR::DA, "20240517"),
        Element::text(ACQ_DATETIME, VR::DT, "20240517101112.5+0100"),
        Element::text(MANUFACTURER, VR::LO, "ACME MEDICAL"),
        Element::sequence(PROCEDURE_CODES, vec![code]),
        Element::text(Tag(0x0010, 0x0020), VR::LO, "MRN1"),
        Element::text(Tag(0x0010, 0x0040), VR::CS, "F"),
        Element::text(AGE, VR::AS, age),
        Element::text(SIZE, VR::DS, "1.82"),
        Element::text(WEIGHT, VR::DS, "80"),
    ]))
}

fn run(recipe: &str, f: &DicomFile) -> Deidentified {
    let policy = Policy::new(
        Recipe::parse(recipe).unwrap(),
        &[
            ProfileOption::RetainPatientCharacteristics,
            ProfileOption::RetainLongModifiedDates,
            ProfileOption::RetainDeviceIdentity,
        ],
        Key::from_bytes([7; 32]),
    )
    .unwrap();
    Deidentifier::new(&policy).explain(f).unwrap()
}

fn decision(d: &Deidentified, tag: Tag) -> (Act, String) {
    let x = d
        .decisions
        .iter()
        .find(|x| x.path.0.len() == 1 && x.path.0[0].0 == tag)
        .expect("a decision for the tag");
    (x.action.clone(), x.why.clone())
}

const RECIPE: &str = r#"
name = "gen"
[generalize]
age_band_years = 10
dates = "month"
drop = ["PatientSize", "(0010,1030)", "ProcedureCodeSequence"]
"#;

#[test]
fn ages_are_banded_dates_truncated_after_the_shift_and_drops_emptied() {
    let f = object("047Y");
    let plain = run("name = \"plain\"", &f);
    let gen = run(RECIPE, &f);
    let (p, g) = (&plain.dataset, &gen.dataset);

    // without [generalize] the options keep the characteristics, dates shifted
    assert_eq!(p.ascii(AGE).as_deref(), Some("047Y"));
    assert_eq!(p.ascii(SIZE).as_deref(), Some("1.82"));
    let shifted = p.ascii(STUDY_DATE).unwrap();
    assert_ne!(shifted, "20240517", "the date is shifted first");

    // age: 47 is in the band 40-49, written as its lower bound
    assert_eq!(g.ascii(AGE).as_deref(), Some("040Y"));
    // study date: the shifted date, truncated to the first of its month
    assert_eq!(g.ascii(STUDY_DATE).unwrap(), format!("{}01", &shifted[..6]));
    // a DT keeps its (shifted) date part only
    let dt = p.ascii(ACQ_DATETIME).unwrap();
    assert_eq!(g.ascii(ACQ_DATETIME).unwrap(), format!("{}01", &dt[..6]));
    // drop by keyword and by tag: emptied, still present (may be Type 2)
    assert_eq!(g.ascii(SIZE).as_deref(), Some(""));
    assert_eq!(g.ascii(WEIGHT).as_deref(), Some(""));
    // a dropped sequence is removed
    assert!(p.get(PROCEDURE_CODES).is_some());
    assert!(g.get(PROCEDURE_CODES).is_none());
    // what is not named is untouched
    assert_eq!(g.ascii(MANUFACTURER).as_deref(), Some("ACME MEDICAL"));
    assert_eq!(g.ascii(Tag(0x0010, 0x0040)).as_deref(), Some("F"));

    // explain names the generalization, then the rule it followed
    let (act, why) = decision(&gen, AGE);
    assert_eq!(act, Act::Generalize);
    assert!(
        why.starts_with("recipe 'gen' [generalize] age_band_years = 10")
            && why.contains("before that: E.1-1"),
        "{why}"
    );
    let (act, why) = decision(&gen, STUDY_DATE);
    assert_eq!(act, Act::Generalize);
    assert!(why.contains("[generalize] dates = \"month\""), "{why}");
    let (act, why) = decision(&gen, SIZE);
    assert_eq!(act, Act::Empty);
    assert!(why.contains("[generalize] drop"), "{why}");
    let (act, _) = decision(&gen, PROCEDURE_CODES);
    assert_eq!(act, Act::Remove);
    let (act, why) = decision(&gen, MANUFACTURER);
    assert_eq!(act, Act::Keep);
    assert!(!why.contains("generalize"), "{why}");

    // the output says it was generalized
    let method = g.ascii(Tag(0x0012, 0x0063)).unwrap();
    assert!(
        method.ends_with("GENERALIZED AGE 10Y BANDS; DATES TO MONTH; 3 DROPPED"),
        "{method}"
    );
}

#[test]
fn bands_years_and_edge_ages() {
    let year = r#"
[generalize]
age_band_years = 20
dates = "year"
"#;
    for (age, want) in [
        ("047Y", "040Y"),
        ("039Y", "020Y"),
        ("000Y", "000Y"),
        ("006M", "000Y"),
        ("003W", "000Y"),
        ("095Y", "080Y"), // capped at 090Y first (HIPAA), then banded
        ("4X7Y", ""),     // not an age: emptied, the safe side
    ] {
        let d = run(year, &object(age));
        assert_eq!(d.dataset.ascii(AGE).as_deref(), Some(want), "{age}");
    }
    let d = run(year, &object("047Y"));
    let date = d.dataset.ascii(STUDY_DATE).unwrap();
    assert!(date.ends_with("0101") && date.len() == 8, "{date}");
}

#[test]
fn a_retained_birth_date_is_emptied_when_ages_are_banded() {
    let mut f = object("047Y");
    f.dataset
        .put(Element::text(Tag(0x0010, 0x0030), VR::DA, "19770302"));
    // an override keeps the birth date; the age band still empties it
    let recipe = r#"
[[attribute]]
keyword = "PatientBirthDate"
action = "keep"
[generalize]
age_band_years = 5
"#;
    let d = run(recipe, &f);
    assert_eq!(d.dataset.ascii(Tag(0x0010, 0x0030)).as_deref(), Some(""));
    assert_eq!(d.dataset.ascii(AGE).as_deref(), Some("045Y"));
    let (_, why) = decision(&d, Tag(0x0010, 0x0030));
    assert!(why.contains("birth date emptied"), "{why}");
}

#[test]
fn unknown_drop_attributes_are_refused() {
    let r = Recipe::parse("[generalize]\ndrop = [\"PatientSise\"]").unwrap();
    assert!(Policy::new(r, &[], Key::from_bytes([7; 32])).is_err());
}
