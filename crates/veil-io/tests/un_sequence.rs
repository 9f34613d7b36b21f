//! CP-246: a sequence stored as UN with undefined length in an explicit VR
//! file holds implicit VR little endian items (dicom-rs issue 169). Veil
//! parses it as a sequence, so its items are de-identified like any other,
//! and writes it back as SQ.

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Value};

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}
fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Explicit VR LE element with a 2-byte length.
fn short(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
    out.extend(le16(g));
    out.extend(le16(e));
    out.extend(vr);
    out.extend(le16(v.len() as u16));
    out.extend(v);
}

#[test]
fn private_un_of_undefined_length_is_a_sequence() {
    let mut b = vec![0u8; 128];
    b.extend(b"DICM");
    // File Meta: transfer syntax only (explicit VR little endian)
    short(&mut b, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
    short(
        &mut b,
        0x0008,
        0x0016,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.7\0",
    );
    short(&mut b, 0x0008, 0x0018, b"UI", b"1.2.3.4.5\0");
    short(&mut b, 0x0009, 0x0010, b"LO", b"ACME 1.0");
    // (0009,1001) UN, undefined length
    b.extend(le16(0x0009));
    b.extend(le16(0x1001));
    b.extend(b"UN\0\0");
    b.extend(le32(0xFFFF_FFFF));
    // item, undefined length, holding implicit VR LE (0010,0010) PN
    b.extend(le16(0xFFFE));
    b.extend(le16(0xE000));
    b.extend(le32(0xFFFF_FFFF));
    let name = b"DOE^JOHN";
    b.extend(le16(0x0010));
    b.extend(le16(0x0010));
    b.extend(le32(name.len() as u32));
    b.extend(name);
    b.extend(le16(0xFFFE));
    b.extend(le16(0xE00D));
    b.extend(le32(0));
    b.extend(le16(0xFFFE));
    b.extend(le16(0xE0DD));
    b.extend(le32(0));
    short(&mut b, 0x0010, 0x0020, b"LO", b"ID42");

    let f = veil_io::read_bytes(b).expect("parses");
    let e = f.dataset.get(Tag(0x0009, 0x1001)).expect("the UN element");
    assert_eq!(e.vr, VR::SQ);
    let Value::Sequence(items) = &e.value else {
        panic!("not a sequence")
    };
    assert_eq!(items.len(), 1);
    let pn = items[0]
        .get(Tag(0x0010, 0x0010))
        .expect("item content parsed");
    assert_eq!(pn.vr, VR::PN, "VR from the dictionary (implicit VR)");
    assert_eq!(
        items[0].ascii(Tag(0x0010, 0x0010)).as_deref(),
        Some("DOE^JOHN")
    );
    // parsing went on after the sequence
    assert_eq!(
        f.dataset.ascii(Tag(0x0010, 0x0020)).as_deref(),
        Some("ID42")
    );

    // written back as SQ in explicit VR, and read again the same
    let tmp = veil_test::scratch("un-seq");
    let out = tmp.join("o.dcm");
    veil_io::write_explicit_le(&out, &f.dataset).unwrap();
    let again = veil_io::read(&out).unwrap();
    let e2: &DataSet = match &again.dataset.get(Tag(0x0009, 0x1001)).unwrap().value {
        Value::Sequence(items) => &items[0],
        _ => panic!("not a sequence after writing"),
    };
    assert_eq!(e2.ascii(Tag(0x0010, 0x0010)).as_deref(), Some("DOE^JOHN"));
    dicom_object::open_file(&out).expect("dicom-rs reads what Veil wrote");
}
