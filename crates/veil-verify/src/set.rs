//! Verifying a whole output tree against its sources.
//!
//! Sources are harvested once; tokens are pooled per patient (Patient ID
//! and issuer), since a value that leaks from one of a patient's objects
//! into another's output is still that patient's PHI. Each output is paired
//! with its source without the key: by its SOP Instance UID when that was
//! kept, by a fingerprint of its pixel data (dimensions, length, 64
//! samples spread over it, which the core copies byte for byte), else through its study or its (pseudonymous) patient
//! (an output study or patient paired by one image pairs all its objects; a
//! DICOMDIR pairs through the instances its records name). An output that
//! pairs with nothing is searched for every source's IDs, UIDs, full names
//! and addresses, but not for dates or single name words, which collide
//! with other patients' shifted dates and with ordinary words by chance;
//! the pattern detectors and name lists run on it instead, and the report
//! counts it and warns (`--strict`: fails), since what its own source held
//! could not be looked for.
//!
//! The set checks then look at the release as a whole: markers present,
//! one patient per study and one study per series, the partition of
//! patients/studies/series/frames of reference the same as in the sources,
//! and references that resolved among the sources still resolving among
//! the outputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use veil_core::{Phi, Tag};
use veil_io::{BulkSource, DataSet, DicomFile, Value};

use crate::harvest::{harvest, patient_key, Token};
use crate::matcher::Matcher;
use crate::policy::VerifyPolicy;
use crate::report::Report;
use crate::scan::{scan_file, ScanInput};
use crate::text::{Place, ReportText};
use crate::{Category, Finding};

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The output root.
    pub out: PathBuf,
    /// The source files or folders, if at hand.
    pub sources: Vec<PathBuf>,
    /// What fails.
    pub policy: VerifyPolicy,
    /// Worker threads.
    pub jobs: usize,
    /// Run dciodvfy on every paired output and its source; report errors
    /// the source did not have.
    pub dciodvfy: bool,
    /// Run the source-free detectors (always on without sources).
    pub patterns: bool,
    /// Read every frame and overlay with OCR.
    pub pixels: bool,
    /// Check head volumes (NIfTI, CT/MR series) for a face that can still
    /// be rendered (veil-deface's geometric check).
    pub faces: bool,
    /// Quote the masked text around each finding; the report then says it
    /// must stay at the site (`--site-local`).
    pub site_local: bool,
}

/// What the set checks need from one object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    sop: Option<String>,
    study: Option<String>,
    series: Option<String>,
    frame_of_reference: Option<String>,
    patient: Option<String>,
    refs: Vec<String>,
    identity_removed: bool,
    method: bool,
    fingerprint: Option<[u8; 32]>,
    dicomdir: bool,
}

struct SourceInfo {
    path: PathBuf,
    facts: Facts,
    patient: usize,
}

/// Lists the files under the given roots, sorted.
pub use veil_io::walk as files;

/// Runs `f` over `items` on `jobs` threads, keeping order.
fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item mapped"))
        .collect()
}

/// Verifies an output tree.
pub fn verify_tree(opts: &Options) -> std::io::Result<Report> {
    verify_tree_with(opts, &|_, _| {})
}

/// [`verify_tree`], reporting progress: `tick(done, total)` is called from
/// the worker threads, in no particular order, as each source is read and
/// each output checked (total = sources + outputs).
pub fn verify_tree_with(
    opts: &Options,
    tick: &(dyn Fn(usize, usize) + Sync),
) -> std::io::Result<Report> {
    let outputs = files(std::slice::from_ref(&opts.out))?;
    verify_files_with(opts, &outputs, tick)
}

/// The check a release runs on one staged study before it is logged
/// (`veil release` and the gateway, `veil serve`): header and byte
/// patterns against the study's own sources, no OCR. Returns how many
/// files fail. One definition so both release paths check the same way.
pub fn release_check(
    root: &Path,
    sources: &[PathBuf],
    files: &[PathBuf],
    jobs: usize,
) -> std::io::Result<usize> {
    let opts = Options {
        out: root.to_path_buf(),
        sources: sources.to_vec(),
        policy: VerifyPolicy::default(),
        jobs,
        dciodvfy: false,
        patterns: true,
        pixels: false,
        faces: false,
        site_local: false,
    };
    verify_files(&opts, files).map(|r| r.summary.failing)
}

/// Verifies some of the files under `opts.out` (one released study, say):
/// paths are reported relative to `opts.out`, and the set checks look at
/// these files only.
pub fn verify_files(opts: &Options, outputs: &[PathBuf]) -> std::io::Result<Report> {
    verify_files_with(opts, outputs, &|_, _| {})
}

/// [`verify_files`] with progress, as in [`verify_tree_with`].
pub fn verify_files_with(
    opts: &Options,
    outputs: &[PathBuf],
    tick: &(dyn Fn(usize, usize) + Sync),
) -> std::io::Result<Report> {
    let start = Instant::now();
    if opts.pixels {
        ocr_available()?;
    }
    let jobs = opts.jobs.max(1);
    let source_paths = if opts.sources.is_empty() {
        Vec::new()
    } else {
        files(&opts.sources)?
    };
    let total = source_paths.len() + outputs.len();
    let done = AtomicUsize::new(0);
    let step = || tick(done.fetch_add(1, Ordering::Relaxed) + 1, total);
    tracing::info!(
        outputs = outputs.len(),
        sources = source_paths.len(),
        pixels = opts.pixels,
        "verify: files listed"
    );

    // sources: harvest, facts, patient pools
    let mut pools: Vec<Vec<Token>> = Vec::new();
    let mut sources: Vec<SourceInfo> = Vec::new();
    if !source_paths.is_empty() {
        let paths = source_paths;
        let read = par_map(&paths, jobs, |p| {
            let r = veil_io::read(p)
                .ok()
                .filter(|f| !f.is_dicomdir())
                .map(|f| (harvest(&f), patient_key(&f), facts(&f)));
            step();
            r
        });
        let mut by_patient: HashMap<Phi<String>, usize> = HashMap::new();
        for (path, r) in paths.into_iter().zip(read) {
            let Some((tokens, key, facts)) = r else {
                continue;
            };
            let pool = match key {
                Some(k) => *by_patient.entry(k).or_insert_with(|| {
                    pools.push(Vec::new());
                    pools.len() - 1
                }),
                None => {
                    pools.push(Vec::new());
                    pools.len() - 1
                }
            };
            pools[pool].extend(tokens);
            sources.push(SourceInfo {
                path,
                facts,
                patient: pool,
            });
        }
        for p in &mut pools {
            p.sort();
            p.dedup();
        }
    }
    let by_fp: HashMap<[u8; 32], Vec<usize>> = {
        let mut m: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        for (i, s) in sources.iter().enumerate() {
            if let Some(fp) = s.facts.fingerprint {
                m.entry(fp).or_default().push(i);
            }
        }
        m
    };

    // outputs: facts and pairing
    let out_facts: Vec<Option<Facts>> =
        par_map(outputs, jobs, |p| veil_io::read(p).ok().map(|f| facts(&f)));
    let mut by_sop: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        if let Some(u) = s.facts.sop.as_deref() {
            by_sop.entry(u).or_default().push(i);
        }
    }
    let mut paired: Vec<Vec<usize>> = out_facts
        .iter()
        .map(|f| {
            let Some(f) = f.as_ref() else {
                return Vec::new();
            };
            let by_pixels = f
                .fingerprint
                .and_then(|fp| by_fp.get(&fp).cloned())
                .unwrap_or_default();
            // a kept SOP Instance UID (retain-uids, or a copy that was
            // never de-identified) names its source, or its sources when
            // one instance came in several files (then the pixels decide)
            match f.sop.as_deref().and_then(|u| by_sop.get(u)) {
                Some(c) if c.len() == 1 => c.clone(),
                Some(c) => {
                    let both: Vec<usize> = c
                        .iter()
                        .copied()
                        .filter(|i| by_pixels.contains(i))
                        .collect();
                    if both.is_empty() {
                        c.clone()
                    } else {
                        both
                    }
                }
                None => by_pixels,
            }
        })
        .collect();
    let mut study_sources: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for (f, p) in out_facts.iter().zip(&paired) {
        if let (Some(f), false) = (f, p.is_empty()) {
            if let Some(st) = &f.study {
                study_sources.entry(st.clone()).or_default().extend(p);
            }
        }
    }
    // pairs by SOP UID or pixel fingerprint are exact; the rest are not
    let exact: Vec<bool> = paired.iter().map(|p| p.len() == 1).collect();
    let mut sop_sources: HashMap<String, Vec<usize>> = HashMap::new();
    for (f, p) in out_facts.iter().zip(&paired) {
        if let (Some(f), false) = (f, p.is_empty()) {
            if let Some(sop) = &f.sop {
                sop_sources.insert(sop.clone(), p.clone());
            }
        }
    }
    // then through the output patient: all of a pseudonymous patient's
    // objects belong to the sources its paired images came from
    let mut patient_sources: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for (f, p) in out_facts.iter().zip(&paired) {
        if let (Some(f), false) = (f, p.is_empty()) {
            if let Some(pt) = &f.patient {
                patient_sources.entry(pt.clone()).or_default().extend(p);
            }
        }
    }
    let by_study: usize = {
        let mut n = 0;
        for (f, p) in out_facts.iter().zip(paired.iter_mut()) {
            if !p.is_empty() {
                continue;
            }
            let f = f.as_ref();
            let via_study = f
                .and_then(|f| f.study.as_ref())
                .and_then(|s| study_sources.get(s));
            let via_patient = f
                .and_then(|f| f.patient.as_ref())
                .filter(|pt| !pt.is_empty())
                .and_then(|pt| patient_sources.get(pt));
            if let Some(srcs) = via_study.or(via_patient) {
                p.extend(srcs.iter().copied());
                n += 1;
            } else if let Some(f) = f {
                // an SR, presentation state or key object: the sources of
                // the paired images it references
                let refs: BTreeSet<usize> = f
                    .refs
                    .iter()
                    .filter_map(|r| sop_sources.get(r.as_str()))
                    .flatten()
                    .copied()
                    .collect();
                if !refs.is_empty() {
                    p.extend(refs);
                    n += 1;
                }
            }
        }
        n
    };

    // matchers: one per set of patient pools, built on first use
    // built only if some output pairs with nothing
    let union: std::sync::OnceLock<Arc<Matcher>> = std::sync::OnceLock::new();
    let build_union = || {
        Arc::new(Matcher::new({
            let mut all: Vec<Token> = pools
                .iter()
                .flatten()
                .filter(|t| match t.category {
                    // other patients' dates and times coincide with this
                    // output's shifted ones by chance
                    Category::Date | Category::Time => false,
                    // so do single name words (FIELD, MONITOR); full names and
                    // long ones do not
                    Category::Name => {
                        let v = t.value.expose();
                        v.contains([' ', '^', ',']) || v.chars().count() >= 8
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            all.sort();
            all.dedup();
            all
        }))
    };
    let cache: Mutex<HashMap<Vec<usize>, Arc<Matcher>>> = Mutex::new(HashMap::new());
    let matcher_for = |srcs: &[usize]| -> Option<Arc<Matcher>> {
        if sources.is_empty() {
            return None;
        }
        if srcs.is_empty() {
            return Some(union.get_or_init(build_union).clone());
        }
        let mut key: Vec<usize> = srcs.iter().map(|&i| sources[i].patient).collect();
        key.sort();
        key.dedup();
        if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Some(m.clone());
        }
        let mut toks: Vec<Token> = key.iter().flat_map(|&p| pools[p].iter().cloned()).collect();
        toks.sort();
        toks.dedup();
        let m = Arc::new(Matcher::new(toks));
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, m.clone());
        Some(m)
    };

    // outputs that parsed and pair with no source: their own source's
    // dates and single name words cannot be looked for, so the patterns
    // and name lists run on them whatever `--patterns` says, and the report
    // counts them (without sources, every output)
    let unpaired: Vec<bool> = paired
        .iter()
        .zip(&out_facts)
        .map(|(p, f)| p.is_empty() && f.is_some())
        .collect();
    let idx: Vec<usize> = (0..outputs.len()).collect();
    // each output's findings, and the path they name it by
    let scanned: Vec<(Vec<Finding>, String)> = par_map(&idx, jobs, |&i| {
        let rel = relative(&opts.out, &outputs[i]);
        let m = matcher_for(&paired[i]);
        let patterns = opts.patterns || sources.is_empty() || unpaired[i];
        let s = scan_file(&ScanInput {
            path: &outputs[i],
            rel: &rel,
            tokens: m.as_deref(),
            patterns,
            site_local: opts.site_local,
        });
        let mut f = s.findings;
        if unpaired[i] && !sources.is_empty() {
            f.push(structure(
                &s.shown,
                "file",
                UNPAIRED,
                ReportText::fixed(
                    "pairs with no source: searched for every source's IDs, UIDs, full names and addresses, and with the patterns and name lists",
                ),
            ));
        }
        if opts.pixels {
            if let Ok(file) = &s.file {
                f.extend(read_pixels(
                    file,
                    &s.shown,
                    m.as_deref(),
                    patterns,
                    opts.site_local,
                ));
            }
        }
        if opts.dciodvfy && exact[i] {
            f.extend(new_dciodvfy_errors(
                &sources[paired[i][0]].path,
                &outputs[i],
                &s.shown,
            ));
        }
        step();
        (f, s.shown)
    });
    let (found, rels): (Vec<Vec<Finding>>, Vec<String>) = scanned.into_iter().unzip();
    let mut findings: Vec<Finding> = found.into_iter().flatten().collect();

    // set checks (outputs named as the scan named them)
    let exact_pairs: Vec<Option<usize>> = paired
        .iter()
        .zip(&exact)
        .map(|(p, &e)| e.then(|| p[0]))
        .collect();
    set_checks(
        &rels,
        &out_facts,
        &paired,
        &exact_pairs,
        &sources,
        &mut findings,
    );

    let unresolved = {
        let sops: BTreeSet<&str> = out_facts
            .iter()
            .flatten()
            .filter_map(|f| f.sop.as_deref())
            .collect();
        out_facts
            .iter()
            .flatten()
            .flat_map(|f| f.refs.iter())
            .filter(|r| !sops.contains(r.as_str()))
            .count()
    };
    if opts.faces {
        let shown: HashMap<String, &String> = outputs
            .iter()
            .map(|p| relative(&opts.out, p))
            .zip(&rels)
            .collect();
        findings.extend(
            crate::faces::face_findings(&opts.out, outputs)
                .into_iter()
                .map(|mut f| {
                    if let Some(s) = shown.get(&f.file) {
                        f.file = s.to_string();
                    }
                    f
                }),
        );
    }
    findings.retain(|f| opts.policy.reports(f.category));
    let paired_fp = paired
        .iter()
        .zip(&out_facts)
        .filter(|(p, f)| !p.is_empty() && f.is_some())
        .count()
        - by_study;
    let mut searched = vec!["headers, bytes and file names".to_string()];
    if !opts.sources.is_empty() {
        searched.push(format!(
            "against {}",
            veil_core::count(sources.len(), "source", "sources")
        ));
    }
    if opts.patterns || opts.sources.is_empty() {
        searched.push("patterns and name lists".into());
    }
    if opts.pixels {
        searched.push("pixels and overlays (OCR)".into());
    }
    if opts.dciodvfy {
        searched.push("structure (dciodvfy)".into());
    }
    if opts.faces {
        searched.push("faces in head volumes".into());
    }
    let checked = crate::report::Checked {
        folder: opts
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into()),
        date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        searched,
    };
    let mut report = Report::new(
        findings,
        opts.site_local,
        &opts.policy,
        outputs.len(),
        sources.len(),
        paired_fp,
        by_study,
        unpaired.iter().filter(|&&u| u).count(),
        unresolved,
        start.elapsed().as_secs_f64(),
    );
    report.checked = Some(checked);
    Ok(report)
}

/// Verifies one output against its parsed source, for `veil deid --verify`:
/// the source's tokens, the source-free detectors and the markers. Returns
/// the findings that fail under `policy`; an output with any goes to review.
pub fn verify_one(
    source: &DicomFile,
    output: &Path,
    rel: &str,
    policy: &VerifyPolicy,
) -> Vec<Finding> {
    let m = Matcher::new(harvest(source));
    let s = scan_file(&ScanInput {
        path: output,
        rel,
        tokens: Some(&m),
        patterns: true,
        site_local: false,
    });
    let mut findings = s.findings;
    if let Ok(f) = &s.file {
        let facts = facts(f);
        let rels = [s.shown.clone()];
        set_checks(
            &rels,
            &[Some(facts)],
            &[Vec::new()],
            &[None],
            &[],
            &mut findings,
        );
    }
    findings.retain(|f| policy.fails(f.category, f.place.as_str()));
    findings
}

#[cfg(feature = "ocr")]
thread_local! {
    // Tesseract's API object is not shareable: one per worker thread.
    static OCR: std::cell::RefCell<Option<veil_pixels::ocr::Ocr>> = const { std::cell::RefCell::new(None) };
}

#[cfg(feature = "ocr")]
fn ocr_available() -> std::io::Result<()> {
    veil_pixels::ocr::Ocr::new()
        .map(|_| ())
        .map_err(|e| std::io::Error::other(format!("--pixels: OCR is not available: {e}")))
}

#[cfg(not(feature = "ocr"))]
fn ocr_available() -> std::io::Result<()> {
    Err(std::io::Error::other(
        "--pixels: this build has no OCR (feature `ocr`)",
    ))
}

#[cfg(feature = "ocr")]
fn read_pixels(
    file: &DicomFile,
    rel: &str,
    m: Option<&Matcher>,
    patterns: bool,
    site_local: bool,
) -> Vec<Finding> {
    OCR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = veil_pixels::ocr::Ocr::new().ok();
        }
        match slot.as_mut() {
            Some(ocr) => crate::pixels::scan_pixels(file, rel, m, patterns, ocr, true, site_local),
            None => Vec::new(),
        }
    })
}

#[cfg(not(feature = "ocr"))]
fn read_pixels(_: &DicomFile, _: &str, _: Option<&Matcher>, _: bool, _: bool) -> Vec<Finding> {
    Vec::new()
}

/// A path relative to the root, with `/` separators.
pub fn relative(root: &Path, p: &Path) -> String {
    let r = p.strip_prefix(root).unwrap_or(p);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The check of an output that pairs with no source: a warning, which
/// `--strict` (the policy's `strict`) makes a failure.
pub const UNPAIRED: &str = "unpaired";

fn structure(file: &str, place: &'static str, check: &str, excerpt: ReportText) -> Finding {
    Finding {
        file: file.to_string(),
        place: Place::fixed(place),
        category: if check == "marker" {
            Category::Marker
        } else {
            Category::Structure
        },
        detector: format!("structure:{check}"),
        excerpt,
        context: None,
        frame: None,
        thumbnail: None,
    }
}

fn set_checks(
    rels: &[String],
    out: &[Option<Facts>],
    paired: &[Vec<usize>],
    exact: &[Option<usize>],
    sources: &[SourceInfo],
    findings: &mut Vec<Finding>,
) {
    let mut sop_seen: HashMap<&str, usize> = HashMap::new();
    let mut study_patient: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut series_study: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (i, f) in out.iter().enumerate() {
        let Some(f) = f else { continue };
        if f.dicomdir {
            continue;
        }
        if !f.identity_removed {
            findings.push(structure(
                &rels[i],
                "(0012,0062)",
                "marker",
                ReportText::fixed("Patient Identity Removed is not YES"),
            ));
        }
        if !f.method {
            findings.push(structure(
                &rels[i],
                "(0012,0063)",
                "marker",
                ReportText::fixed("no De-identification Method or its code sequence"),
            ));
        }
        if let Some(s) = &f.sop {
            if let Some(first) = sop_seen.insert(s, i) {
                findings.push(structure(
                    &rels[i],
                    "(0008,0018)",
                    "duplicate-instance",
                    ReportText::fixed("same SOP Instance UID as ").output(&rels[first]),
                ));
            }
        }
        if let (Some(st), Some(p)) = (&f.study, &f.patient) {
            study_patient.entry(st).or_default().insert(p);
        }
        if let (Some(se), Some(st)) = (&f.series, &f.study) {
            series_study.entry(se).or_default().insert(st);
        }
    }
    // what the sources already had is not the release's doing
    let mut src_study_patient: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut src_series_study: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for f in sources.iter().map(|s| &s.facts) {
        if let (Some(st), Some(p)) = (&f.study, &f.patient) {
            src_study_patient.entry(st).or_default().insert(p);
        }
        if let (Some(se), Some(st)) = (&f.series, &f.study) {
            src_series_study.entry(se).or_default().insert(st);
        }
    }
    let inherited = |i: usize, study: bool| {
        paired[i].iter().any(|&s| {
            let f = &sources[s].facts;
            if study {
                f.study
                    .as_deref()
                    .and_then(|s| src_study_patient.get(s))
                    .is_some_and(|p| p.len() > 1)
            } else {
                f.series
                    .as_deref()
                    .and_then(|s| src_series_study.get(s))
                    .is_some_and(|p| p.len() > 1)
            }
        })
    };
    for (i, f) in out.iter().enumerate() {
        let Some(f) = f else { continue };
        if f.study
            .as_deref()
            .and_then(|s| study_patient.get(s))
            .is_some_and(|p| p.len() > 1)
            && !inherited(i, true)
        {
            findings.push(structure(
                &rels[i],
                "(0020,000D)",
                "hierarchy",
                ReportText::fixed("study holds more than one patient"),
            ));
        }
        if f.series
            .as_deref()
            .and_then(|s| series_study.get(s))
            .is_some_and(|p| p.len() > 1)
            && !inherited(i, false)
        {
            findings.push(structure(
                &rels[i],
                "(0020,000E)",
                "hierarchy",
                ReportText::fixed("series belongs to more than one study"),
            ));
        }
    }
    if sources.is_empty() {
        return;
    }
    // the partition into patients/studies/series/frames of reference must
    // be the same before and after (UIDs remapped consistently)
    type Get = fn(&Facts) -> Option<&String>;
    let levels: [(&str, &str, &str, Get); 4] = [
        (
            "(0010,0020)",
            "one source patient became several",
            "several source patients became one",
            |f| f.patient.as_ref(),
        ),
        (
            "(0020,000D)",
            "one source study became several",
            "several source studies became one",
            |f| f.study.as_ref(),
        ),
        (
            "(0020,000E)",
            "one source series became several",
            "several source series became one",
            |f| f.series.as_ref(),
        ),
        (
            "(0020,0052)",
            "one source frame of reference became several",
            "several source frames of reference became one",
            |f| f.frame_of_reference.as_ref(),
        ),
    ];
    for (place, split, merged, get) in levels {
        let mut fwd: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut back: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut pairs = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let (Some(f), Some(s)) = (f, exact[i]) else {
                continue;
            };
            if let (Some(o), Some(src)) = (get(f), get(&sources[s].facts)) {
                fwd.entry(src).or_default().insert(o);
                back.entry(o).or_default().insert(src);
                pairs.push((i, src.as_str(), o.as_str()));
            }
        }
        for (i, src, o) in pairs {
            if fwd[src].len() > 1 {
                findings.push(structure(
                    &rels[i],
                    place,
                    "hierarchy",
                    ReportText::fixed(split),
                ));
            } else if back[o].len() > 1 {
                findings.push(structure(
                    &rels[i],
                    place,
                    "hierarchy",
                    ReportText::fixed(merged),
                ));
            }
        }
    }
    // references that resolved among the sources must resolve among outputs
    let src_sops: BTreeSet<&str> = sources
        .iter()
        .filter_map(|s| s.facts.sop.as_deref())
        .collect();
    let out_sops: BTreeSet<&str> = out
        .iter()
        .flatten()
        .filter_map(|f| f.sop.as_deref())
        .collect();
    for (i, f) in out.iter().enumerate() {
        let (Some(f), Some(s)) = (f, exact[i]) else {
            continue;
        };
        let before = sources[s]
            .facts
            .refs
            .iter()
            .filter(|r| src_sops.contains(r.as_str()))
            .count();
        let after = f
            .refs
            .iter()
            .filter(|r| out_sops.contains(r.as_str()))
            .count();
        if after < before {
            findings.push(structure(
                &rels[i],
                "(0008,1155)",
                "reference",
                ReportText::default()
                    .count((before - after) as u64)
                    .then(" of ")
                    .count(before as u64)
                    .then(" references no longer resolve"),
            ));
        }
    }
}

fn ascii(ds: &DataSet, tag: Tag) -> Option<String> {
    ds.ascii(tag).filter(|s| !s.is_empty())
}

fn collect_refs(ds: &DataSet, out: &mut Vec<String>) {
    for e in &ds.elements {
        match &e.value {
            Value::Sequence(items) => items.iter().for_each(|i| collect_refs(i, out)),
            // SOP instances a study, an SR or a presentation state
            // references, and those a DICOMDIR's records name
            Value::Bytes(b) if e.tag == Tag(0x0008, 0x1155) || e.tag == Tag(0x0004, 0x1511) => out
                .extend(
                    String::from_utf8_lossy(b)
                        .split('\\')
                        .map(|s| s.trim_matches(['\0', ' ']).to_string())
                        .filter(|s| !s.is_empty()),
                ),
            _ => {}
        }
    }
}

pub(crate) fn facts(f: &DicomFile) -> Facts {
    let ds = &f.dataset;
    let mut refs = Vec::new();
    collect_refs(ds, &mut refs);
    Facts {
        sop: ascii(ds, Tag(0x0008, 0x0018)),
        study: ascii(ds, Tag(0x0020, 0x000D)),
        series: ascii(ds, Tag(0x0020, 0x000E)),
        frame_of_reference: ascii(ds, Tag(0x0020, 0x0052)),
        // an empty Patient ID is a patient too (one without an ID)
        patient: ds.ascii(Tag(0x0010, 0x0020)),
        refs,
        identity_removed: ascii(ds, Tag(0x0012, 0x0062)).as_deref() == Some("YES"),
        method: ds.get(Tag(0x0012, 0x0063)).is_some() || ds.get(Tag(0x0012, 0x0064)).is_some(),
        fingerprint: fingerprint(f),
        dicomdir: f.is_dicomdir(),
    }
}

/// A key-free identity of an image: its dimensions and 64 samples of 4 KiB
/// spread evenly over its pixel data, which de-identification copies
/// unchanged. Sampling the middle matters: slices of one series often share
/// their first and last rows (air).
fn fingerprint(f: &DicomFile) -> Option<[u8; 32]> {
    const SAMPLES: u64 = 64;
    const CHUNK: u64 = 4096;
    let ds = &f.dataset;
    let px = ds.get(Tag(0x7FE0, 0x0010))?;
    let mut h = Sha256::new();
    for t in [
        Tag(0x0028, 0x0010),
        Tag(0x0028, 0x0011),
        Tag(0x0028, 0x0008),
    ] {
        h.update(ascii(ds, t).unwrap_or_default().as_bytes());
        h.update(ds.bytes(t).unwrap_or_default());
        h.update([0]);
    }
    match &px.value {
        Value::Bytes(b) | Value::EncapsulatedBytes(b) => {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
        Value::Bulk { offset, len } | Value::Encapsulated { offset, len } => {
            h.update(len.to_le_bytes());
            let mut src = BulkSource::open(&f.source).ok()?;
            if *len <= SAMPLES * CHUNK {
                h.update(src.read_range(*offset, *len).ok()?);
            } else {
                let step = (len - CHUNK) / (SAMPLES - 1);
                for i in 0..SAMPLES {
                    h.update(src.read_range(offset + i * step, CHUNK).ok()?);
                }
            }
        }
        Value::Sequence(_) => return None,
    }
    Some(h.finalize().into())
}

/// dciodvfy's error lines, without the parts that carry values (they may
/// be PHI, and UIDs, numbers and lengths change with de-identification;
/// see [`ReportText::dciodvfy`]). `None` when dciodvfy is not installed.
pub fn dciodvfy_errors(p: &Path) -> Option<BTreeSet<ReportText>> {
    let out = veil_core::tool_command("dciodvfy").arg(p).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.contains("Error"))
            .map(ReportText::dciodvfy)
            .collect(),
    )
}

fn new_dciodvfy_errors(source: &Path, output: &Path, rel: &str) -> Vec<Finding> {
    let (Some(before), Some(after)) = (dciodvfy_errors(source), dciodvfy_errors(output)) else {
        return Vec::new();
    };
    let new: BTreeMap<_, _> = after.difference(&before).map(|e| (e.clone(), ())).collect();
    new.into_keys()
        .map(|e| structure(rel, "file", "dciodvfy", e))
        .collect()
}
