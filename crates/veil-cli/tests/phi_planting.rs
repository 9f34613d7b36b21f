//! Plants names, IDs, dates and addresses at the top level, in free text,
//! three sequences deep, in private attributes (text VRs, UN and OB bytes,
//! UTF-16) and inside UIDs, runs `veil deid` under several option sets, and
//! checks that none survives in any value, any raw byte or any output path.

use std::process::Command;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element};

const SECRETS: &[&str] = &[
    "ZYXWVU",
    "QWERTYUIOP",
    "99887766",
    "19610315",
    "1961-03-15",
    "EVERGREEN",
    "MERCYGENERAL",
    "55443322",
    "PLANTEDSTATION",
];

fn text(tag: (u16, u16), vr: VR, s: &str) -> Element {
    Element::text(Tag(tag.0, tag.1), vr, s)
}

fn seq(tag: (u16, u16), items: Vec<DataSet>) -> Element {
    Element::sequence(Tag(tag.0, tag.1), items)
}

fn ds(elements: Vec<Element>) -> DataSet {
    DataSet::of(elements)
}

fn planted_object(sop: &str) -> DataSet {
    let utf16: Vec<u8> = "ZYXWVU QWERTYUIOP"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    // level 3: a note and a name, inside three sequences outside E.1-1
    let deep = ds(vec![
        text((0x0010, 0x0010), VR::PN, "ZYXWVU^QWERTYUIOP"),
        text(
            (0x0020, 0x4000),
            VR::LT,
            "patient QWERTYUIOP ZYXWVU MRN99887766 lives at 742 EVERGREEN TERRACE",
        ),
        text((0x0008, 0x1155), VR::UI, "1.2.826.0.1.3680043.2.99887766.7"),
    ]);
    let l2 = ds(vec![seq((0x0054, 0x0016), vec![deep])]);
    let l1 = ds(vec![seq((0x0054, 0x0016), vec![l2])]);
    ds(vec![
        text((0x0008, 0x0005), VR::CS, "ISO_IR 100"),
        text((0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        text((0x0008, 0x0018), VR::UI, sop),
        text((0x0008, 0x0020), VR::DA, "19610315"),
        text((0x0008, 0x0050), VR::SH, "ACC55443322"),
        text((0x0008, 0x0060), VR::CS, "CT"),
        text((0x0008, 0x0080), VR::LO, "MERCYGENERAL HOSPITAL"),
        text((0x0008, 0x0090), VR::PN, "ZYXWVU^DOCTOR"),
        text((0x0008, 0x1010), VR::SH, "PLANTEDSTATION"),
        text(
            (0x0008, 0x1030),
            VR::LO,
            "CT HEAD QWERTYUIOP ZYXWVU MRN99887766 1961-03-15",
        ),
        text((0x0009, 0x0010), VR::LO, "ACME PLANT 1.0"),
        text((0x0009, 0x1001), VR::LO, "ZYXWVU^QWERTYUIOP"),
        Element::bytes(
            Tag(0x0009, 0x1002),
            VR::UN,
            b"MRN99887766 EVERGREEN".to_vec(),
        ),
        Element::bytes(Tag(0x0009, 0x1003), VR::OB, utf16),
        text((0x0010, 0x0010), VR::PN, "ZYXWVU^QWERTYUIOP"),
        text((0x0010, 0x0020), VR::LO, "MRN99887766"),
        text((0x0010, 0x0030), VR::DA, "19610315"),
        text((0x0010, 0x1040), VR::LO, "742 EVERGREEN TERRACE"),
        text((0x0010, 0x4000), VR::LT, "QWERTYUIOP ZYXWVU MRN99887766"),
        text((0x0020, 0x000D), VR::UI, "1.2.826.0.1.3680043.2.99887766.1"),
        text((0x0020, 0x000E), VR::UI, "1.2.826.0.1.3680043.2.99887766.2"),
        text((0x0020, 0x0010), VR::SH, "55443322"),
        seq((0x0054, 0x0016), vec![l1]),
        Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, vec![0u8; 64]),
    ])
}

fn contains_ci(hay: &[u8], needle: &str) -> bool {
    let n = needle.to_ascii_uppercase().into_bytes();
    let n16: Vec<u8> = needle
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let up: Vec<u8> = hay.iter().map(|b| b.to_ascii_uppercase()).collect();
    up.windows(n.len()).any(|w| w == n.as_slice())
        || hay.windows(n16.len()).any(|w| w == n16.as_slice())
}

#[test]
fn planted_phi_never_survives() {
    let tmp = veil_test::scratch("phi");
    let input = tmp.join("in").join("ZYXWVU_MRN99887766");
    for (i, sop) in [
        "1.2.826.0.1.3680043.2.99887766.3",
        "1.2.826.0.1.3680043.2.99887766.4",
    ]
    .iter()
    .enumerate()
    {
        let path = input.join(format!("QWERTYUIOP_{i}.dcm"));
        veil_io::write_explicit_le(&path, &planted_object(sop)).unwrap();
    }
    // a broken copy whose name is PHI: quarantined, and named nowhere but
    // in the site-local report
    let whole = std::fs::read(input.join("QWERTYUIOP_0.dcm")).unwrap();
    veil_io::atomic::write_all(
        &input.join("ZYXWVU_99887766_broken.dcm"),
        &whole[..whole.len() / 3],
    )
    .unwrap();
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &tmp);
    let option_sets: &[&[&str]] = &[
        &[],
        &["clean-descriptors"],
        &[
            "retain-safe-private",
            "clean-descriptors",
            "clean-structured-content",
        ],
        &[
            "retain-long-modified-dates",
            "retain-patient-characteristics",
        ],
    ];
    for (n, opts) in option_sets.iter().enumerate() {
        let out = tmp.join(format!("out{n}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_veil"));
        cmd.arg("deid")
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .arg("--key")
            .arg(&key);
        for o in *opts {
            cmd.args(["--option", o]);
        }
        let res = cmd.output().unwrap();
        assert_eq!(
            res.status.code(),
            Some(1),
            "one input quarantined: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let stdout = String::from_utf8_lossy(&res.stdout).to_string()
            + &String::from_utf8_lossy(&res.stderr);
        for s in SECRETS {
            assert!(
                !contains_ci(stdout.as_bytes(), s),
                "{opts:?}: '{s}' printed"
            );
        }
        let files = veil_test::files(&out);
        assert_eq!(files.len(), 2, "{opts:?}: both objects written");
        for f in &files {
            let rel = f.strip_prefix(&out).unwrap().to_string_lossy().to_string();
            let bytes = std::fs::read(f).unwrap();
            for s in SECRETS {
                assert!(
                    !contains_ci(rel.as_bytes(), s),
                    "{opts:?}: '{s}' in an output path"
                );
                assert!(
                    !contains_ci(&bytes, s),
                    "{opts:?}: '{s}' in the bytes of {rel}"
                );
                assert!(
                    !contains_ci(stdout.as_bytes(), s),
                    "{opts:?}: '{s}' printed"
                );
            }
            // the de-identified object still parses and is marked
            let obj = veil_io::read(f).unwrap();
            assert_eq!(
                obj.dataset.ascii(Tag(0x0012, 0x0062)).as_deref(),
                Some("YES")
            );
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
