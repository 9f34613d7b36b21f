//! `veil explain` lists every attribute of a file at every depth with the
//! action and the rule, never a value, and agrees with what `veil deid`
//! does to the same file.

use std::process::Command;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{DataSet, Element};

fn text(g: u16, e: u16, vr: VR, s: &str) -> Element {
    Element::text(Tag(g, e), vr, s)
}

#[test]
fn explain_shows_decisions_without_values() {
    let tmp = veil_test::scratch("explain");
    let item = DataSet::of([
        text(0x0008, 0x1155, VR::UI, "1.2.826.0.1.3680043.2.4455.9"),
        text(0x0008, 0x1150, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
    ]);
    let ds = DataSet::of([
        text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        text(0x0008, 0x0018, VR::UI, "1.2.826.0.1.3680043.2.4455.1"),
        text(0x0008, 0x0060, VR::CS, "CT"),
        text(0x0008, 0x1030, VR::LO, "HEAD KNOWLESWORTH"),
        text(0x0010, 0x0010, VR::PN, "KNOWLESWORTH^EUSTACE"),
        text(0x0010, 0x0020, VR::LO, "MRN4455667"),
        text(0x0028, 0x0010, VR::US, "\u{2}\u{0}"),
        Element::sequence(Tag(0x0008, 0x1140), vec![item]),
    ]);
    let file = tmp.join("in.dcm");
    veil_io::write_explicit_le(&file, &ds).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .arg("explain")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["KNOWLESWORTH", "EUSTACE", "4455667", "4455"] {
        assert!(!text.contains(secret), "explain printed a value: {secret}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let decisions = v["decisions"].as_array().unwrap();
    let find = |path: &str| {
        decisions
            .iter()
            .find(|d| d["path"] == path)
            .unwrap_or_else(|| panic!("{path} not explained"))
    };
    assert_eq!(
        find("(0010,0010)")["action"],
        serde_json::json!({"pseudonym": "patient-name"})
    );
    // X on an attribute that the CT Image IOD makes Type 3: removed, and
    // explain says why (docs/iod.md)
    assert_eq!(find("(0008,1030)")["action"], "remove");
    assert!(find("(0008,1030)")["why"]
        .as_str()
        .unwrap()
        .contains("Type 3 in the ct-image IOD at this path: X, removed"));
    assert_eq!(find("(0028,0010)")["action"], "keep");
    assert_eq!(find("(0008,1140)[0]/(0008,1155)")["action"], "uid");
    assert_eq!(find("(0008,1140)[0]/(0008,1150)")["action"], "keep");
    assert!(find("(0008,1030)")["why"]
        .as_str()
        .unwrap()
        .contains("E.1-1 (0008,1030)"));
    // every attribute at every depth is explained: 8 top-level, 2 nested
    assert_eq!(decisions.len(), 10);
}
