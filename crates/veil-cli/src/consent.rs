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
}

#[derive(Subcommand)]
pub enum ConsentCmd {
    /// Import FHIR R4/R5 Consent resources (a resource, a Bundle or an array).
    Import {
        /// The JSON file.
        file: PathBuf,
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
    },
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
    }
}

pub fn consent(db: Option<&str>, cmd: ConsentCmd) -> Result<i32, String> {
    let mut s = site(db)?;
    match cmd {
        ConsentCmd::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading the consent file: {:?}", e.kind()))?;
            let n = s.import_consents(&text).map_err(|e| e.to_string())?;
            emit(&format!("imported {n} consent records\n"))?;
            Ok(0)
        }
        ConsentCmd::Export { out } => {
            let v = s.export_consents().map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n";
            match out {
                Some(p) => veil_io::atomic::write_private(&p, text.as_bytes())
                    .map_err(|e| format!("writing the export: {:?}", e.kind()))?,
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
                .set_consent(&Phi::new(patient_id), p)
                .map_err(|e| e.to_string())?;
            let mut text = format!("recorded: {what}\n");
            if deny {
                text.push_str(&notify_text(&notify));
            }
            emit(&text)?;
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
