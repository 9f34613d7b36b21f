//! `veil deid --dicomdir` writes a new DICOMDIR for OUT: it parses, every
//! record offset points at an item, every leaf record names an output file
//! by a PS3.10 File ID and that file's SOP Instance UID, and dciodvfy finds
//! no error in it. Input DICOMDIRs are never copied.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::process::Command;

use veil_core::Tag;
use veil_io::{DataSet, Value};

fn u32_of(ds: &DataSet, tag: Tag) -> u32 {
    let b = ds.bytes(tag).unwrap();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn dicomdir_for_the_output() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("dicomdir");
    let veil = env!("CARGO_BIN_EXE_veil");
    let key = veil_test::new_key(veil, &tmp);
    let out = tmp.join("out");
    let st = Command::new(veil)
        .arg("deid")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--dicomdir")
        .status()
        .unwrap();
    assert!(st.code() == Some(0) || st.code() == Some(1));
    let dicomdir = out.join("DICOMDIR");
    dicom_object::open_file(&dicomdir).expect("dicom-rs reads the DICOMDIR");
    let raw = std::fs::read(&dicomdir).unwrap();
    let dir = veil_io::read(&dicomdir).unwrap();
    assert!(dir.is_dicomdir());
    let is_item = |off: u32| {
        let o = off as usize;
        raw.get(o..o + 4) == Some(&[0xFE, 0xFF, 0x00, 0xE0][..])
    };
    let first = u32_of(&dir.dataset, Tag(0x0004, 0x1200));
    assert!(is_item(first), "root offset does not point at an item");
    let Value::Sequence(records) = &dir.dataset.get(Tag(0x0004, 0x1220)).unwrap().value else {
        panic!("no record sequence");
    };
    let mut leaves = 0;
    for r in records {
        for t in [Tag(0x0004, 0x1400), Tag(0x0004, 0x1420)] {
            let off = u32_of(r, t);
            assert!(off == 0 || is_item(off), "offset {off} is not an item");
        }
        if let Some(id) = r.ascii(Tag(0x0004, 0x1500)) {
            leaves += 1;
            let parts: Vec<&str> = id.split('\\').collect();
            assert!(parts.len() <= 8);
            for p in &parts {
                assert!(
                    p.len() <= 8
                        && p.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                    "bad File ID component {p}"
                );
            }
            let f = veil_io::read(&out.join(parts.join("/"))).expect("referenced file exists");
            assert_eq!(
                f.dataset.ascii(Tag(0x0008, 0x0018)),
                r.ascii(Tag(0x0004, 0x1511))
            );
        }
    }
    let all = veil_test::files(&out);
    assert_eq!(leaves, all.len() - 1, "one leaf record per output file");
    assert!(leaves > 100);
    if Command::new("dciodvfy").arg("-h").output().is_ok() {
        let o = Command::new("dciodvfy").arg(&dicomdir).output().unwrap();
        let text =
            String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
        eprintln!("dciodvfy on DICOMDIR: {} errors", errors.len());
        assert!(errors.is_empty(), "{errors:#?}");
    } else {
        assert!(
            std::env::var("VEIL_REQUIRE_CORPUS").is_err(),
            "dciodvfy required"
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
