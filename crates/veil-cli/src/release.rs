//! `veil release`, `veil disclosures`, `veil retention run`: thin shells
//! over `veil_release::Site`.

use std::path::PathBuf;

use veil_core::Phi;

use crate::{emit, site};

#[derive(clap::Args)]
pub struct ReleaseArgs {
    /// The recipient (see `veil recipient add`).
    #[arg(long, required_unless_present = "recover")]
    recipient: Option<String>,
    /// The purpose of use (must be registered for the recipient).
    #[arg(long, required_unless_present = "recover")]
    purpose: Option<String>,
    /// Input files or folders (recursive).
    #[arg(required_unless_present = "recover")]
    inputs: Vec<PathBuf>,
    /// Output folder: new or empty (OUT/manifest.json is written there).
    /// The release is staged in `.OUT.veil-release` beside it.
    #[arg(long)]
    out: PathBuf,
    /// Only finish what an interrupted release into OUT left: publish what
    /// the ledger logged, discard the rest (every release does this first).
    #[arg(long, conflicts_with_all = ["recipient", "purpose", "inputs"])]
    recover: bool,
    /// Who runs it, for the ledger (default: $USER).
    #[arg(long)]
    operator: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Show the decisions (studies per reason) without de-identifying,
    /// writing or logging anything.
    #[arg(long, conflicts_with = "recover")]
    dry_run: bool,
}

pub fn release(db: Option<&str>, a: ReleaseArgs, quiet: bool) -> Result<i32, String> {
    if a.recover {
        let mut s = site(db)?;
        let r = s.recover(&a.out).map_err(|e| e.to_string())?;
        let ids: Vec<&str> = r.published.iter().map(|p| p.release_id.as_str()).collect();
        emit(&format!(
            "veil release --recover: {} interrupted releases published{}, {} never logged discarded\n",
            ids.len(),
            if ids.is_empty() { String::new() } else { format!(" ({})", ids.join(", ")) },
            r.discarded
        ))?;
        return Ok(0);
    }
    let (Some(recipient), Some(purpose)) = (a.recipient, a.purpose) else {
        return Err("give --recipient and --purpose".into());
    };
    for i in &a.inputs {
        if crate::inside(&a.out, i) {
            return Err("OUT must not be inside an input folder".into());
        }
    }
    if a.dry_run {
        let mut s = site(db)?;
        let req = veil_release::ReleaseRequest {
            recipient,
            purpose,
            inputs: a.inputs,
            out: a.out,
            operator: a.operator,
            jobs: a.jobs.unwrap_or_else(crate::cores),
        };
        let d = s.release_dry_run(&req).map_err(|e| e.to_string())?;
        if a.json {
            emit(&(serde_json::to_string_pretty(&d).map_err(|e| e.to_string())? + "\n"))?;
        } else {
            emit(&format!("{}\n", d.line()))?;
        }
        return Ok(0);
    }
    // one writer per OUT, as for `veil deid`
    let _lock = match crate::lock_out(&a.out) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let mut s = site(db)?;
    let jobs = a.jobs.unwrap_or_else(crate::cores);
    // every released study is verified against its own sources (veil
    // verify, no OCR) where it is staged, before it is logged; findings
    // keep the study out of the release (fail closed)
    let verifier = |root: &std::path::Path, sources: &[PathBuf], files: &[PathBuf]| {
        veil_release::VerifyOutcome::from_check(veil_verify::set::release_check(
            root, sources, files, jobs,
        ))
    };
    let req = veil_release::ReleaseRequest {
        recipient,
        purpose,
        inputs: a.inputs,
        out: a.out,
        operator: a.operator,
        jobs,
    };
    let progress = crate::progress::Progress::new("veil release", "studies", quiet);
    let sum = s
        .release_with(&req, Some(&verifier), &|d, t| progress.tick(d, t))
        .map_err(|e| e.to_string())?;
    progress.finish();
    if a.json {
        emit(&(serde_json::to_string_pretty(&sum).map_err(|e| e.to_string())? + "\n"))?;
    } else {
        emit(&format!("{}\n", sum.line()))?;
    }
    Ok(sum.exit_code())
}

pub fn disclosures(db: Option<&str>, patient_id: String, json: bool) -> Result<i32, String> {
    let mut s = site(db)?;
    let d = s
        .disclosures(&Phi::new(patient_id))
        .map_err(|e| e.to_string())?;
    let all_ok = d.head_signature_ok && d.entries.iter().all(|e| e.proof_ok);
    if json {
        emit(&(serde_json::to_string_pretty(&d).map_err(|e| e.to_string())? + "\n"))?;
    } else {
        let mut t = format!(
            "patient ref {}: {} ledger entries (log of {} entries, root {}, signed head {})\n",
            d.patient_ref,
            d.entries.len(),
            d.tree_size,
            &d.root[..16],
            if d.head_signature_ok {
                "valid"
            } else {
                "INVALID"
            }
        );
        t.push_str(&format!(
            "{:<5} {:<20} {:<17} {:<16} {:<14} {:>9}  {:<12} {}\n",
            "POS", "TIME", "EVENT", "RECIPIENT", "PURPOSE", "INSTANCES", "VERIFY", "PROOF"
        ));
        for e in &d.entries {
            let ev = serde_json::to_value(e.entry.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            t.push_str(&format!(
                "{:<5} {:<20} {:<17} {:<16} {:<14} {:>9}  {:<12} {}\n",
                e.position,
                e.entry.time,
                ev,
                e.entry.recipient,
                e.entry.purpose,
                e.entry.instances,
                e.entry.verification,
                if e.proof_ok { "ok" } else { "FAILED" }
            ));
        }
        t.push_str(&crate::consent::notify_text(&d.notify));
        emit(&t)?;
    }
    Ok(if all_ok { 0 } else { 1 })
}

use veil_core::count;

pub fn retention(db: Option<&str>, now: Option<String>) -> Result<i32, String> {
    let mut s = site(db)?;
    let now = match now {
        Some(t) => veil_consent::normalize_time(&t, false).ok_or("--now: not a date")?,
        None => veil_consent::now(),
    };
    let r = s.retention_run(&now).map_err(|e| e.to_string())?;
    let mut t = format!(
        "veil retention run: {} past retention deleted ({}); ledger entries {:?}\n",
        count(r.studies_deleted, "staged study", "staged studies"),
        count(r.files_deleted, "file", "files"),
        r.ledger_positions
    );
    if r.files_changed > 0 {
        t.push_str(&format!(
            "{} kept (changed since it was released)\n",
            count(r.files_changed, "released file", "released files")
        ));
    }
    for why in &r.refused {
        t.push_str(&format!("not deleted, {why}\n"));
    }
    emit(&t)?;
    // 1: something due was not deleted, and someone should look at why
    Ok(if r.refused.is_empty() && r.files_changed == 0 {
        0
    } else {
        1
    })
}
