//! `veil recipient ...` and `veil consent ...`: thin shells over
//! `veil_release::Site`.

use std::path::PathBuf;

use clap::Subcommand;
use veil_consent::{Actor, Decision, Provision, SiteDefault};
use veil_core::Phi;

use crate::{emit, site};

#[derive(Subcommand)]
pub enum RecipientCmd {
    /// Register a recipient; creates its own pseudonymization key (0600,
    /// never printed) under $VEIL_HOME/keys/.
    Add {
        /// Name (letters, digits, '.', '_', '-').
        name: String,
        /// A purpose it may receive data for (repeatable).
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// The recipe (TOML) its releases use.
        #[arg(long)]
        recipe: PathBuf,
        /// Days a staged output is kept before `veil retention run` deletes it.
        #[arg(long)]
        retention_days: u32,
        /// Category, for category-wide consent (e.g. ai-vendor).
        #[arg(long)]
        category: Option<String>,
        /// Contact (person, e-mail).
        #[arg(long)]
        contact: Option<String>,
        /// Postal address.
        #[arg(long)]
        address: Option<String>,
    },
    /// Replace a recipient's pseudonymization key: creates a new key file
    /// (0600, never printed) under $VEIL_HOME/keys/ and pins it in the
    /// ledger. The old key file is kept.
    RotateKey {
        /// The recipient.
        name: String,
    },
    /// List the recipients: name, category, purposes, recipe, retention.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one recipient's registration (never its key, only the key id).
    Show {
        /// The recipient.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a recipient's registration, pinned in the ledger. `--recipe`
    /// reads the TOML file again (the recipe is otherwise frozen at `add`).
    Update {
        /// The recipient.
        name: String,
        /// Read this recipe file again.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Its purposes, all of them (repeatable; replaces the list).
        #[arg(long = "purpose")]
        purposes: Vec<String>,
        /// Days a staged output is kept.
        #[arg(long)]
        retention_days: Option<u32>,
        /// Category ("" clears it).
        #[arg(long)]
        category: Option<String>,
        /// Contact ("" clears it).
        #[arg(long)]
        contact: Option<String>,
        /// Postal address ("" clears it).
        #[arg(long)]
        address: Option<String>,
    },
    /// Remove a recipient: it can receive nothing more; the ledger keeps
    /// every entry about it, and its name is not reused.
    Remove {
        /// The recipient.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Import FHIR R4/R5 Consent resources (a resource, a Bundle or an
    /// array). Append-only: a changed record becomes a new version, nothing
    /// is deleted; re-importing a file changes nothing.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// The system the file comes from: record ids are namespaced by it
        /// (SOURCE/ID), so two sources never overwrite each other.
        #[arg(long, default_value = "default")]
        source: String,
        /// Refuse a file larger than this (bytes).
        #[arg(long, default_value_t = veil_consent::Limits::default().max_bytes)]
        max_bytes: usize,
        /// Refuse a file with more resources than this.
        #[arg(long, default_value_t = veil_consent::Limits::default().max_resources)]
        max_resources: usize,
    },
    /// Export every consent record as a FHIR R4 Bundle (holds patient IDs:
    /// for the site's consent systems only).
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record a patient's permit or deny; a deny after releases is a
    /// withdrawal and lists the recipients to notify.
    Set {
        /// The PatientID.
        patient_id: String,
        /// Refuse release.
        #[arg(long, conflicts_with = "permit", required_unless_present = "permit")]
        deny: bool,
        /// Allow release.
        #[arg(long)]
        permit: bool,
        /// One recipient (default: any recipient).
        #[arg(long, conflicts_with = "category")]
        recipient: Option<String>,
        /// A recipient category.
        #[arg(long)]
        category: Option<String>,
        /// Purpose (default: any purpose).
        #[arg(long)]
        purpose: Option<String>,
        /// One study (StudyInstanceUID; default: all studies).
        #[arg(long)]
        study: Option<String>,
        /// Valid from (YYYY-MM-DD or RFC 3339; default: now).
        #[arg(long)]
        from: Option<String>,
        /// Valid until, inclusive (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Record it even though the recipient, category or purpose is not
        /// registered (yet): without it, an unknown one is an error.
        #[arg(long)]
        force: bool,
    },
    /// The site defaults and the consent provisions on record (all
    /// patients, or one). For staff: it shows patient IDs.
    List {
        /// Only this patient.
        #[arg(long)]
        patient_id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Once, after upgrading a store from before consent, site defaults and
    /// recipients were logged: log what it holds so releases can run.
    /// Refused once the ledger covers any of them.
    Adopt,
    /// Set the site default for a purpose: what happens when a patient has
    /// no applicable provision (unset = opt-in).
    Default {
        /// The purpose.
        purpose: String,
        /// opt-in or opt-out.
        #[arg(value_parser = ["opt-in", "opt-out"])]
        mode: String,
    },
}

pub fn recipient(db: Option<&str>, cmd: RecipientCmd) -> Result<i32, String> {
    match cmd {
        RecipientCmd::Add {
            name,
            purposes,
            recipe,
            retention_days,
            category,
            contact,
            address,
        } => {
            let mut s = site(db)?;
            let r = s
                .add_recipient(
                    &name,
                    category,
                    contact,
                    address,
                    purposes,
                    &recipe,
                    retention_days,
                )
                .map_err(|e| e.to_string())?;
            emit(&format!(
                "added recipient {} (purposes {}; recipe {}; retention {} days); its pseudonymization key was created (mode 0600), key id {}\n",
                r.name,
                r.purposes.join(", "),
                r.recipe_label,
                r.retention_days,
                r.key_id
            ))?;
            Ok(0)
        }
        RecipientCmd::List { json } => {
            let mut s = site(db)?;
            let rs = s.store.recipients().map_err(|e| e.to_string())?;
            if json {
                let v: Vec<_> = rs.iter().map(recipient_json).collect();
                emit(&(serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                let mut t = format!(
                    "{:<20} {:<14} {:<28} {:<20} {:>9}\n",
                    "NAME", "CATEGORY", "PURPOSES", "RECIPE", "RETENTION"
                );
                for r in &rs {
                    t.push_str(&format!(
                        "{:<20} {:<14} {:<28} {:<20} {:>4} days\n",
                        r.name,
                        r.category.as_deref().unwrap_or("-"),
                        r.purposes.join(","),
                        r.recipe_label,
                        r.retention_days
                    ));
                }
                t.push_str(&format!(
                    "{} recipient{}\n",
                    rs.len(),
                    if rs.len() == 1 { "" } else { "s" }
                ));
                emit(&t)?;
            }
            Ok(0)
        }
        RecipientCmd::Show { name, json } => {
            let mut s = site(db)?;
            let r = s
                .store
                .recipient(&name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no recipient named {name}"))?;
            if json {
                emit(
                    &(serde_json::to_string_pretty(&recipient_json(&r))
                        .map_err(|e| e.to_string())?
                        + "\n"),
                )?;
            } else {
                emit(&format!(
                    "name       {}\ncategory   {}\npurposes   {}\nrecipe     {}\nretention  {} days\ncontact    {}\naddress    {}\nkey id     {}\nkey file   {}\n",
                    r.name,
                    r.category.as_deref().unwrap_or("-"),
                    r.purposes.join(", "),
                    r.recipe_label,
                    r.retention_days,
                    r.contact.as_deref().unwrap_or("-"),
                    r.address.as_deref().unwrap_or("-"),
                    r.key_id,
                    r.key_file
                ))?;
            }
            Ok(0)
        }
        RecipientCmd::Update {
            name,
            recipe,
            purposes,
            retention_days,
            category,
            contact,
            address,
        } => {
            let mut s = site(db)?;
            let r = s
                .update_recipient(
                    &name,
                    veil_release::RecipientUpdate {
                        recipe,
                        purposes,
                        retention_days,
                        category,
                        contact,
                        address,
                    },
                )
                .map_err(|e| e.to_string())?;
            emit(&format!(
                "updated recipient {} (purposes {}; recipe {}; retention {} days); pinned in the ledger\n",
                r.name,
                r.purposes.join(", "),
                r.recipe_label,
                r.retention_days
            ))?;
            Ok(0)
        }
        RecipientCmd::Remove { name } => {
            let mut s = site(db)?;
            s.remove_recipient(&name).map_err(|e| e.to_string())?;
            emit(&format!(
                "removed recipient {name}: it can receive nothing more; the ledger keeps its history\n"
            ))?;
            Ok(0)
        }
        RecipientCmd::RotateKey { name } => {
            let mut s = site(db)?;
            let r = s.rotate_key(&name).map_err(|e| e.to_string())?;
            emit(&format!(
                "recipient {}: new pseudonymization key created (mode 0600) and pinned in the ledger, key id {}\n",
                r.name, r.key_id
            ))?;
            Ok(0)
        }
    }
}

pub fn consent(db: Option<&str>, cmd: ConsentCmd) -> Result<i32, String> {
    let mut s = site(db)?;
    match cmd {
        ConsentCmd::Import {
            file,
            source,
            max_bytes,
            max_resources,
        } => {
            let limits = veil_consent::Limits {
                max_bytes,
                max_resources,
                ..Default::default()
            };
            let text = read_bounded(&file, limits.max_bytes)?;
            let n = s
                .import_consents(&text, &source, &limits)
                .map_err(|e| e.to_string())?;
            emit(&format!(
                "imported {} consent records from source {source}: {} new versions, {} unchanged\n",
                n.records,
                n.new_versions,
                n.records - n.new_versions
            ))?;
            Ok(0)
        }
        ConsentCmd::Export { out } => {
            let v = s.export_consents().map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
            match out {
                Some(p) => crate::out::report(&p, text.as_bytes(), "export")?,
                None => emit(&text)?,
            }
            Ok(0)
        }
        ConsentCmd::Set {
            patient_id,
            deny,
            permit: _,
            recipient,
            category,
            purpose,
            study,
            from,
            until,
            force,
        } => {
            let time = |s: Option<String>, end: bool| -> Result<Option<String>, String> {
                s.map(|t| {
                    veil_consent::normalize_time(&t, end).ok_or_else(|| format!("not a date: {t}"))
                })
                .transpose()
            };
            let p = Provision {
                decision: if deny {
                    Decision::Deny
                } else {
                    Decision::Permit
                },
                actor: recipient
                    .map(Actor::Recipient)
                    .or(category.map(Actor::Category)),
                purpose,
                start: time(from, false)?,
                end: time(until, true)?,
                study_uid: study,
            };
            let what = p.describe();
            let notify = s
                .set_consent_checked(&Phi::new(patient_id), p, force)
                .map_err(|e| e.to_string())?;
            let mut text = format!("recorded: {what}\n");
            if deny {
                text.push_str(&notify_text(&notify));
            }
            emit(&text)?;
            Ok(0)
        }
        ConsentCmd::List { patient_id, json } => {
            let pid = patient_id.map(Phi::new);
            let l = s.consent_list(pid.as_ref()).map_err(|e| e.to_string())?;
            if json {
                let v = serde_json::json!({
                    "notice": "SITE-LOCAL: lists patient IDs.",
                    "defaults": l.defaults.iter().map(|(p, m)| serde_json::json!({"purpose": p, "mode": m})).collect::<Vec<_>>(),
                    "consents": l.consents.iter().map(|c| serde_json::json!({
                        "id": c.id,
                        "patient_id": c.patient_id.expose(),
                        "status": c.status,
                        "date_time": c.date_time,
                        "provisions": c.provisions,
                    })).collect::<Vec<_>>(),
                });
                emit(&(serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                let mut t = String::from("site defaults (when no provision applies):\n");
                if l.defaults.is_empty() {
                    t.push_str("  none set: every purpose is opt-in\n");
                }
                for (p, m) in &l.defaults {
                    t.push_str(&format!("  {p:<20} {m}\n"));
                }
                let n = l.consents.len();
                t.push_str(&format!(
                    "{n} consent record{}:\n",
                    if n == 1 { "" } else { "s" }
                ));
                for c in &l.consents {
                    t.push_str(&format!(
                        "  {} patient {} ({})\n",
                        c.id,
                        c.patient_id.expose(),
                        c.status
                    ));
                    for p in &c.provisions {
                        let mut line = format!("    {}", p.describe());
                        if let Some(st) = &p.start {
                            line.push_str(&format!(", from {st}"));
                        }
                        if let Some(en) = &p.end {
                            line.push_str(&format!(", until {en}"));
                        }
                        t.push_str(&line);
                        t.push('\n');
                    }
                }
                emit(&t)?;
            }
            Ok(0)
        }
        ConsentCmd::Adopt => {
            let (r, d, c) = s.adopt_unlogged().map_err(|e| e.to_string())?;
            emit(&format!(
                "logged {r} recipients, {d} site defaults and {c} consent versions that no ledger entry covered\n"
            ))?;
            Ok(0)
        }
        ConsentCmd::Default { purpose, mode } => {
            let d = SiteDefault::parse(&mode).ok_or("mode is opt-in or opt-out")?;
            s.set_default(&purpose, d).map_err(|e| e.to_string())?;
            emit(&format!("site default for {purpose}: {mode}\n"))?;
            Ok(0)
        }
    }
}

/// Reads a text file of at most `max` bytes, refusing a larger one before
/// reading it (and reading no more than `max + 1` bytes if it grows).
fn read_bounded(file: &std::path::Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let too_big = || format!("the consent file is larger than {max} bytes (--max-bytes)");
    let f = std::fs::File::open(file)
        .map_err(|e| format!("reading the consent file: {:?}", e.kind()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("reading the consent file: {:?}", e.kind()))?
        .len();
    if len > max as u64 {
        return Err(too_big());
    }
    let mut text = String::with_capacity(len as usize);
    f.take(max as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the consent file: {:?}", e.kind()))?;
    if text.len() > max {
        return Err(too_big());
    }
    Ok(text)
}

pub fn notify_text(notify: &[veil_release::Notify]) -> String {
    if notify.is_empty() {
        return "no past release is refused by the current consent: nobody to notify\n".into();
    }
    let mut t = String::from(
        "past recipients to notify (the current consent refuses what they received):\n",
    );
    for n in notify {
        t.push_str(&format!(
            "  {} ({}): {} studies for {}, last released {}; pseudonymous study UIDs: {}\n",
            n.recipient,
            n.contact.as_deref().unwrap_or("no contact registered"),
            n.studies,
            n.purpose,
            n.last_release,
            n.output_study_uids.join(" ")
        ));
    }
    t
}

/// A recipient as `recipient list|show --json` print it: the key id,
/// never the key; the recipe by label and digest, not its text.
fn recipient_json(r: &veil_consent::Recipient) -> serde_json::Value {
    serde_json::json!({
        "name": r.name,
        "category": r.category,
        "purposes": r.purposes,
        "recipe": r.recipe_label,
        "recipe_sha256": veil_release::sha256_hex(r.recipe_toml.as_bytes()),
        "retention_days": r.retention_days,
        "contact": r.contact,
        "address": r.address,
        "key_id": r.key_id,
        "key_file": r.key_file,
    })
}
