//! `veil verify`: flags → `veil_verify::verify_tree` → report files and a
//! summary line.

use std::path::PathBuf;

use veil_verify::{Options, VerifyPolicy};

/// `veil verify OUT [--source INPUT]... [--pixels] [--policy FILE]
/// [--json FILE] [--html FILE] [--faces] [--site-local] [--strict]`
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The released folder to check.
    out: PathBuf,
    /// The original files or folders (repeatable). Without them only the
    /// pattern detectors and structure checks run.
    #[arg(long = "source")]
    sources: Vec<PathBuf>,
    /// Also read every frame and overlay with OCR.
    #[arg(long)]
    pixels: bool,
    /// Verification policy (TOML): categories that only warn or are
    /// ignored, accepted places.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Also run the pattern detectors when sources are given.
    #[arg(long)]
    patterns: bool,
    /// Run dciodvfy on each output and its source; report new errors.
    #[arg(long)]
    dciodvfy: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Also check head volumes (NIfTI files, CT/MR series) for a face that
    /// can still be rendered from them.
    #[arg(long)]
    faces: bool,
    /// Quote the text around each finding (found values masked) in the
    /// reports. Such a report can identify patients: it says so in its
    /// header and must stay at the site. Without this flag a finding names
    /// only its category, length and place.
    #[arg(long)]
    site_local: bool,
    /// With --source: an output that pairs with no source fails (exit 1)
    /// instead of warning. Such an output is searched with the patterns and
    /// name lists, but its own source's dates and name words could not be
    /// looked for.
    #[arg(long)]
    strict: bool,
}

/// Runs the command; the exit status is the report's.
pub fn run(a: VerifyArgs, quiet: bool) -> Result<i32, String> {
    if !a.out.is_dir() {
        return Err("OUT is not a folder".into());
    }
    let mut policy = match &a.policy {
        Some(p) => VerifyPolicy::load(p)?,
        None => VerifyPolicy::default(),
    };
    policy.strict |= a.strict;
    let opts = Options {
        out: a.out,
        sources: a.sources,
        policy,
        jobs: a.jobs.unwrap_or_else(crate::cores),
        dciodvfy: a.dciodvfy,
        patterns: a.patterns,
        pixels: a.pixels,
        faces: a.faces,
        site_local: a.site_local,
    };
    let progress = crate::progress::Progress::new("veil verify", "files", quiet);
    let report = veil_verify::verify_tree_with(&opts, &|d, t| progress.tick(d, t))
        .map_err(|e| format!("{e}"))?;
    progress.finish();
    tracing::info!(
        files = report.summary.files,
        failing = report.summary.failing,
        unpaired = report.summary.unpaired,
        "verify: done"
    );
    if let Some(p) = &a.json {
        crate::out::report(p, report.to_json().as_bytes(), "JSON report")?;
    }
    if let Some(p) = &a.html {
        crate::out::report(p, report.to_html().as_bytes(), "HTML report")?;
    }
    crate::out::summary(&format!("{}\n", report.summary_line()), [&a.json, &a.html])?;
    Ok(report.exit_code())
}
