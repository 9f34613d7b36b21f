//! Where reports and summaries go. Every flag that takes a report path
//! (`deid --report`, `verify`/`risk` `--json`/`--html`, `consent export
//! --out`, `ledger export --out`, `ledger checkpoint --out`) writes through
//! [`report`], so `-` means standard output everywhere and a special file
//! (`/dev/stdout`, a FIFO, a link) is written through, never replaced.

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
