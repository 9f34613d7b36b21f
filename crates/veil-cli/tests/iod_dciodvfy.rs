//! Issue 16, "IOD-aware removal": over every readable corpus object, under
//! the Basic Profile and the research profile (`retain-long-modified-dates`
//! and `clean-descriptors`), dciodvfy reports no error on an output that it
//! did not report on the input (messages compared with values and positions
//! masked, `veil_verify::set::dciodvfy_errors`). The corpus holds objects
//! whose Request Attributes Sequence carries the Type 1C Scheduled
//! Procedure Step ID and Requested Procedure ID, which the research
//! profile keeps (C) and which E.1-1 says to remove (X): the case where
//! emptying made dciodvfy report "Empty attribute (no value) Type 1C". The
//! test requires such objects to be present and their Type 1C attributes to
//! come out with a value.
//!
//! Needs VEIL_CORPUS and dciodvfy; with VEIL_REQUIRE_CORPUS=1 a missing
//! corpus or dciodvfy fails instead of skipping.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use veil_core::Tag;
use veil_io::{DataSet, Value};

const RAS: Tag = Tag(0x0040, 0x0275);
/// Type 1C inside the Request Attributes Sequence of image IODs.
const RAS_1C: [Tag; 2] = [Tag(0x0040, 0x0009), Tag(0x0040, 0x1001)];

fn errors(p: &Path) -> BTreeSet<String> {
    veil_verify::set::dciodvfy_errors(p)
        .expect("run dciodvfy")
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The values of the Type 1C request attributes in every item of the
/// Request Attributes Sequence (`None` where an item lacks one).
fn request_1c(ds: &DataSet) -> Vec<Option<Vec<u8>>> {
    let Some(Value::Sequence(items)) = ds.get(RAS).map(|e| &e.value) else {
        return Vec::new();
    };
    items
        .iter()
        .flat_map(|i| {
            RAS_1C
                .iter()
                .map(move |t| match i.get(*t).map(|e| &e.value) {
                    Some(Value::Bytes(b)) => Some(b.clone()),
                    _ => None,
                })
        })
        .collect()
}

#[test]
fn no_new_dciodvfy_errors_under_basic_and_research() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let require = std::env::var("VEIL_REQUIRE_CORPUS").is_ok();
    let have_vfy = Command::new("dciodvfy").arg("-h").output().is_ok();
    assert!(have_vfy || !require, "dciodvfy (dicom3tools) is required");
    if !have_vfy {
        eprintln!("dciodvfy missing; skipping");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_veil");
    let tmp = veil_test::scratch("iod-dciodvfy");
    let key = veil_test::new_key(bin, &tmp);
    let profiles: [(&str, &[&str]); 2] = [
        ("basic", &[]),
        (
            "research",
            &["retain-long-modified-dates", "clean-descriptors"],
        ),
    ];
    // dciodvfy on each input once, shared by both profiles
    let mut before_of: HashMap<PathBuf, Option<BTreeSet<String>>> = HashMap::new();
    let mut failures = Vec::new();
    for (name, options) in profiles {
        let started = std::time::Instant::now();
        let out = tmp.join(name);
        let report = tmp.join(format!("{name}.json"));
        let mut cmd = veil_test::veil_command(bin, &tmp.join("home"), None);
        cmd.arg("deid")
            .arg(&corpus)
            .arg("--out")
            .arg(&out)
            .arg("--key")
            .arg(&key)
            .arg("--report")
            .arg(&report);
        for o in options {
            cmd.args(["--option", o]);
        }
        // the corpus holds deliberately broken files: exit 1 = some quarantined
        let (code, text) = veil_test::output(&mut cmd);
        assert!(code == 0 || code == 1, "veil deid ({name}): {text}");
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let (mut objects, mut skipped, mut errors_in, mut errors_out) = (0, 0, 0, 0);
        let (mut with_1c, mut new_total) = (0, 0);
        for f in rep["files"].as_array().unwrap() {
            let root = match f["status"].as_str().unwrap() {
                "written" => out.clone(),
                "review" => PathBuf::from(format!("{}.review", out.display())),
                _ => continue,
            };
            let input = PathBuf::from(f["input"].as_str().unwrap());
            let output = root.join(f["output"].as_str().unwrap());
            let src = veil_io::read(&input).unwrap();
            let dst = veil_io::read(&output).expect("Veil re-reads its output");
            // Type 1C request attributes that had a value keep one (a
            // dummy) wherever the sequence is kept
            let (a, b) = (request_1c(&src.dataset), request_1c(&dst.dataset));
            if a.iter().flatten().any(|v| !v.is_empty()) {
                with_1c += 1;
                if !b.is_empty() {
                    for (x, y) in a.iter().zip(&b) {
                        if x.as_ref().is_some_and(|v| !v.is_empty())
                            && y.as_ref().is_none_or(|v| v.is_empty())
                        {
                            failures.push(format!(
                                "{name}: {}: a Type 1C request attribute lost its value",
                                input.display()
                            ));
                        }
                    }
                }
            }
            // dicom3tools cannot read deflated data sets
            if src.ts.deflated {
                skipped += 1;
                continue;
            }
            let before = before_of
                .entry(input.clone())
                .or_insert_with(|| {
                    let e = errors(&input);
                    // An input without SOP Class UID in its data set is not
                    // checked against any IOD by dciodvfy (no baseline)
                    (!e.iter().any(|l| l.contains("missing SOPClassUID"))).then_some(e)
                })
                .clone();
            let Some(before) = before else {
                skipped += 1;
                continue;
            };
            let after = errors(&output);
            objects += 1;
            errors_in += before.len();
            errors_out += after.len();
            let new: Vec<_> = after.difference(&before).cloned().collect();
            new_total += new.len();
            if !new.is_empty() {
                failures.push(format!("{name}: {}: {new:#?}", input.display()));
            }
        }
        eprintln!(
            "{name}: {objects} objects compared ({skipped} skipped: deflated or no SOP Class UID), \
             dciodvfy errors {errors_in} in the inputs, {errors_out} in the outputs, {new_total} new; \
             {with_1c} inputs with Type 1C request attributes; {:.0} s",
            started.elapsed().as_secs_f64()
        );
        assert!(objects > 200, "{name}: too few objects compared");
        assert!(
            with_1c > 0,
            "the corpus has no Request Attributes Sequence with a Type 1C attribute"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&tmp).unwrap();
}
