//! `veil recipe import` (issue 17, "Migration"): the three CTP fixtures and
//! the deid default recipe import (a partial import fails unless
//! --allow-partial, and writes nothing), and the imported TCIA profile run
//! over the corpus keeps what TCIA keeps and removes what it removes. What
//! TCIA keeps or removes is read from the script's own lines here, with a
//! few lines of string matching, not with the importer.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use veil_core::Tag;
use veil_io::Value;

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn fixture(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if name.ends_with(".dicom") {
        root.join("rules/sources").join(name)
    } else {
        root.join("crates/veil-rules/tests/fixtures/import")
            .join(name)
    }
}

fn import(file: &str, from: &str, out: &Path, partial: bool) -> (i32, String) {
    let mut c = Command::new(VEIL);
    c.args(["recipe", "import"])
        .arg(fixture(file))
        .args(["--from", from, "-o"])
        .arg(out);
    if partial {
        c.arg("--allow-partial");
    }
    veil_test::output(&mut c)
}

#[test]
fn imports_the_fixtures_and_fails_when_partial() {
    let tmp = veil_test::scratch("recipe-import");
    // a real file to explain with each recipe, where the corpus is fetched
    let sample = veil_test::corpus().map(|c| {
        c.join("deb-octave-dicom-0.5.1-1")
            .join("usr__share__octave__packages__dicom-0.5.1__imdata__CT-MONO2-16-ankle.dcm")
    });
    for (file, from, complete) in [
        ("TCIA-Basic", "ctp", false),
        ("DICOM-PS3.15-Basic", "ctp", true),
        ("example-ctp-dicom-anonymizer.script", "ctp", true),
        ("pydicom_deid_deid.dicom", "deid", false),
    ] {
        let out = tmp.join(format!("{file}.toml"));
        let (code, text) = import(file, from, &out, false);
        assert!(text.contains("safety net"), "{file}: {text}");
        if complete {
            assert_eq!(code, 0, "{file}: {text}");
            assert!(out.is_file(), "{file}");
        } else {
            // not everything expressible: exit 1, the list, nothing written
            assert_eq!(code, 1, "{file}: {text}");
            assert!(text.contains("Not expressed"), "{file}: {text}");
            assert!(!out.exists(), "{file}: a partial recipe was written");
            let (code, text) = import(file, from, &out, true);
            assert_eq!(code, 0, "{file}: {text}");
        }
        let r = std::fs::read_to_string(&out).unwrap();
        assert!(r.contains("[[attribute]]"), "{file}");
        // the recipe loads in `veil explain` as `veil deid` loads it, and
        // its overrides decide
        if let Some(dcm) = &sample {
            let (code, text) = veil_test::output(
                Command::new(VEIL)
                    .arg("explain")
                    .arg(dcm)
                    .arg("--recipe")
                    .arg(&out),
            );
            assert_eq!(code, 0, "{file}: {text}");
            assert!(text.contains("override"), "{file}: {text}");
        }
    }
    // a wrong format is exit 2 with a message naming the file typed
    let (code, text) = veil_test::output(
        Command::new(VEIL)
            .args(["recipe", "import"])
            .arg(fixture("pydicom_deid_deid.dicom"))
            .args(["--from", "ctp"]),
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a CTP anonymizer script"), "{text}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The enabled `<e>` rules of a CTP script whose whole function is one of
/// `@keep()`, `@remove()`, `@empty()`: tag -> function.
fn script_rules(script: &str) -> BTreeMap<Tag, String> {
    let mut out = BTreeMap::new();
    for line in script.lines() {
        let Some(rest) = line.trim().strip_prefix("<e en=\"T\" t=\"") else {
            continue;
        };
        let tag = Tag::parse(&rest[..8]).unwrap();
        let body = rest.split_once('>').unwrap().1;
        let body = body.strip_suffix("</e>").unwrap().trim();
        if matches!(body, "@keep()" | "@remove()" | "@empty()") && !tag.is_private() {
            out.insert(tag, body.to_string());
        }
    }
    out
}

/// `veil explain`'s reason for a top-level attribute of an input.
fn explain_why(input: &str, recipe: &Path, tag: Tag) -> String {
    let o = Command::new(VEIL)
        .args(["explain", input, "--json", "--recipe"])
        .arg(recipe)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = tag.to_string();
    v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == path.as_str())
        .map(|d| d["why"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn imported_tcia_profile_keeps_and_removes_what_tcia_does() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let tmp = veil_test::scratch("recipe-import-tcia");
    let recipe = tmp.join("tcia.toml");
    let (code, text) = import("TCIA-Basic", "ctp", &recipe, true);
    assert_eq!(code, 0, "{text}");
    let rules = script_rules(&std::fs::read_to_string(fixture("TCIA-Basic")).unwrap());
    assert!(rules.len() > 150, "{}", rules.len());
    for (t, f) in [
        (Tag(0x0008, 0x1030), "@keep()"),   // StudyDescription
        (Tag(0x0010, 0x0040), "@keep()"),   // PatientSex
        (Tag(0x0010, 0x1010), "@keep()"),   // PatientAge
        (Tag(0x0008, 0x0080), "@remove()"), // InstitutionName
        (Tag(0x0010, 0x0030), "@empty()"),  // PatientBirthDate
    ] {
        assert_eq!(rules.get(&t).map(String::as_str), Some(f), "{t}");
    }

    let key = veil_test::new_key(VEIL, &tmp);
    let key_v = veil_deid::Key::load(&key).unwrap();
    let out = tmp.join("out");
    let report = tmp.join("report.json");
    let st = Command::new(VEIL)
        .arg("deid")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--recipe")
        .arg(&recipe)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    // the corpus holds deliberately broken files: exit 1 = some quarantined
    assert_eq!(
        st.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let (mut kept, mut netted, mut removed, mut emptied, mut objects, mut overlays) =
        (0, 0, 0, 0, 0, 0);
    let mut seen: BTreeMap<Tag, usize> = BTreeMap::new();
    for f in rep["files"].as_array().unwrap() {
        let root = match f["status"].as_str().unwrap() {
            "written" => out.clone(),
            "review" => tmp.join("out.review"),
            _ => continue,
        };
        objects += 1;
        let input = veil_io::read(Path::new(f["input"].as_str().unwrap())).unwrap();
        let output = veil_io::read(&root.join(f["output"].as_str().unwrap())).unwrap();
        for (tag, function) in &rules {
            let Some(src) = input.dataset.get(*tag) else {
                continue;
            };
            let dst = output.dataset.get(*tag);
            let where_ = format!("{tag} {function} in {}", f["input"]);
            match function.as_str() {
                "@keep()" => {
                    let dst = dst.unwrap_or_else(|| panic!("{where_}: removed"));
                    let same = match (&src.value, &dst.value) {
                        (Value::Bytes(a), Value::Bytes(b)) => a == b,
                        (Value::Sequence(a), Value::Sequence(b)) => a.len() == b.len(),
                        _ => false,
                    };
                    if same {
                        kept += 1;
                        *seen.entry(*tag).or_default() += 1;
                    } else {
                        // Veil's safety net still runs on kept values: the
                        // object's own identifying values are cleaned from
                        // them. Any other change is a failure.
                        let why = explain_why(f["input"].as_str().unwrap(), &recipe, *tag);
                        assert!(why.contains("safety net"), "{where_}: changed ({why})");
                        netted += 1;
                    }
                }
                "@remove()" => {
                    assert!(dst.is_none(), "{where_}: still there");
                    removed += 1;
                }
                _ => {
                    let dst = dst.unwrap_or_else(|| panic!("{where_}: removed"));
                    let empty = match &dst.value {
                        Value::Bytes(b) => b.iter().all(|c| *c == b' ' || *c == 0),
                        Value::Sequence(items) => items.is_empty(),
                        _ => false,
                    };
                    assert!(empty, "{where_}: not emptied");
                    emptied += 1;
                }
            }
        }
        // <r t="curves"> and <r t="overlays"> on: none left
        for e in &output.dataset.elements {
            let g = e.tag.0 & 0xFF01;
            assert!(
                !(g == 0x6000 || g == 0x5000) || e.tag.0 > 0x60FF,
                "{} still has {}",
                f["input"],
                e.tag
            );
        }
        let overlay_in = input
            .dataset
            .elements
            .iter()
            .any(|e| e.tag.0 & 0xFF01 == 0x6000 && e.tag.0 <= 0x60FF);
        overlays += usize::from(overlay_in);
        // @hashuid: Veil's keyed UIDs; @incrementdate: the date moved
        if let Some(src) = input
            .dataset
            .ascii(Tag(0x0008, 0x0018))
            .filter(|u| !u.is_empty())
        {
            let sop = output.dataset.ascii(Tag(0x0008, 0x0018)).unwrap();
            assert_eq!(sop, veil_deid::pseudonym::uid_list(&key_v, &src));
        }
        if let (Some(a), Some(b)) = (
            input
                .dataset
                .ascii(Tag(0x0008, 0x0020))
                .filter(|d| d.len() == 8),
            output.dataset.ascii(Tag(0x0008, 0x0020)),
        ) {
            assert_ne!(a, b, "StudyDate not shifted");
            assert_eq!(b.len(), 8);
        }
    }
    eprintln!(
        "TCIA profile over {objects} objects: {kept} kept, {netted} kept but cleaned by the \
         safety net, {removed} removed, {emptied} emptied (attributes present in the input)"
    );
    assert!(objects > 200);
    for t in [
        Tag(0x0008, 0x1030),
        Tag(0x0010, 0x0040),
        Tag(0x0010, 0x1010),
    ] {
        assert!(
            seen.get(&t).copied().unwrap_or(0) > 10,
            "{t} kept too rarely"
        );
    }
    assert!(removed > 0 && emptied > 0);
    assert!(overlays > 0, "no input with an overlay plane");
    assert!(netted * 20 < kept, "{netted} of {kept} changed");
    let _ = std::fs::remove_dir_all(&tmp);
}
