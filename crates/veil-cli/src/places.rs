//! `veil deid` from or to object storage (`s3://bucket/prefix`): a thin
//! shell over `veil_pipeline::places`, taken when an input, OUT or the
//! review folder is an `s3://` location.

use std::path::{Path, PathBuf};

use veil_io::place::{Inputs, Root};

use crate::{logging, out, progress};

/// Whether a command-line location is in object storage.
pub fn is_remote(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// What `veil deid` was given, for the object-storage driver.
pub struct Args<'a> {
    pub inputs: &'a [PathBuf],
    pub out: &'a Path,
    pub review: &'a Path,
    pub jobs: usize,
    pub report: Option<&'a Path>,
    pub recipe: Option<&'a Path>,
    pub force_new_key: bool,
    pub quiet: bool,
}

fn loc(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| "an s3:// run needs UTF-8 locations".to_string())
}

/// Runs the batch; returns the exit status.
pub fn deid(policy: &veil_deid::Policy, a: Args<'_>) -> Result<i32, String> {
    let [input] = a.inputs else {
        return Err("with s3:// locations, give one input (a folder, file or s3:// prefix)".into());
    };
    let inputs = Inputs::open(loc(input)?).map_err(|e| format!("input: {e}"))?;
    let out_root = Root::open(loc(a.out)?).map_err(|e| format!("OUT: {e}"))?;
    let review = Root::open(loc(a.review)?).map_err(|e| format!("review: {e}"))?;
    let text = match a.recipe {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| format!("cannot read the recipe '{}': {e}", p.display()))?,
        ),
        None => None,
    };
    let settings = veil_pipeline::outmark::Settings::of(policy, text.as_deref());
    // a local OUT is locked and claimed as in a local run
    let _lock = if out_root.is_s3() {
        veil_pipeline::places::claim(&out_root, &settings, a.force_new_key)?;
        None
    } else {
        let l = veil_io::lock::OutLock::acquire(a.out)
            .map_err(|e| format!("the output folder is in use: {e}"))?;
        veil_pipeline::outmark::claim(a.out, &settings, a.force_new_key)
            .map_err(|e| e.to_string())?;
        Some(l)
    };
    let progress = progress::Progress::new("veil deid", "files", a.quiet);
    let tick = |done: usize, total: usize| progress.tick(done, total);
    let batch = veil_pipeline::places::PlacedBatch {
        inputs: &inputs,
        out: &out_root,
        review: &review,
        jobs: a.jobs,
        policy,
    };
    let rep = batch.run(&tick).map_err(|e| e.to_string())?;
    progress.finish();
    let out_name = if out_root.is_s3() {
        PathBuf::from(loc(a.out)?)
    } else {
        std::path::absolute(a.out).map_err(|e| e.to_string())?
    };
    let held = rep.files.iter().filter_map(|f| match &f.outcome {
        veil_pipeline::Outcome::Review { output, reason } => Some((output, reason)),
        _ => None,
    });
    veil_pipeline::places::record_review(&review, out_name, &settings, held)
        .map_err(|e| format!("cannot write the review index: {e}"))?;
    if let Some(r) = a.report {
        let json = serde_json::to_vec_pretty(&rep).map_err(|e| e.to_string())?;
        veil_io::atomic::write_report(r, &json)
            .map_err(|e| format!("cannot write the report: {:?}", e.kind()))?;
    }
    let report = a.report.map(Path::to_path_buf);
    out::summary(&format!("{}\n", rep.summary()), [&report])?;
    if rep.counts.quarantined > 0 && a.report.is_none() {
        logging::notice("some files were quarantined; pass --report FILE to see which and why");
    }
    Ok(rep.exit_code())
}
