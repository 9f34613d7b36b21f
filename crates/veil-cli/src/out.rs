//! Where reports and summaries go, and `veil deid`'s claim on OUT. Every
//! flag that takes a report path (`deid --report`, `verify`/`risk`
//! `--json`/`--html`, `consent export --out`, `ledger export --out`,
//! `ledger checkpoint --out`) writes through [`report`], so `-` means
//! standard output everywhere and a special file (`/dev/stdout`, a FIFO, a
//! link) is written through, never replaced.

use std::path::Path;

/// Writes one report (see [`veil_io::atomic::write_report`]); `what` names
/// it in the error, with the path the user typed.
pub fn report(path: &Path, bytes: &[u8], what: &str) -> Result<(), String> {
    veil_io::atomic::write_report(path, bytes)
        .map_err(|e| format!("cannot write the {what} '{}': {e}", path.display()))
}

/// Prints the human summary: on standard output, unless a report went
/// there (`--json -`), which then stays parseable and the summary goes to
/// standard error.
pub fn summary<'a>(
    text: &str,
    reports: impl IntoIterator<Item = &'a Option<std::path::PathBuf>>,
) -> Result<(), String> {
    let to_stdout = reports
        .into_iter()
        .flatten()
        .any(|p| veil_io::atomic::is_stdout(p));
    if to_stdout {
        eprint!("{text}");
        Ok(())
    } else {
        crate::emit(text)
    }
}

/// Claims OUT for a `veil deid` run (see `veil_pipeline::outmark`): its
/// marker records this run's key id, recipe digest and options, and a run
/// with other ones is refused unless `force_new_key`. Call it holding
/// OUT's lock.
pub fn claim(
    out: &Path,
    recipe: Option<&Path>,
    policy: &veil_deid::Policy,
    force_new_key: bool,
) -> Result<(), String> {
    let text = match recipe {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| format!("cannot read the recipe '{}': {e}", p.display()))?,
        ),
        None => None,
    };
    let settings = veil_pipeline::outmark::Settings::of(policy, text.as_deref());
    veil_pipeline::outmark::claim(out, &settings, force_new_key).map_err(|e| e.to_string())
}
