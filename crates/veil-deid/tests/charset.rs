//! Text is cleaned in the data set's declared character set, and what is
//! written back is encoded in it: a Latin-1 object stays Latin-1.

use dicom_core::VR;
use veil_core::{ProfileOption, Tag};
use veil_deid::{Deidentifier, Key, Policy};
use veil_io::{DataSet, DicomFile, Element};
use veil_rules::Recipe;

fn object(charset: &str, name: &[u8], description: &[u8]) -> DicomFile {
    let ds = DataSet::of([
        Element::text(Tag(0x0008, 0x0005), VR::CS, charset),
        Element::text(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        Element::text(Tag(0x0008, 0x0018), VR::UI, "1.2.3.4"),
        Element::bytes(Tag(0x0008, 0x1030), VR::LO, description.to_vec()),
        Element::bytes(Tag(0x0010, 0x0010), VR::PN, name.to_vec()),
    ]);
    DicomFile::in_memory(ds)
}

fn run(f: &DicomFile) -> Vec<u8> {
    let policy = Policy::new(
        Recipe::default(),
        &[ProfileOption::CleanDescriptors],
        Key::from_bytes([4; 32]),
    )
    .unwrap();
    let out = Deidentifier::new(&policy).run(f).unwrap();
    out.dataset.bytes(Tag(0x0008, 0x1030)).unwrap().to_vec()
}

#[test]
fn latin1_text_is_cleaned_and_stays_latin1() {
    // "Müller^Jürgen" and "Kopf für Müller, Zürich" in ISO 8859-1
    let name = b"M\xfcller^J\xfcrgen";
    let desc = b"Kopf f\xfcr M\xfcller Z\xfcrich";
    let cleaned = run(&object("ISO_IR 100", name, desc));
    assert_eq!(
        cleaned,
        b"Kopf f\xfcr *** Z\xfcrich".to_vec(),
        "{:?}",
        String::from_utf8_lossy(&cleaned)
    );
}

#[test]
fn utf8_text_is_cleaned_and_stays_utf8() {
    let cleaned = run(&object(
        "ISO_IR 192",
        "Müller^Jürgen".as_bytes(),
        "Kopf für Müller".as_bytes(),
    ));
    assert_eq!(String::from_utf8(cleaned).unwrap(), "Kopf für ***");
}

#[test]
fn undecodable_character_sets_remove_rather_than_guess() {
    // ISO 2022 code extensions (multi-valued) cannot be decoded here
    let cleaned_or_gone = {
        let policy = Policy::new(
            Recipe::default(),
            &[ProfileOption::CleanDescriptors],
            Key::from_bytes([4; 32]),
        )
        .unwrap();
        let f = object("\\ISO 2022 IR 87", b"YAMADA^TARO", b"\x1b$B;3ED\x1b(B HEAD");
        let out = Deidentifier::new(&policy).run(&f).unwrap();
        out.dataset.get(Tag(0x0008, 0x1030)).cloned()
    };
    assert!(
        cleaned_or_gone.is_none(),
        "text in an undecodable set is removed"
    );
}
