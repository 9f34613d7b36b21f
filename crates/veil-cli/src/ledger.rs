//! `veil ledger ...`: thin shells over `veil_release::Site`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::{emit, site};

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Check every entry and every signed checkpoint; names the first bad
    /// position. Exit 0 intact, 1 tampered.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign the current tree head (copy the printed note off-site).
    Checkpoint,
    /// Export the entries as audit messages.
    Export {
        /// dicom (PS3.15 A.5 XML) or fhir (R4 AuditEvent Bundle, JSON).
        #[arg(long, value_parser = ["dicom", "fhir"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn ledger(db: Option<&str>, cmd: LedgerCmd) -> Result<i32, String> {
    let mut s = site(db)?;
    match cmd {
        LedgerCmd::Verify { json } => {
            let r = s.verify_ledger().map_err(|e| e.to_string())?;
            if json {
                emit(&(serde_json::to_string_pretty(&r).map_err(|e| e.to_string())? + "\n"))?;
            } else if r.ok {
                emit(&format!(
                    "ledger OK: {} entries, root {}, every signed tree head valid; {} checkpoints consistent{}\n",
                    r.entries,
                    r.root,
                    r.checkpoints_checked,
                    match &r.latest_checkpoint {
                        Some(c) => format!(" (latest: size {} signed {})", c.size, c.time),
                        None => " (none yet: run `veil ledger checkpoint`)".into(),
                    }
                ))?;
            } else {
                let mut t = format!(
                    "ledger TAMPERED: first bad position {} ({} entries read)\n",
                    r.first_bad_position.unwrap_or(0),
                    r.entries
                );
                for p in &r.problems {
                    t.push_str(&format!("  position {}: {}\n", p.position, p.what));
                }
                emit(&t)?;
            }
            Ok(if r.ok { 0 } else { 1 })
        }
        LedgerCmd::Checkpoint => match s.checkpoint().map_err(|e| e.to_string())? {
            Ok(c) => {
                emit(&c.note())?;
                Ok(0)
            }
            Err(r) => {
                emit(&format!(
                    "not signed: the ledger does not verify (first bad position {}); run `veil ledger verify`\n",
                    r.first_bad_position.unwrap_or(0)
                ))?;
                Ok(1)
            }
        },
        LedgerCmd::Export { format, out } => {
            let entries = s.entries().map_err(|e| e.to_string())?;
            let text = if format == "dicom" {
                veil_ledger::audit::dicom_audit_messages(&entries)
            } else {
                serde_json::to_string_pretty(&veil_ledger::audit::fhir_audit_bundle(&entries))
                    .map_err(|e| e.to_string())?
                    + "\n"
            };
            match out {
                Some(p) => veil_io::atomic::write_private(&p, text.as_bytes())
                    .map_err(|e| format!("writing the export: {:?}", e.kind()))?,
                None => emit(&text)?,
            }
            Ok(0)
        }
    }
}
