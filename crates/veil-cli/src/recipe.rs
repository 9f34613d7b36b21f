//! `veil recipe import`: a CTP anonymizer script or a deid recipe turned
//! into a Veil recipe. A thin shell over `veil_rules::import`, which does
//! the translation and writes the report.

use std::io::Write as _;
use std::path::PathBuf;

use veil_rules::import::{import, Format};

/// `veil recipe ...`.
#[derive(clap::Subcommand)]
pub enum RecipeCmd {
    /// Convert a CTP DicomAnonymizer script or the %header section of a
    /// pydicom/deid recipe into a Veil recipe. The report (on stderr, or
    /// on stdout with -o FILE) lists what was not expressed and where
    /// Veil's semantics differ. Exit 0 written, 1 not everything could be
    /// expressed (nothing written; see --allow-partial), 2 could not run.
    Import {
        /// The script or recipe to convert.
        file: PathBuf,
        /// Its format.
        #[arg(long = "from", value_name = "ctp|deid", value_parser = ["ctp", "deid"])]
        from: String,
        /// Write the recipe here (default or `-`: stdout).
        #[arg(short = 'o', long = "out", value_name = "recipe.toml")]
        out: Option<PathBuf>,
        /// Write the recipe even when some rules could not be expressed
        /// (they are listed in the report).
        #[arg(long)]
        allow_partial: bool,
    },
}

/// Runs `veil recipe`.
pub fn run(cmd: RecipeCmd) -> Result<i32, String> {
    let RecipeCmd::Import {
        file,
        from,
        out,
        allow_partial,
    } = cmd;
    let format = Format::from_name(&from).ok_or("--from must be ctp or deid")?;
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read '{}': {e}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let imported = import(format, &name, &text).map_err(|e| format!("{}: {e}", file.display()))?;
    let report = imported.report.to_text();
    let to_stdout = out.as_deref().is_none_or(|p| p.as_os_str() == "-");
    let partial = !imported.report.is_complete();
    if partial && !allow_partial {
        eprint!("{report}");
        eprintln!(
            "veil: {} rule(s) could not be expressed; nothing written. Rerun with \
             --allow-partial to write the recipe without them.",
            imported.report.not_expressed.len()
        );
        return Ok(1);
    }
    if to_stdout {
        crate::emit(&imported.toml)?;
        eprint!("{report}");
    } else if let Some(path) = &out {
        let mut f = veil_io::atomic::AtomicFile::create(path)
            .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
        f.writer()
            .write_all(imported.toml.as_bytes())
            .and_then(|()| f.commit())
            .map_err(|e| format!("cannot write '{}': {e}", path.display()))?;
        crate::emit(&report)?;
    }
    Ok(0)
}
