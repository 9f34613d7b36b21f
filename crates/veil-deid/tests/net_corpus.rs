//! The safety net on the clean corpus: what it changes, by attribute and
//! category (never a value), under the Basic Profile and the research
//! profile; no technical attribute may change.
#![allow(clippy::print_stderr)] // the test reports what it measured

use std::collections::BTreeMap;

use veil_deid::{Deidentifier, Key, Policy};
use veil_rules::Recipe;

fn net_changes(options: &[&str]) -> (usize, BTreeMap<(String, String, String), usize>) {
    let Some(root) = veil_test::corpus() else {
        return (0, BTreeMap::new());
    };
    let opts: Vec<_> = options.iter().map(|o| o.parse().unwrap()).collect();
    let policy = Policy::new(Recipe::default(), &opts, Key::from_bytes([7; 32])).unwrap();
    let d = Deidentifier::new(&policy);
    let mut seen = 0;
    let mut hits = BTreeMap::new();
    for p in veil_test::files(&root) {
        let Ok(f) = veil_io::read(&p) else { continue };
        let Ok(out) = d.explain(&f) else { continue };
        seen += 1;
        for x in out.decisions {
            if let Some(i) = x.why.find("by the safety net") {
                let cat = x.why[i..].to_string();
                if std::env::var("NET_DEBUG").is_ok() {
                    eprintln!("HIT {} {} {} {}", p.display(), x.path, x.keyword, cat);
                }
                *hits
                    .entry((x.keyword.clone(), x.vr.clone(), cat))
                    .or_insert(0) += 1;
            }
        }
    }
    (seen, hits)
}

/// What the net may change on the clean corpus, each with the reason: every
/// one is a value that holds one of the object's own identifying values,
/// because the corpus's test data names its patients and institutions
/// after body parts, vendors and series ("Abdomen^FatSatDyn",
/// "Perfusion^MCA Stroke", "GDCM^Patient"), and a DICOMDIR's file IDs hold
/// its patients' IDs. (Institutions named after the vendor, `TOSHIBA`
/// beside `TOSHIBA_MEC`, are not harvested: engine.rs `harvest`.) A new entry
/// means the net changed something else: look at it before adding it.
const EXPECTED: &[(&str, &str)] = &[
    ("CodeMeaning", "name"),    // "Abdomen" = the patient's family name
    ("FrameType", "name"),      // "PERFUSION" = the patient's family name
    ("ImageType", "name"),      // "PERFUSION" = the patient's family name
    ("Manufacturer", "name"),   // "GDCM Factory" = the patient's family name
    ("ReferencedFileID", "id"), // DICOMDIR folders named by Patient ID
];

/// VRs that hold measurements, geometry, times and UIDs: the net may
/// change none of them on clean data.
const TECHNICAL_VRS: &[&str] = &["IS", "DS", "UI", "TM", "DA", "DT", "AS"];

#[test]
fn the_net_changes_no_technical_attribute_of_the_clean_corpus() {
    for (name, options) in [
        ("basic", vec![]),
        (
            "research",
            vec!["retain-long-modified-dates", "clean-descriptors"],
        ),
    ] {
        let (seen, hits) = net_changes(&options);
        let total: usize = hits.values().sum();
        eprintln!("{name}: {seen} objects, {total} values changed by the net");
        for ((k, vr, cat), n) in &hits {
            eprintln!("  {n:>5}  {k:<40} {vr}  {cat}");
            assert!(
                !TECHNICAL_VRS.contains(&vr.as_str()),
                "{name}: {k} {vr} {cat}"
            );
            let cat = cat.rsplit(": ").next().unwrap_or("");
            assert!(
                EXPECTED.contains(&(k.as_str(), cat)),
                "{name}: the net changed {k} ({vr}, {cat}) on the clean corpus"
            );
        }
    }
}
