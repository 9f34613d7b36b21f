//! Re-identification risk of a de-identified release (`veil risk`).
//!
//! Reads only the headers of the output (never the input, never the
//! de-identification rule tables), builds one record per patient from its
//! quasi-identifiers, and reports k-anonymity, prosecutor, journalist and
//! marketer risk, the records above a threshold, and generalizations (the
//! recipe's `[generalize]` section) that reach it.
//!
//! * [`collect`]: walks a folder, reads each object with [`veil_io::read`]
//!   and groups objects by PatientID (a pseudonym in the output). A
//!   patient's value of a quasi-identifier is the **set of distinct values**
//!   over all their objects (a patient with an MR and a CT has modality
//!   `CT|MR`): an attacker who knows any of a patient's studies can match
//!   the set, and a set is at least as distinguishing as any single study.
//!   Absent or empty everywhere is the value "" (a class of its own).
//! * [`measure()`]: classes, k, the three risks (definitions in
//!   [`measure`](mod@measure)).
//! * [`suggest()`]: the generalization lattice.
//! * [`Report`]: JSON and HTML.

mod collect;
pub mod measure;
mod population;
mod quasi;
mod report;
mod suggest;

pub use collect::{collect, collect_with, Collection, Record};
pub use measure::{measure, Measures, Risk, SizeCount};
pub use population::{Population, SET_SEP};
pub use quasi::{Quasi, DEFAULT_NAMES};
pub use report::{assess, escape, AtRisk, Report};
pub use suggest::{suggest, Search, Suggestion};

/// Why an assessment could not run. Never names a file or a value.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// The folder could not be walked.
    #[error("cannot read the output folder: {0:?}")]
    Io(std::io::ErrorKind),
    /// A quasi-identifier name is not known.
    #[error("{0}")]
    Quasi(String),
    /// The population table is malformed.
    #[error("population table: {0}")]
    Population(String),
    /// Nothing to assess.
    #[error("no DICOM objects found in the output folder")]
    Empty,
}

/// Everything `veil risk` does short of printing: reads `out`, measures,
/// suggests. `population` is the CSV text of a population table.
pub fn run(
    out: &std::path::Path,
    quasi: &[Quasi],
    population: Option<&str>,
    threshold: f64,
) -> Result<Report, RiskError> {
    run_with(out, quasi, population, threshold, &|_, _| {})
}

/// [`run`], calling `tick(done, total)` as each file is read (progress).
pub fn run_with(
    out: &std::path::Path,
    quasi: &[Quasi],
    population: Option<&str>,
    threshold: f64,
    tick: &dyn Fn(usize, usize),
) -> Result<Report, RiskError> {
    let pop = population
        .map(|t| Population::parse(t, quasi))
        .transpose()?;
    let c = collect::collect_with(out, quasi, tick)?;
    if c.records.is_empty() {
        return Err(RiskError::Empty);
    }
    Ok(assess(&c, quasi, pop.as_ref(), threshold))
}
