//! The safety net after the table: the object's own identifying values are
//! found in every value the table keeps (coded concepts, RT and segment
//! labels, dose comments, content descriptions, URLs), PHI patterns in free
//! text, and technical values stay as they were.

use dicom_core::VR;
use veil_core::Tag;
use veil_deid::{Deidentified, Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element, FileMeta, Value};
use veil_rules::Recipe;

const NAME: &str = "KNOWLESWORTH^EUSTACE";
const MRN: &str = "MRN4455667";

fn text(g: u16, e: u16, vr: VR, s: &str) -> Element {
    Element::text(Tag(g, e), vr, s)
}

fn code(value: &str, meaning: &str) -> DataSet {
    DataSet::of([
        text(0x0008, 0x0100, VR::SH, value),
        text(0x0008, 0x0102, VR::SH, "99LOCAL"),
        text(0x0008, 0x0104, VR::LO, meaning),
    ])
}

/// A CT object with the patient's name, ID and birth date typed into
/// attributes that Table E.1-1 does not list or keeps.
fn planted() -> DataSet {
    DataSet::of([
        text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        text(0x0008, 0x0018, VR::UI, "1.2.826.0.1.3680043.2.4455.1"),
        text(0x0008, 0x0008, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        text(0x0008, 0x0060, VR::CS, "CT"),
        text(0x0008, 0x0070, VR::LO, "ACME MEDICAL"),
        text(0x0008, 0x1030, VR::LO, "CT HEAD 11-DEC-2018 93-year-old"),
        Element::sequence(
            Tag(0x0008, 0x1032),
            vec![code("P1", "CT HEAD FOR Eustace Knowlesworth")],
        ),
        text(
            0x0008,
            0x1190,
            VR::UR,
            "https://ris.example/order?mrn=MRN4455667&view=1",
        ),
        text(0x0010, 0x0010, VR::PN, NAME),
        text(0x0010, 0x0020, VR::LO, MRN),
        text(0x0010, 0x0030, VR::DA, "19270412"),
        text(0x0018, 0x0050, VR::DS, "0.625"),
        text(0x0018, 0x1020, VR::LO, "syngo CT 2012B 4.5.0.123"),
        text(0x0018, 0x1210, VR::SH, "B30f"),
        text(0x0020, 0x0013, VR::IS, "3"),
        text(0x0020, 0x0032, VR::DS, "-125.5\\-130.2\\42.75"),
        text(0x0028, 0x0004, VR::CS, "MONOCHROME2"),
        text(0x3004, 0x0006, VR::LO, "dose for KNOWLESWORTH"),
        text(0x300A, 0x0002, VR::SH, "KNOWLESWORTH"),
        text(
            0x0062,
            0x0006,
            VR::ST,
            "Tumour of Eustace Knowlesworth, 19270412",
        ),
        text(0x0070, 0x0081, VR::LO, "MRN4455667 contours"),
        text(0x0040, 0xA040, VR::CS, "TEXT"),
        text(0x0018, 0x5100, VR::CS, "HFS"),
        text(0x0008, 0x0005, VR::CS, "ISO_IR 100"),
        text(0x0018, 0x0015, VR::CS, "KNOWLESWORTH"),
    ])
}

fn policy(options: &[&str]) -> Policy {
    let opts: Vec<_> = options.iter().map(|o| o.parse().unwrap()).collect();
    Policy::new(Recipe::default(), &opts, Key::from_bytes([9; 32])).unwrap()
}

fn run(options: &[&str], file: &DicomFile) -> Deidentified {
    Deidentifier::new(&policy(options)).explain(file).unwrap()
}

/// Every text value of a data set, at every depth.
fn values(ds: &DataSet, out: &mut Vec<(Tag, String)>) {
    for e in &ds.elements {
        match &e.value {
            Value::Sequence(items) => items.iter().for_each(|i| values(i, out)),
            Value::Bytes(b) => out.push((e.tag, String::from_utf8_lossy(b).into_owned())),
            _ => {}
        }
    }
}

fn value(ds: &DataSet, tag: Tag) -> Option<String> {
    ds.bytes(tag)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

const RESEARCH: &[&str] = &["retain-long-modified-dates", "clean-descriptors"];

#[test]
fn own_values_are_found_in_every_kept_value() {
    let file = DicomFile::in_memory(planted());
    for options in [&[][..], RESEARCH] {
        let d = run(options, &file);
        let mut all = Vec::new();
        values(&d.dataset, &mut all);
        for (tag, v) in &all {
            let v = v.to_uppercase();
            for needle in ["KNOWLESWORTH", "EUSTACE", "4455667", "19270412", "DEC-2018"] {
                assert!(!v.contains(needle), "{options:?}: {needle} left in {tag:?}");
            }
            assert!(!v.contains("93-YEAR"), "{options:?}: age left in {tag:?}");
        }
        // the code meaning is cleaned, not dropped: the concept stays
        let item = match &d.dataset.get(Tag(0x0008, 0x1032)).unwrap().value {
            Value::Sequence(items) => items[0].clone(),
            _ => panic!("not a sequence"),
        };
        assert_eq!(
            value(&item, Tag(0x0008, 0x0104)).unwrap().trim(),
            "CT HEAD FOR *** ***"
        );
        assert_eq!(value(&item, Tag(0x0008, 0x0100)).unwrap().trim(), "P1");
        // the URL keeps its place, loses its query
        assert_eq!(
            value(&d.dataset, Tag(0x0008, 0x1190)).unwrap().trim(),
            "https://ris.example/order"
        );
        // a CS that held the name gets a dummy valid for CS
        assert_eq!(
            value(&d.dataset, Tag(0x0018, 0x0015)).unwrap().trim(),
            "ANONYMIZED"
        );
    }
}

#[test]
fn technical_values_stay_as_they_were() {
    let file = DicomFile::in_memory(planted());
    for options in [&[][..], RESEARCH] {
        let d = run(options, &file);
        for (tag, want) in [
            ((0x0008, 0x0008), "ORIGINAL\\PRIMARY\\AXIAL"),
            ((0x0008, 0x0060), "CT"),
            ((0x0008, 0x0070), "ACME MEDICAL"),
            ((0x0018, 0x0050), "0.625"),
            ((0x0018, 0x1020), "syngo CT 2012B 4.5.0.123"),
            ((0x0018, 0x1210), "B30f"),
            ((0x0020, 0x0013), "3"),
            ((0x0020, 0x0032), "-125.5\\-130.2\\42.75"),
            ((0x0028, 0x0004), "MONOCHROME2"),
            ((0x0040, 0xA040), "TEXT"),
            ((0x0018, 0x5100), "HFS"),
            ((0x0008, 0x0005), "ISO_IR 100"),
        ] {
            let got = value(&d.dataset, Tag(tag.0, tag.1));
            assert_eq!(got.as_deref().map(str::trim), Some(want), "{tag:04X?}");
        }
    }
}

#[test]
fn a_short_patient_id_does_not_take_numbers_with_it() {
    let mut ds = planted();
    ds.put(text(0x0010, 0x0020, VR::LO, "3"));
    ds.put(text(0x0020, 0x0010, VR::SH, "125")); // StudyID
    ds.put(text(0x0020, 0x0012, VR::IS, "125")); // AcquisitionNumber
    ds.put(text(0x0018, 0x1030, VR::LO, "Series 125")); // ProtocolName: X/C
    ds.put(text(0x0018, 0x9073, VR::FD, "")); // binary: untouched
    let d = run(&[], &DicomFile::in_memory(ds));
    assert_eq!(
        value(&d.dataset, Tag(0x0020, 0x0012)).as_deref(),
        Some("125")
    );
    assert_eq!(value(&d.dataset, Tag(0x0020, 0x0013)).as_deref(), Some("3"));
    // as a whole value of a text attribute it is found
    let mut ds = planted();
    ds.put(text(0x0020, 0x0010, VR::SH, "125"));
    ds.put(text(0x3004, 0x0006, VR::LO, "125"));
    let d = run(&[], &DicomFile::in_memory(ds));
    assert_eq!(
        value(&d.dataset, Tag(0x3004, 0x0006)).as_deref(),
        Some("***")
    );
}

#[test]
fn explain_names_the_category_never_the_value() {
    let d = run(RESEARCH, &DicomFile::in_memory(planted()));
    let find = |path: &str| {
        d.decisions
            .iter()
            .find(|x| x.path.to_string() == path)
            .unwrap_or_else(|| panic!("{path} not explained"))
    };
    let cm = find("(0008,1032)[0]/(0008,0104)");
    assert!(
        cm.why.ends_with("; cleaned by the safety net: name"),
        "{}",
        cm.why
    );
    assert!(find("(3004,0006)").why.contains("safety net: name"));
    assert!(find("(0070,0081)").why.contains("safety net: id"));
    assert!(find("(0008,1190)").why.contains("safety net"));
    for x in &d.decisions {
        for secret in ["KNOWLESWORTH", "EUSTACE", "4455667", "1927"] {
            assert!(!x.why.to_uppercase().contains(secret), "{}", x.why);
        }
    }
    // nothing to find: no note
    assert!(!find("(0018,0050)").why.contains("safety net"));
}

#[test]
fn file_meta_ae_titles_are_own_values() {
    let mut ds = planted();
    ds.put(text(0x0008, 0x1010, VR::SH, "SCANNER7AE")); // StationName: X
    ds.put(text(0x3004, 0x0006, VR::LO, "sent by CTSCANNER01"));
    let meta = DataSet::of([text(0x0002, 0x0016, VR::AE, "CTSCANNER01")]);
    let file = DicomFile {
        meta: Some(FileMeta {
            elements: meta,
            end: 0,
        }),
        ..DicomFile::in_memory(ds)
    };
    let d = run(&[], &file);
    assert_eq!(
        value(&d.dataset, Tag(0x3004, 0x0006)).as_deref(),
        Some("sent by ***")
    );
    // the writer's File Meta is built from the new UIDs only
    let header = veil_io::file_header(
        &veil_io::WriteMeta {
            sop_class: d.sop_class.clone(),
            sop_instance: d.sop_instance.clone(),
        },
        &file.ts,
    )
    .unwrap();
    assert!(!String::from_utf8_lossy(&header).contains("CTSCANNER01"));
}

#[test]
fn options_are_not_undone() {
    // a device serial kept by retain-device-identity has the shape of an
    // MRN; neither the net's patterns nor its own values touch it
    let mut ds = planted();
    ds.put(text(0x0018, 0x1000, VR::LO, "SN12345678"));
    let d = run(&["retain-device-identity"], &DicomFile::in_memory(ds));
    assert_eq!(
        value(&d.dataset, Tag(0x0018, 0x1000)).as_deref(),
        Some("SN12345678")
    );
}

#[test]
fn full_dates_keep_a_study_on_the_day_of_birth() {
    let mut ds = planted();
    ds.put(text(0x0008, 0x0020, VR::DA, "19270412"));
    let d = run(
        &["retain-long-full-dates"],
        &DicomFile::in_memory(ds.clone()),
    );
    assert_eq!(
        value(&d.dataset, Tag(0x0008, 0x0020)).as_deref(),
        Some("19270412")
    );
}

#[test]
fn numeric_values_that_are_an_own_id_get_a_dummy() {
    // the digits of the MRN (seven, so not a plausible count) typed into a
    // number; a DS and an IS of the same object stay
    let mut ds = planted();
    ds.put(text(0x0020, 0x0012, VR::IS, "4455667")); // AcquisitionNumber
    let d = run(&[], &DicomFile::in_memory(ds));
    assert_eq!(value(&d.dataset, Tag(0x0020, 0x0012)).as_deref(), Some("1"));
    assert_eq!(value(&d.dataset, Tag(0x0020, 0x0013)).as_deref(), Some("3"));
}

#[test]
fn text_inside_un_and_ob_is_scanned() {
    let mut ds = planted();
    // a standard attribute read without its VR (UN), and UTF-16 text in OB
    ds.put(Element::bytes(
        Tag(0x3004, 0x0006),
        VR::UN,
        b"note on KNOWLESWORTH ".to_vec(),
    ));
    let utf16: Vec<u8> = "to Knowlesworth"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    ds.put(Element::bytes(Tag(0x0070, 0x0081), VR::OB, utf16));
    let d = run(&[], &DicomFile::in_memory(ds));
    let un = d.dataset.bytes(Tag(0x3004, 0x0006)).unwrap();
    assert!(!String::from_utf8_lossy(un).contains("KNOWLESWORTH"));
    let ob = d.dataset.bytes(Tag(0x0070, 0x0081)).unwrap();
    let units: Vec<u16> = ob
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    assert!(s.starts_with("to ***"), "{s}");
}
