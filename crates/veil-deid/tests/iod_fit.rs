//! Removing E.1-1 codes fitted to the object's IOD (issue 16): inside the
//! Request Attributes Sequence of a CT image, Scheduled Procedure Step ID
//! and Requested Procedure ID are Type 1C, so X gives them a dummy instead
//! of the empty value dciodvfy reports ("Empty attribute (no value) Type
//! 1C"); Accession Number there is Type 3, so Z removes it; Operators' Name
//! (X/Z/D) is Type 3 in the CT Image IOD and is removed; Referring
//! Physician's Name (Z) is Type 2 and is emptied. A SOP class the tables do
//! not know keeps the old behaviour.

use dicom_core::VR;
use veil_core::{ProfileOption, Tag};
use veil_deid::{Act, Deidentified, Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element, Value};
use veil_rules::Recipe;

const RAS: Tag = Tag(0x0040, 0x0275);
const SPS_ID: Tag = Tag(0x0040, 0x0009);
const RP_ID: Tag = Tag(0x0040, 0x1001);
const ACCESSION: Tag = Tag(0x0008, 0x0050);
const OPERATORS: Tag = Tag(0x0008, 0x1070);
const REFERRING: Tag = Tag(0x0008, 0x0090);

fn object(sop_class: &str) -> DicomFile {
    let mut ds = DataSet::default();
    let put = |ds: &mut DataSet, tag: Tag, vr: VR, v: &str| {
        ds.put(Element::bytes(tag, vr, v.as_bytes().to_vec()));
    };
    put(&mut ds, Tag(0x0008, 0x0016), VR::UI, sop_class);
    put(&mut ds, Tag(0x0008, 0x0018), VR::UI, "1.2.3.4.5.6.7");
    put(&mut ds, Tag(0x0008, 0x0060), VR::CS, "CT");
    put(&mut ds, OPERATORS, VR::PN, "OPERATOR^ONE");
    put(&mut ds, REFERRING, VR::PN, "REFERRER^TWO");
    let mut item = DataSet::default();
    put(&mut item, SPS_ID, VR::SH, "SPS12345");
    put(&mut item, RP_ID, VR::SH, "RP67890");
    put(&mut item, ACCESSION, VR::SH, "ACC24680");
    ds.put(Element {
        tag: RAS,
        vr: VR::SQ,
        value: Value::Sequence(vec![item]),
    });
    DicomFile::in_memory(ds)
}

fn run(sop_class: &str, options: &[ProfileOption]) -> Deidentified {
    let policy = Policy::new(Recipe::default(), options, Key::from_bytes([7; 32])).unwrap();
    Deidentifier::new(&policy)
        .explain(&object(sop_class))
        .unwrap()
}

fn value(ds: &DataSet, tag: Tag) -> Option<Vec<u8>> {
    match &ds.get(tag)?.value {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    }
}

fn request_item(ds: &DataSet) -> &DataSet {
    match &ds.get(RAS).expect("request attributes kept").value {
        Value::Sequence(items) => &items[0],
        _ => panic!("not a sequence"),
    }
}

fn why(out: &Deidentified, path: &[Tag]) -> String {
    out.decisions
        .iter()
        .find(|d| d.path.0.iter().map(|s| s.0).eq(path.iter().copied()))
        .map(|d| d.why.clone())
        .unwrap_or_default()
}

#[test]
fn removal_follows_the_ct_image_iod() {
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    // research: clean-descriptors keeps the request sequence (C), so its
    // Type 1C items must stay valid
    let out = run(
        ct,
        &[
            ProfileOption::RetainLongModifiedDates,
            ProfileOption::CleanDescriptors,
        ],
    );
    let item = request_item(&out.dataset);
    for (tag, old) in [(SPS_ID, "SPS12345"), (RP_ID, "RP67890")] {
        let v = value(item, tag).expect("Type 1C attribute kept");
        assert!(!v.is_empty(), "Type 1C attribute emptied");
        assert_ne!(v, old.as_bytes(), "identifier left");
    }
    assert_eq!(value(item, ACCESSION), None, "Type 3 here: removed");
    assert_eq!(value(&out.dataset, OPERATORS), None, "Type 3: removed");
    assert_eq!(
        value(&out.dataset, REFERRING),
        Some(Vec::new()),
        "Type 2: emptied"
    );

    let w = why(&out, &[RAS, SPS_ID]);
    assert!(
        w.contains("X (Basic Profile); Type 1C in the ct-image IOD at this path: D, dummy value"),
        "{w}"
    );
    let w = why(&out, &[OPERATORS]);
    assert!(
        w.contains("Type 3 in the ct-image IOD at this path: X, removed"),
        "{w}"
    );
    let d = out
        .decisions
        .iter()
        .find(|d| d.path.0.iter().map(|s| s.0).eq([RAS, ACCESSION]))
        .unwrap();
    assert_eq!(d.action, Act::Remove);

    // Basic: the request sequence is X and Type 3 in this IOD: removed
    let out = run(ct, &[]);
    assert!(out.dataset.get(RAS).is_none());
    assert!(why(&out, &[RAS]).contains("Type 3 in the ct-image IOD"));
}

#[test]
fn unknown_sop_class_keeps_the_table_fallback() {
    let out = run(
        "1.2.826.0.1.3680043.99.1",
        &[ProfileOption::CleanDescriptors],
    );
    let item = request_item(&out.dataset);
    // X on an "in Std. Comp. IOD" row: emptied; "N" row: removed
    assert_eq!(value(item, SPS_ID), Some(Vec::new()));
    assert_eq!(value(item, RP_ID), None);
    // X/Z/D without a Type: D
    assert_eq!(value(&out.dataset, OPERATORS), Some(b"ANONYMOUS".to_vec()));
    assert!(why(&out, &[RAS, SPS_ID]).contains("Type unknown here"));
}
