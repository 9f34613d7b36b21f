//! `veil pull --config veil.toml --route R --accession-list FILE`: a
//! research request. Parses and prints; crate veil-serve does the work
//! (and documents why the studies go through the running `veil serve`).
//!
//! Accession numbers are PHI: stdout carries counts only, and the one
//! place that names them is the site-local `--report` (mode 0600).

use std::io::Write;
use std::path::Path;

use veil_serve::AccessionOutcome;

use crate::exit;

/// Runs the request; the exit status follows the README's table: 2 when
/// nothing was asked (configuration, list, report path, or a PACS that
/// cannot be queried), 1 when an accession number was not found or a
/// study or instance was not moved (a person looks at the report), else 0.
pub fn pull(config: &Path, route: &str, list: &Path, report: Option<&Path>) -> Result<i32, String> {
    let cfg = veil_gateway::Config::load(config).map_err(|e| e.to_string())?;
    let accessions = veil_serve::read_accession_list(list).map_err(|e| e.to_string())?;
    // a report path that cannot be written stops the request before the
    // PACS is asked (probed where the report will be replaced; `-`, links,
    // FIFOs and devices are written through, see veil_io::atomic::write_report)
    if let Some(p) = report.filter(|p| {
        !veil_io::atomic::is_stdout(p) && std::fs::symlink_metadata(p).map_or(true, |m| m.is_file())
    }) {
        drop(
            veil_io::atomic::AtomicFile::create_private(p)
                .map_err(|e| format!("--report: cannot write it ({:?})", e.kind()))?,
        );
    }
    let out = veil_serve::pull(&cfg, route, &accessions).map_err(|e| e.to_string())?;
    if let Some(p) = report {
        let mut bytes = Vec::new();
        write_report(&mut bytes, &out)
            .and_then(|()| veil_io::atomic::write_report(p, &bytes))
            .map_err(|e| format!("--report: cannot write it ({:?})", e.kind()))?;
    }
    let s = Summary::of(&out);
    crate::out::summary(
        &format!(
            "accessions {}: found {}, not found {}\nstudies found {}: moved {}, move failed {}\n\
         instances moved {}, failed {}\n\
         `veil serve` decides and delivers the moved studies (`veil queue status`, the ledger).\n",
            out.len(),
            s.found,
            out.len() - s.found,
            s.studies,
            s.moved,
            s.move_failed,
            s.instances,
            s.instances_failed,
        ),
        [&report.map(Path::to_path_buf)],
    )?;
    tracing::info!(
        accessions = out.len(),
        found = s.found,
        studies = s.studies,
        moved = s.moved,
        instances = s.instances,
        "veil pull: done"
    );
    Ok(
        if s.found < out.len() || s.move_failed > 0 || s.instances_failed > 0 {
            exit::ATTENTION
        } else {
            exit::OK
        },
    )
}

/// Totals over every accession number.
struct Summary {
    found: usize,
    studies: usize,
    moved: usize,
    move_failed: usize,
    instances: u64,
    instances_failed: u64,
}

impl Summary {
    fn of(out: &[AccessionOutcome]) -> Summary {
        Summary {
            found: out.iter().filter(|o| o.studies_found > 0).count(),
            studies: out.iter().map(|o| o.studies_found).sum(),
            moved: out.iter().map(|o| o.studies_moved).sum(),
            move_failed: out.iter().map(|o| o.studies_failed).sum(),
            instances: out.iter().map(|o| o.instances_moved).sum(),
            instances_failed: out.iter().map(|o| o.instances_failed).sum(),
        }
    }
}

/// One tab-separated line per accession number, under a header.
fn write_report(w: &mut dyn Write, out: &[AccessionOutcome]) -> std::io::Result<()> {
    writeln!(
        w,
        "accession\tresult\tstudies_found\tstudies_moved\tstudies_failed\tinstances_moved\tinstances_failed"
    )?;
    for o in out {
        let result = if o.studies_found == 0 {
            "not-found"
        } else if o.studies_failed > 0 || o.instances_failed > 0 {
            "partly-moved"
        } else {
            "moved"
        };
        writeln!(
            w,
            "{}\t{result}\t{}\t{}\t{}\t{}\t{}",
            o.accession,
            o.studies_found,
            o.studies_moved,
            o.studies_failed,
            o.instances_moved,
            o.instances_failed
        )?;
    }
    Ok(())
}
