//! `veil ledger ...`: thin shells over `veil_release::Site`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::{emit, site};

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Check every entry and every signed checkpoint; names the first bad
    /// position. Exit 0 intact, 1 tampered, 2 could not run.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Checkpoint notes kept outside the site (`ledger checkpoint
        /// --out`): the log must still contain each one, so a truncated,
        /// forked or rewritten log fails even when the stored checkpoints
        /// were deleted with it.
        #[arg(long = "checkpoint", value_name = "FILE", num_args = 1..)]
        checkpoints: Vec<PathBuf>,
        /// Trust only this verifier key (the line `veil ledger pubkey`
        /// printed, or a file holding it) instead of the site's ledger key;
        /// no key file is read. What an auditor runs.
        #[arg(long, value_name = "KEY|FILE")]
        pubkey: Option<String>,
    },
    /// Sign the current tree head as a C2SP checkpoint note (copy it
    /// off-site: a second host, a witness, paper).
    Checkpoint {
        /// Write the note to this file (atomically) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print what an independent party needs to check that entry N is in
    /// the signed log: the entry as hashed, its inclusion proof, the latest
    /// checkpoint note and the verifier key (docs/ledger.md, "Checking a
    /// proof yourself"). Reads only; a position after the latest
    /// checkpoint needs `veil ledger checkpoint` first.
    Proof {
        /// The entry's position (0-based).
        #[arg(long, value_name = "N")]
        position: u64,
        /// Print the bundle as JSON (what the portal's proof.js reads).
        #[arg(long)]
        json: bool,
    },
    /// Print the ledger's verifier key (`NAME+KEYID+BASE64`), which checks
    /// its checkpoint notes and its log. Public: give it to auditors.
    Pubkey,
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
    // an auditor's check opens the database only: no key file is needed
    if let LedgerCmd::Verify {
        json,
        checkpoints,
        pubkey: Some(k),
    } = &cmd
    {
        let v = read_pubkey(k)?;
        let notes = read_notes(checkpoints)?;
        let mut store =
            veil_store::Store::open(db, &veil_store::default_home()).map_err(|e| e.to_string())?;
        let r = veil_release::verify_store(&mut store, &notes, &v).map_err(|e| e.to_string())?;
        return report(&r, *json);
    }
    let mut s = site(db)?;
    match cmd {
        LedgerCmd::Verify {
            json, checkpoints, ..
        } => {
            let notes = read_notes(&checkpoints)?;
            let r = s.verify_ledger_against(&notes).map_err(|e| e.to_string())?;
            report(&r, json)
        }
        LedgerCmd::Checkpoint { out } => match s.checkpoint().map_err(|e| e.to_string())? {
            Ok(c) => {
                let note = c.note(s.ledger_verifier().key());
                match out {
                    Some(p) => {
                        crate::out::report(&p, note.as_bytes(), "checkpoint note")?;
                        crate::out::summary(
                            &format!(
                                "checkpoint of {} entries, root {}, written to {}\n",
                                c.size,
                                c.root,
                                p.display()
                            ),
                            [&Some(p.clone())],
                        )?;
                    }
                    None => emit(&note)?,
                }
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
        LedgerCmd::Proof { position, json } => {
            use veil_ledger::ProofError;
            match s.proof(position).map_err(|e| e.to_string())? {
                Ok(b) => {
                    if json {
                        emit(
                            &(serde_json::to_string_pretty(&b).map_err(|e| e.to_string())? + "\n"),
                        )?;
                    } else {
                        emit(&proof_text(&b))?;
                    }
                    Ok(crate::exit::OK)
                }
                // the log or its checkpoint fails its own signatures: a
                // finding for a person, as `ledger verify` reports it
                Err(e @ (ProofError::LogMismatch(_) | ProofError::BadCheckpoint(_))) => {
                    crate::logging::error(&e.to_string());
                    Ok(crate::exit::ATTENTION)
                }
                // nothing to prove yet, or no such entry: could not run
                Err(e) => Err(e.to_string()),
            }
        }
        LedgerCmd::Pubkey => {
            emit(&format!("{}\n", s.ledger_verifier()))?;
            Ok(0)
        }
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
                Some(p) => crate::out::report(&p, text.as_bytes(), "export")?,
                None => emit(&text)?,
            }
            Ok(0)
        }
    }
}

/// The bundle for a reader: the same fields as the JSON, each labelled.
fn proof_text(b: &veil_ledger::ProofBundle) -> String {
    let mut t = format!(
        "entry {} of the {} entries covered by the latest checkpoint\n\
         leaf (SHA-256 of 0x00 and these bytes):\n  {}\n\
         root: {}\n\
         inclusion proof ({} hashes, leaf to root):\n",
        b.index,
        b.tree_size,
        b.leaf,
        b.root,
        b.proof.len()
    );
    for h in &b.proof {
        t.push_str(&format!("  {h}\n"));
    }
    t.push_str(&format!(
        "checkpoint note:\n{}verifier key: {}\n",
        b.checkpoint, b.verifier_key
    ));
    t
}

/// Prints a verification report; exit 0 intact, 1 tampered.
fn report(r: &veil_ledger::VerifyReport, json: bool) -> Result<i32, String> {
    if json {
        emit(&(serde_json::to_string_pretty(r).map_err(|e| e.to_string())? + "\n"))?;
    } else if r.ok {
        emit(&format!(
            "ledger OK: {} entries, root {}, every signed tree head valid; {} checkpoints consistent{}{}\n",
            r.entries,
            r.root,
            r.checkpoints_checked,
            match &r.latest_checkpoint {
                Some(c) => format!(" (latest: size {} signed {})", c.size, c.time),
                None => " (none yet: run `veil ledger checkpoint`)".into(),
            },
            match r.notes_checked {
                0 => String::new(),
                n => format!("; {n} checkpoint notes matched"),
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

/// Reads the checkpoint notes named on the command line (at most
/// [`veil_ledger::note::MAX_NOTE_BYTES`] each); a file that is not a
/// signed note cannot be checked: exit 2, naming it.
fn read_notes(paths: &[PathBuf]) -> Result<Vec<veil_ledger::ExternalNote>, String> {
    paths
        .iter()
        .map(|p| {
            let bytes = read_small(p, veil_ledger::note::MAX_NOTE_BYTES)
                .map_err(|e| format!("checkpoint note {}: {e}", p.display()))?;
            let note = veil_ledger::SignedNote::parse(&bytes)
                .map_err(|e| format!("checkpoint note {}: {e}", p.display()))?;
            Ok(veil_ledger::ExternalNote {
                label: p.display().to_string(),
                note,
            })
        })
        .collect()
}

/// `--pubkey`: a file holding a verifier key, or the key itself.
fn read_pubkey(arg: &str) -> Result<veil_ledger::NoteVerifier, String> {
    let p = std::path::Path::new(arg);
    let text = if p.is_file() {
        let b = read_small(p, 4096).map_err(|e| format!("--pubkey {arg}: {e}"))?;
        String::from_utf8(b).map_err(|_| format!("--pubkey {arg}: not text"))?
    } else {
        arg.to_string()
    };
    veil_ledger::NoteVerifier::parse(&text).map_err(|e| format!("--pubkey: {e}"))
}

/// Reads at most `max` bytes; a larger file is refused, not truncated.
fn read_small(p: &std::path::Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read it: {:?}", e.kind()))?;
    let mut b = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut b)
        .map_err(|e| format!("cannot read it: {:?}", e.kind()))?;
    if b.len() > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(b)
}
