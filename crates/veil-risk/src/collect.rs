//! One record per patient, from the headers of a de-identified folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use veil_core::Tag;

use crate::quasi::Quasi;
use crate::RiskError;

/// One patient of the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The pseudonymous PatientID of the output (or, when empty, the
    /// patient's folder name under OUT, itself a keyed pseudonym).
    pub patient: String,
    /// Per quasi-identifier (in the order given), the distinct values seen
    /// across the patient's files; empty when none has one.
    pub values: Vec<BTreeSet<String>>,
}

/// What was read from a folder.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    /// Records, sorted by patient.
    pub records: Vec<Record>,
    /// DICOM objects read.
    pub files_read: usize,
    /// Files that are not readable DICOM objects, and DICOMDIRs.
    pub files_skipped: usize,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
        // symbolic links are not followed: a release holds plain files
    }
    Ok(())
}

/// Reads every DICOM object below `root` (headers only) and groups them by
/// patient. A patient's value of a quasi-identifier is the set of distinct
/// values over all of their objects. Errors name no path.
pub fn collect(root: &Path, quasi: &[Quasi]) -> Result<Collection, RiskError> {
    collect_with(root, quasi, &|_, _| {})
}

/// [`collect`], calling `tick(done, total)` after each file (progress).
pub fn collect_with(
    root: &Path,
    quasi: &[Quasi],
    tick: &dyn Fn(usize, usize),
) -> Result<Collection, RiskError> {
    let mut files = Vec::new();
    walk(root, &mut files).map_err(|e| RiskError::Io(e.kind()))?;
    files.sort();
    let mut by_patient: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    let mut c = Collection::default();
    for (n, path) in files.iter().enumerate() {
        tick(n + 1, files.len());
        let f = match veil_io::read(path) {
            Ok(f) if !f.is_dicomdir() => f,
            _ => {
                c.files_skipped += 1;
                continue;
            }
        };
        c.files_read += 1;
        let ds = &f.dataset;
        let patient = ds
            .ascii(Tag(0x0010, 0x0020))
            .filter(|s| !s.is_empty())
            .or_else(|| {
                // Veil's layout: OUT/<patient pseudonym>/...; a file at the
                // top has no patient folder and stands alone
                let rel = path.strip_prefix(root).ok()?;
                let mut comps = rel.components();
                let first = comps.next()?;
                comps.next()?;
                Some(format!("(folder {})", first.as_os_str().to_string_lossy()))
            })
            .unwrap_or_else(|| format!("(no PatientID, file {})", n + 1));
        let values = by_patient
            .entry(patient)
            .or_insert_with(|| vec![BTreeSet::new(); quasi.len()]);
        for (q, set) in quasi.iter().zip(values.iter_mut()) {
            if let Some(v) = q.value(ds) {
                set.insert(v);
            }
        }
    }
    c.records = by_patient
        .into_iter()
        .map(|(patient, values)| Record { patient, values })
        .collect();
    Ok(c)
}
