//! Issue 16's plant-everywhere test: every readable corpus object gets its
//! own patient name, ID and birth date in every string element it has, at
//! every depth (`veil_plant::everywhere`); then
//! - under the Basic Profile and the research profile, at least 99.9% of
//!   the plants appear nowhere in their object's output (any value at any
//!   depth, the raw bytes outside pixel and other bulk data, in ASCII and
//!   UTF-16, the output's file and folder names; case-insensitive; every
//!   output and review copy counted), and nothing survives outside the
//!   [`ALLOWED`] list;
//! - `veil verify --source` flags at least [`VERIFY_FLOOR`] of the plants
//!   (99.9%, as the issue asks) in an un-de-identified copy of the planted
//!   set (a finding at the plant's file and element);
//! - dciodvfy reports no error on an output that it did not report on its
//!   planted input, under both profiles.
//!
//! Needs VEIL_CORPUS (a missing corpus or dciodvfy fails under
//! VEIL_REQUIRE_CORPUS). Prints survivor tables and timings.
#![allow(clippy::print_stderr)] // tests report what they measured

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use veil_core::TagPath;
use veil_io::{DataSet, Source, Value};
use veil_plant::everywhere::{Manifest, Plant};

/// The research profile of issue 16: dates shifted per patient,
/// descriptions cleaned.
const RESEARCH: &[&str] = &["retain-long-modified-dates", "clean-descriptors"];

/// Attributes whose planted value may stay, by (profile, keyword), each
/// with the reason. A value a profile keeps on purpose belongs here (as a
/// device serial under retain-device-identity would); neither profile
/// measured here keeps any identifying attribute on purpose, so the list
/// is empty and every survivor fails the test.
const ALLOWED: &[(&str, &str, &str)] = &[];

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

/// Everything of an output file a reader could find a value in, upper
/// case: the raw bytes with bulk values (pixel data, overlays, waveform
/// samples) cut out, since binary samples hold chance byte runs that
/// would count as noise and no text plant goes there; for a deflated file
/// the inflated stream instead of the compressed bytes; then every value
/// at every depth, File Meta included.
fn haystack(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("read output");
    let Ok(f) = veil_io::read(path) else {
        return raw.to_ascii_uppercase();
    };
    let stream: &[u8] = match &f.source {
        Source::File(_) => &raw,
        Source::Memory(m) => m,
    };
    let mut cuts = Vec::new();
    bulk_ranges(&f.dataset, &mut cuts);
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(stream.len().min(1 << 20));
    let mut at = 0usize;
    for (o, l) in cuts {
        let (o, l) = (o as usize, l as usize);
        if o >= at && o <= stream.len() {
            out.extend_from_slice(&stream[at..o]);
            out.push(b'\n');
            at = (o + l).min(stream.len());
        }
    }
    out.extend_from_slice(&stream[at.min(stream.len())..]);
    if let Some(m) = &f.meta {
        values(&m.elements, &mut out);
    }
    values(&f.dataset, &mut out);
    out.make_ascii_uppercase();
    out
}

fn bulk_ranges(ds: &DataSet, out: &mut Vec<(u64, u64)>) {
    for e in &ds.elements {
        match &e.value {
            Value::Bulk { offset, len } | Value::Encapsulated { offset, len } => {
                out.push((*offset, *len))
            }
            Value::Sequence(items) => items.iter().for_each(|i| bulk_ranges(i, out)),
            _ => {}
        }
    }
}

fn values(ds: &DataSet, out: &mut Vec<u8>) {
    for e in &ds.elements {
        match &e.value {
            Value::Bytes(b) => {
                out.push(b'\n');
                out.extend_from_slice(b);
            }
            Value::Sequence(items) => items.iter().for_each(|i| values(i, out)),
            _ => {}
        }
    }
}

/// Every element (at any depth) whose value holds a needle: (needle,
/// place in the verifier's notation, VR).
fn holding(
    ds: &DataSet,
    prefix: &str,
    path: &TagPath,
    needles: &BTreeSet<String>,
    out: &mut Vec<(String, String, String)>,
) {
    for e in &ds.elements {
        match &e.value {
            Value::Bytes(b) => {
                let up = b.to_ascii_uppercase();
                for n in needles {
                    if survives(&up, "", n) {
                        out.push((
                            n.clone(),
                            format!("{prefix}{}", path.child(e.tag, None)),
                            e.vr.to_string().to_string(),
                        ));
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    holding(item, prefix, &path.child(e.tag, Some(i)), needles, out);
                }
            }
            _ => {}
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

/// Whether a plant's needle is anywhere in the output: ASCII or UTF-16
/// (either byte order) in the haystack, or in the output's path.
fn survives(hay: &[u8], rel_out: &str, needle: &str) -> bool {
    let n = needle.to_ascii_uppercase();
    let le: Vec<u8> = n.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let be: Vec<u8> = n.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    find(hay, n.as_bytes())
        || find(hay, &le)
        || find(hay, &be)
        || rel_out.to_ascii_uppercase().contains(&n)
}

/// The deid report's entry per planted input: (status, output path).
fn outcomes(report: &Path, planted: &Path) -> HashMap<String, (String, Option<String>)> {
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).expect("deid report")).expect("JSON");
    rep["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let input = PathBuf::from(f["input"].as_str().expect("input"));
            let rel = input
                .strip_prefix(planted)
                .expect("input below the planted root")
                .to_string_lossy()
                .into_owned();
            (
                rel,
                (
                    f["status"].as_str().unwrap_or("").to_string(),
                    f["output"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// dciodvfy error lines (without values) of many files, two at a time.
fn dciodvfy_all(paths: &[PathBuf]) -> Vec<BTreeSet<String>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out = vec![BTreeSet::new(); paths.len()];
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = paths.get(i) else { break };
                let errs: BTreeSet<String> = veil_verify::set::dciodvfy_errors(p)
                    .expect("run dciodvfy")
                    .iter()
                    .map(|l| l.to_string())
                    .collect();
                results.lock().expect("lock").push((i, errs));
            });
        }
    });
    for (i, e) in results.into_inner().expect("lock") {
        out[i] = e;
    }
    out
}

struct Profile {
    name: &'static str,
    options: &'static [&'static str],
}

/// The share of plants `veil verify --source` must flag: issue 16's 99.9%
/// (see the assertion for what it misses).
const VERIFY_FLOOR: f64 = 0.999;

#[test]
fn planted_everywhere_is_removed_and_flagged() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let require = std::env::var("VEIL_REQUIRE_CORPUS").is_ok();
    let have_vfy = Command::new("dciodvfy").arg("-h").output().is_ok();
    assert!(have_vfy || !require, "dciodvfy (dicom3tools) is required");
    let tmp = veil_test::scratch("plant-everywhere");
    let planted = tmp.join("planted");
    let t0 = Instant::now();
    let m: Manifest = veil_plant::everywhere::plant_dir(&corpus, &planted, 16).expect("plant");
    eprintln!(
        "planted {} values into {} files (skipped {:?}; fake own values {:?}) in {:.1} s",
        m.plants.len(),
        m.files.len(),
        m.skipped,
        m.fake_values,
        t0.elapsed().as_secs_f64()
    );
    for x in &m.excluded {
        eprintln!("not planted: {:<20} {:>6}  {}", x.kind, x.count, x.reason);
    }
    assert!(m.files.len() > 200, "too few objects planted");
    assert!(m.plants.len() > 10_000, "too few plants");
    // planting leaves every object readable (dciodvfy, the other reader,
    // runs on every planted copy below; dicom-rs in a debug build would
    // add minutes)
    for f in &m.files {
        assert!(
            veil_io::read(&planted.join(f)).is_ok(),
            "{f}: planted copy unreadable"
        );
    }
    let by_file: BTreeMap<&str, Vec<&Plant>> = m.plants.iter().fold(BTreeMap::new(), |mut a, p| {
        a.entry(p.file.as_str()).or_default().push(p);
        a
    });
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &tmp);
    let profiles = [
        Profile {
            name: "basic",
            options: &[],
        },
        Profile {
            name: "research",
            options: RESEARCH,
        },
    ];
    // the unplanted corpus, for the objects Veil quarantines anyway
    // (deliberately broken files, duplicate instances)
    let base_report = tmp.join("report-unplanted.json");
    let (code, text) = veil_test::output(
        veil()
            .arg("deid")
            .arg(&corpus)
            .arg("--out")
            .arg(tmp.join("out-unplanted"))
            .arg("--key")
            .arg(&key)
            .arg("--report")
            .arg(&base_report)
            .args(["--jobs", "2"]),
    );
    assert!(code == 0 || code == 1, "veil deid failed: {text}");
    let quarantined_anyway: BTreeSet<String> = outcomes(&base_report, &corpus)
        .into_iter()
        .filter(|(_, (s, _))| s != "written" && s != "review")
        .map(|(f, _)| f)
        .collect();
    std::fs::remove_dir_all(tmp.join("out-unplanted")).expect("clean up");
    let mut failures = Vec::new();
    let mut vfy_pairs: Vec<(&str, String, PathBuf)> = Vec::new();
    for prof in &profiles {
        let (out, review, report) = (
            tmp.join(format!("out-{}", prof.name)),
            tmp.join(format!("review-{}", prof.name)),
            tmp.join(format!("report-{}.json", prof.name)),
        );
        let t = Instant::now();
        let mut cmd = veil();
        cmd.arg("deid")
            .arg(&planted)
            .arg("--out")
            .arg(&out)
            .arg("--review")
            .arg(&review)
            .arg("--key")
            .arg(&key)
            .arg("--report")
            .arg(&report)
            .args(["--jobs", "2"]);
        for o in prof.options {
            cmd.args(["--option", o]);
        }
        let (code, text) = veil_test::output(&mut cmd);
        assert!(code == 0 || code == 1, "veil deid failed: {text}");
        let deid_s = t.elapsed().as_secs_f64();
        let outcomes = outcomes(&report, &planted);
        let (mut removed, mut total, mut quarantined) = (0usize, 0usize, 0usize);
        let mut survivors: BTreeMap<(String, String), usize> = BTreeMap::new();
        let (mut allowed_n, mut failed_plants, mut at_own_place) = (0usize, 0usize, 0usize);
        // by VR: (plants still in their own element, plants)
        let mut own_by_vr: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut outputs = 0usize;
        for (file, plants) in &by_file {
            let (status, output) = outcomes.get(*file).cloned().unwrap_or_default();
            let root = match status.as_str() {
                "written" => &out,
                "review" => &review,
                _ => {
                    quarantined += 1;
                    if !quarantined_anyway.contains(*file) {
                        failures.push(format!("{}: {file} quarantined ({status})", prof.name));
                    }
                    continue;
                }
            };
            let rel_out = output.expect("an output path");
            let path = root.join(&rel_out);
            outputs += 1;
            vfy_pairs.push((prof.name, file.to_string(), path.clone()));
            let hay = haystack(&path);
            // where in the output the file's values are: (place, VR) of
            // every element holding one, by needle
            let needles: BTreeSet<String> = plants
                .iter()
                .map(|p| p.needle.to_ascii_uppercase())
                .collect();
            let mut holders: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
            if let Ok(f) = veil_io::read(&path) {
                let mut found = Vec::new();
                if let Some(m) = &f.meta {
                    holding(
                        &m.elements,
                        "meta/",
                        &TagPath::default(),
                        &needles,
                        &mut found,
                    );
                }
                holding(&f.dataset, "", &TagPath::default(), &needles, &mut found);
                for (needle, place, vr) in found {
                    let n = needles.get(&needle).expect("a needle").as_str();
                    holders.entry(n).or_default().push((place, vr));
                }
            }
            let keyword_at = |place: &str| -> String {
                plants
                    .iter()
                    .find(|p| p.place == place)
                    .map(|p| p.keyword.clone())
                    .unwrap_or_else(|| format!("other {}", place.rsplit('/').next().unwrap_or("")))
            };
            for p in plants {
                total += 1;
                own_by_vr.entry(p.vr.as_str()).or_default().1 += 1;
                if !survives(&hay, &rel_out, &p.needle) {
                    removed += 1;
                    continue;
                }
                let at = holders
                    .get(p.needle.to_ascii_uppercase().as_str())
                    .cloned()
                    .unwrap_or_default();
                if at.iter().any(|(place, _)| *place == p.place) {
                    at_own_place += 1;
                    own_by_vr.entry(p.vr.as_str()).or_default().0 += 1;
                }
                let allowed = |kw: &str| {
                    ALLOWED
                        .iter()
                        .any(|(pr, k, _)| *pr == prof.name && *k == kw)
                };
                if !at.is_empty() && at.iter().all(|(place, _)| allowed(&keyword_at(place))) {
                    allowed_n += 1;
                } else {
                    failed_plants += 1;
                }
            }
            // each holding element once, however many plants it holds
            let places: BTreeSet<(String, String)> = holders.values().flatten().cloned().collect();
            for (place, vr) in places {
                let kw = keyword_at(&place);
                *survivors.entry((kw.clone(), vr.clone())).or_default() += 1;
                if !ALLOWED
                    .iter()
                    .any(|(pr, k, _)| *pr == prof.name && *k == kw)
                {
                    failures.push(format!(
                        "{}: {place} {kw} ({vr}) holds a planted value in {file}",
                        prof.name
                    ));
                }
            }
            if plants.iter().any(|p| {
                survives(&hay, &rel_out, &p.needle)
                    && !holders.contains_key(p.needle.to_ascii_uppercase().as_str())
            }) {
                *survivors
                    .entry(("(raw bytes or name only)".into(), "-".into()))
                    .or_default() += 1;
                failures.push(format!(
                    "{}: a planted value in the raw bytes or name of {file}",
                    prof.name
                ));
            }
        }
        // every output and review copy is one planted object
        let copies = veil_test::files(&out).len() + veil_test::files(&review).len();
        let rate = removed as f64 / total.max(1) as f64;
        eprintln!(
            "{}: deid {deid_s:.1} s; {outputs} objects out ({copies} files in out and review), {quarantined} quarantined ({} inputs quarantined in the unplanted corpus); removed {removed}/{total} = {:.2}% ({} survivors: {allowed_n} allowed, {failed_plants} not); gone from their own element: {:.2}%",
            prof.name,
            quarantined_anyway.len(),
            100.0 * rate,
            total - removed,
            100.0 * (total - at_own_place) as f64 / total.max(1) as f64
        );
        eprintln!(
            "  still in their own element, by VR: {}",
            own_by_vr
                .iter()
                .map(|(vr, (k, n))| format!("{vr} {k}/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        eprintln!("  output elements holding a planted value, by attribute (first 40):");
        let mut table: Vec<_> = survivors.into_iter().collect();
        table.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((kw, vr), n) in table.iter().take(40) {
            eprintln!("  {:<52} {vr}  {n}", kw);
        }
        if table.len() > 40 {
            eprintln!("  ... {} more attributes", table.len() - 40);
        }
        // measured first, judged at the end: every number gets printed
        if copies < outputs {
            failures.push(format!("{}: outputs in the report missing", prof.name));
        }
        if rate < 0.999 {
            failures.push(format!(
                "{}: only {:.2}% of plants removed",
                prof.name,
                100.0 * rate
            ));
        }
    }

    // the verifier, on the planted set copied as if it were an output
    let copy = tmp.join("copy");
    for f in &m.files {
        let dest = copy.join(f);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(planted.join(f), &dest).expect("copy");
    }
    let t = Instant::now();
    let vjson = tmp.join("verify.json");
    let (code, text) = veil_test::output(
        veil()
            .arg("verify")
            .arg(&copy)
            .arg("--source")
            .arg(&planted)
            .arg("--json")
            .arg(&vjson)
            .arg("--site-local"),
    );
    assert!(code == 0 || code == 1, "veil verify failed: {text}");
    std::fs::remove_dir_all(&copy).expect("clean up");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vjson).expect("verify report")).expect("JSON");
    let found: BTreeSet<(String, String)> = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap_or("").to_string(),
                f["place"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut missed: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut flagged = 0usize;
    // by own value: (flagged, plants)
    let mut by_which: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in &m.plants {
        let w = by_which.entry(format!("{:?}", p.which)).or_default();
        w.1 += 1;
        if found.contains(&(p.file.clone(), p.place.clone())) {
            flagged += 1;
            w.0 += 1;
        } else {
            *missed.entry((p.keyword.clone(), p.vr.clone())).or_default() += 1;
        }
    }
    let vrate = flagged as f64 / m.plants.len() as f64;
    eprintln!(
        "verify --source: {:.1} s; flagged {flagged}/{} = {:.2}% of plants ({} findings)",
        t.elapsed().as_secs_f64(),
        m.plants.len(),
        100.0 * vrate,
        found.len()
    );
    eprintln!(
        "  flagged by value: {}",
        by_which
            .iter()
            .map(|(w, (f, n))| format!("{w} {f}/{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut table: Vec<_> = missed.into_iter().collect();
    table.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for ((kw, vr), n) in table.iter().take(40) {
        eprintln!("  not flagged {:<41} {vr}  {n}", kw);
    }

    // dciodvfy: no error on an output that its planted input did not have
    let mut new_errors = Vec::new();
    if have_vfy {
        let t = Instant::now();
        let inputs: Vec<PathBuf> = m.files.iter().map(|f| planted.join(f)).collect();
        let before = dciodvfy_all(&inputs);
        let before: HashMap<&str, &BTreeSet<String>> = m
            .files
            .iter()
            .map(String::as_str)
            .zip(before.iter())
            .collect();
        let outs: Vec<PathBuf> = vfy_pairs.iter().map(|(_, _, p)| p.clone()).collect();
        let after = dciodvfy_all(&outs);
        // dciodvfy ends on an assertion (SIGABRT) where it cannot read on
        let aborted: BTreeSet<&String> = m
            .files
            .iter()
            .filter(|f| {
                Command::new("dciodvfy")
                    .arg(planted.join(f))
                    .output()
                    .is_ok_and(|o| o.status.code().is_none())
            })
            .collect();
        let (mut checked, mut no_baseline) = (0usize, 0usize);
        let mut kinds: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for ((prof, file, _), a) in vfy_pairs.iter().zip(&after) {
            let b = before[file.as_str()];
            // an input whose data set lacks SOP Class UID is checked
            // against no IOD; its output is (corpus.rs); and dciodvfy
            // aborts on some inputs (private sequences in group 0007, 32-bit
            // RGB) after listing part of their errors: no baseline
            if b.iter().any(|l| l.contains("missing SOPClassUID")) || aborted.contains(file) {
                no_baseline += 1;
                continue;
            }
            checked += 1;
            let new: Vec<_> = a.difference(b).cloned().collect();
            if !new.is_empty() {
                for e in &new {
                    *kinds.entry((prof, e.clone())).or_default() += 1;
                }
                new_errors.push(format!("{prof}: {file}: {new:?}"));
            }
        }
        eprintln!(
            "dciodvfy: {checked} outputs (both profiles) compared with their planted inputs in {:.1} s ({no_baseline} without a baseline), {} with new errors",
            t.elapsed().as_secs_f64(),
            new_errors.len()
        );
        for ((prof, e), n) in &kinds {
            eprintln!("  {prof}: {n} outputs: {e}");
        }
    }
    eprintln!("total {:.1} s", t0.elapsed().as_secs_f64());
    // rates first, then single survivors
    failures.sort_by_key(|f| f.contains(" in ") && !f.contains("% of plants"));
    assert!(
        failures.is_empty(),
        "{} failures (survivors outside the allowed list included), e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    // Issue 16 asks for 99.9%. Measured 27923/27939 = 99.94% (7 December
    // 2026; 97.14% before the verifier matched a DT's date part, own IDs
    // inside UID components and in kinds of UIDs, code-string spellings,
    // and single name words in coded places). The 16 misses are two
    // patients' single name words that are no one's in particular: `NAME`
    // (9, a placeholder the harvest skips: every output that says `NAME`
    // would be flagged) and `LAST` (7 in RT code strings, a word of DICOM
    // keywords such as LastMenstrualDate); docs/verify.md.
    assert!(
        vrate >= VERIFY_FLOOR,
        "veil verify flags only {:.2}% of plants",
        100.0 * vrate
    );
    assert!(new_errors.is_empty(), "{new_errors:#?}");
    std::fs::remove_dir_all(&tmp).expect("clean up");
}
