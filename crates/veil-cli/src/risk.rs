//! `veil risk`: re-identification risk of a de-identified folder. A thin
//! shell over `veil-risk`; errors become exit status 2 in `main`.

use std::path::PathBuf;

use veil_risk::Quasi;

/// Arguments of `veil risk`.
#[derive(clap::Args)]
pub struct RiskArgs {
    /// The de-identified folder (veil deid's OUT).
    out: PathBuf,
    /// Quasi-identifiers, comma-separated: DICOM keywords or the named
    /// defaults (age, sex, height, weight, ethnic-group, study-date,
    /// modality, body-part, manufacturer, model, station, institution).
    #[arg(long, value_delimiter = ',', value_name = "ATTR,...")]
    quasi: Vec<String>,
    /// Highest acceptable risk of a record (1/k without a population table).
    #[arg(long, default_value_t = 0.09)]
    threshold: f64,
    /// Population table (CSV: the quasi-identifier columns and `count`).
    #[arg(long, value_name = "FILE")]
    population: Option<PathBuf>,
    /// Write the JSON report here (outside OUT).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the HTML report here (outside OUT).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Runs `veil risk`: 0 within the threshold, 1 above; `Err` (exit 2) when
/// it cannot run. Messages name no input file and no value.
pub fn run(a: RiskArgs, quiet: bool) -> Result<i32, String> {
    if !(a.threshold > 0.0 && a.threshold <= 1.0) {
        return Err("--threshold must be in (0, 1]".into());
    }
    if !a.out.is_dir() {
        return Err("OUT is not a folder".into());
    }
    for r in [&a.json, &a.html].into_iter().flatten() {
        if !veil_io::atomic::is_stdout(r) && crate::inside(r, &a.out) {
            return Err(
                "write the risk report outside OUT: it lists the patients most at risk".into(),
            );
        }
    }
    let quasi = if a.quasi.is_empty() {
        Quasi::defaults()
    } else {
        Quasi::parse_list(&a.quasi).map_err(|e| e.to_string())?
    };
    let population = match &a.population {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the population table: {:?}", e.kind()))?,
        ),
        None => None,
    };
    let progress = crate::progress::Progress::new("veil risk", "files", quiet);
    let report = veil_risk::run_with(
        &a.out,
        &quasi,
        population.as_deref(),
        a.threshold,
        &|d, t| progress.tick(d, t),
    )
    .map_err(|e| e.to_string())?;
    progress.finish();
    if let Some(p) = &a.json {
        crate::out::report(p, report.to_json().as_bytes(), "JSON report")?;
    }
    if let Some(p) = &a.html {
        crate::out::report(p, report.to_html().as_bytes(), "HTML report")?;
    }
    crate::out::summary(&report.summary(), [&a.json, &a.html])?;
    Ok(report.exit_code())
}
