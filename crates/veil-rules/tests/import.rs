//! `veil recipe import` on the real rule files sites bring
//! (tests/fixtures/import/, rules/sources/pydicom_deid_deid.dicom): every
//! enabled rule is accounted for (translated, or listed as not expressed),
//! the recipe loads as `veil deid` loads it, and the constructs the issue
//! names come out as the right overrides.

use std::path::Path;

use veil_core::ProfileOption;
use veil_rules::import::{import, Format, Imported};
use veil_rules::{OverrideAction, Recipe};

fn fixture(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = if name.ends_with(".dicom") {
        dir.join("../../rules/sources").join(name)
    } else {
        dir.join("tests/fixtures/import").join(name)
    };
    std::fs::read_to_string(p).unwrap()
}

fn run(format: Format, name: &str) -> (Imported, Recipe) {
    let i = import(format, name, &fixture(name)).unwrap();
    let r = Recipe::parse(&i.toml).unwrap();
    r.selectors(veil_rules::regions::keyword_tag).unwrap();
    (i, r)
}

fn action(r: &Recipe, keyword: &str) -> Option<OverrideAction> {
    r.attributes
        .iter()
        .rev()
        .find(|a| a.keyword.as_deref() == Some(keyword))
        .map(|a| a.action)
}

/// Enabled rules of a CTP script, counted on the text (not with the
/// importer's parser).
fn enabled(text: &str) -> usize {
    ["<e en=\"T\"", "<k en=\"T\""]
        .iter()
        .map(|p| text.matches(p).count())
        .sum::<usize>()
        + text.matches("<r en=").count()
}

#[test]
fn tcia_basic() {
    let (i, r) = run(Format::Ctp, "TCIA-Basic");
    let text = i.report.to_text();
    assert_eq!(i.report.rules, enabled(&fixture("TCIA-Basic")), "{text}");
    // PatientID and PatientName from a lookup table, and every private
    // group kept: not expressible, so the import is partial
    assert!(!i.report.is_complete());
    let missing: Vec<&str> = i
        .report
        .not_expressed
        .iter()
        .map(|n| n.subject.as_str())
        .collect();
    assert!(
        missing.iter().any(|s| s.contains("@lookup(this,ptid)")),
        "{text}"
    );
    assert!(
        missing.iter().any(|s| s.contains("privategroups")),
        "{text}"
    );
    // the private BlockOwner/ProjectName stamps cannot be written
    assert!(missing.iter().any(|s| s.contains("(0013,1010)")), "{text}");
    assert_eq!(
        i.report.rules,
        i.report.translated
            + i.report
                .not_expressed
                .iter()
                .map(|n| n.lines.len())
                .sum::<usize>(),
        "{text}"
    );
    for kw in [
        "StudyDescription",
        "PatientSex",
        "PatientAge",
        "Manufacturer",
    ] {
        assert_eq!(action(&r, kw), Some(OverrideAction::Keep), "{kw}");
    }
    assert_eq!(action(&r, "InstitutionName"), Some(OverrideAction::Remove));
    assert_eq!(action(&r, "PatientBirthDate"), Some(OverrideAction::Empty));
    assert_eq!(
        action(&r, "StudyInstanceUID"),
        Some(OverrideAction::Pseudonymize)
    );
    assert_eq!(action(&r, "StudyDate"), Some(OverrideAction::Shift));
    assert_eq!(action(&r, "BodyPartExamined"), Some(OverrideAction::Add));
    assert_eq!(
        action(&r, "RadiopharmaceuticalInformationSequence"),
        Some(OverrideAction::Keep)
    );
    assert!(r.options.contains(&ProfileOption::RetainLongModifiedDates));
    assert!(r.options.contains(&ProfileOption::RetainSafePrivate));
    assert!(r.dates.keep_times);
    assert_eq!(r.pseudonyms.accession_number, "{hash:16}");
    assert_eq!(r.pseudonyms.patient_name, "{patient_id}");
    assert!(!r.strict);
    for why in [
        "2.25",
        "DATEINC",
        "MD5",
        "lookup table",
        "placeholder",
        "safety net",
    ] {
        assert!(text.contains(why), "{why}: {text}");
    }
}

#[test]
fn ps315_basic() {
    let (i, r) = run(Format::Ctp, "DICOM-PS3.15-Basic");
    let text = i.report.to_text();
    assert_eq!(
        i.report.rules,
        enabled(&fixture("DICOM-PS3.15-Basic")),
        "{text}"
    );
    assert!(i.report.is_complete(), "{text}");
    assert_eq!(i.report.translated, i.report.rules);
    // @hash(this, 64) on PatientID: the most Veil's hash gives
    assert_eq!(r.pseudonyms.patient_id, "{hash:51}");
    assert_eq!(action(&r, "PatientSex"), Some(OverrideAction::Empty));
    assert_eq!(action(&r, "BodyPartExamined"), Some(OverrideAction::Keep));
    // @date() has no override: the table applies
    assert_eq!(action(&r, "StudyDate"), None);
    assert!(text.contains("@date()"), "{text}");
    assert!(r.options.is_empty());
}

#[test]
fn ctp_full_example() {
    let src = fixture("example-ctp-dicom-anonymizer.script");
    let (i, r) = run(Format::Ctp, "example-ctp-dicom-anonymizer.script");
    let text = i.report.to_text();
    assert_eq!(i.report.rules, enabled(&src), "{text}");
    // 764 rules switched off are ignored, as CTP ignores them
    assert!(src.matches("en=\"F\"").count() > 700);
    assert_eq!(
        action(&r, "PatientName"),
        Some(OverrideAction::Pseudonymize)
    );
    assert!(text.contains("@hashname"), "{text}");
    assert_eq!(r.pseudonyms.patient_id, "{hash:10}");
    assert_eq!(
        i.report.rules,
        i.report.translated
            + i.report
                .not_expressed
                .iter()
                .map(|n| n.lines.len())
                .sum::<usize>(),
        "{text}"
    );
}

#[test]
fn deid_default_recipe() {
    let src = fixture("pydicom_deid_deid.dicom");
    let (i, r) = run(Format::Deid, "pydicom_deid_deid.dicom");
    let text = i.report.to_text();
    let header = src.split("%header").nth(1).unwrap();
    let lines = header
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    assert_eq!(i.report.rules, lines, "{text}");
    // ADD PatientID var:entity_id and the other run-time variables
    let missing = &i.report.not_expressed;
    assert_eq!(
        missing.iter().map(|n| n.lines.len()).sum::<usize>(),
        header.matches(" var:").count(),
        "{text}"
    );
    let regex: Vec<&str> = r
        .attributes
        .iter()
        .filter_map(|a| a.keyword_regex.as_deref())
        .collect();
    assert!(regex.contains(&"(?i).*(time)"), "{regex:?}");
    assert!(regex.contains(&"(?i).*(uid).*"), "{regex:?}");
    assert_eq!(action(&r, "PatientID"), Some(OverrideAction::Remove));
    assert_eq!(action(&r, "IssuerOfPatientID"), Some(OverrideAction::Add));
    // contains:UID would strip the object's own UIDs: remapped instead
    assert_eq!(
        action(&r, "SOPInstanceUID"),
        Some(OverrideAction::Pseudonymize)
    );
    assert_eq!(action(&r, "SOPClassUID"), Some(OverrideAction::Keep));
    // `REMOVE PatientsName` and `REMOVE jitter` name no attribute
    assert!(text.contains("PatientsName"), "{text}");
}
