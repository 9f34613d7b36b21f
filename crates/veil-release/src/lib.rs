//! `veil release` and the commands around it: recipients, consent, the
//! ledger, disclosures, retention.
//!
//! Why one orchestration crate: a release touches everything (the store,
//! the consent rule, the de-identification engine, the ledger), and the
//! command line must stay a thin shell. Everything a command does is a
//! method of [`Site`], so the tests drive exactly what users run.
//!
//! Nothing here prints, logs or writes PHI outside the site's own store:
//! patients and input studies appear in the ledger only as keyed hashes
//! ([`Site::patient_ref`]), outputs are named from pseudonyms, summaries
//! carry counts, and errors name files by role, not by path.

mod publish;
mod release;

use std::path::{Path, PathBuf};

use serde::Serialize;
use veil_consent::{Consent, Decision, Provision, Recipient, Request, SiteDefault};
use veil_core::Phi;
use veil_deid::Key;
use veil_ledger::{merkle, Checkpoint, Entry, Event, LedgerKey, StoredRow};
use veil_store::{Store, StoreError};

pub use release::{Recovery, ReleaseRequest, ReleaseSummary, Verifier, VerifyOutcome};

/// Errors. None carries a patient identifier or an input path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key file.
    #[error("{0}")]
    Key(String),
    /// A request that cannot run (unknown recipient, bad recipe, ...).
    #[error("{0}")]
    Invalid(String),
    /// File system.
    #[error("{what}: {kind:?}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error kind (no path).
        kind: std::io::ErrorKind,
    },
}

impl Error {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |e| Error::Io {
            what,
            kind: e.kind(),
        }
    }
}

/// The site: its store, its ledger signing key and its HMAC key.
pub struct Site {
    /// The store.
    pub store: Store,
    home: PathBuf,
    ledger_key: LedgerKey,
    site_key: Key,
}

/// A past disclosure a withdrawal concerns.
#[derive(Debug, Clone, Serialize)]
pub struct Notify {
    /// Recipient.
    pub recipient: String,
    /// Its contact, if registered.
    pub contact: Option<String>,
    /// Purpose of the releases.
    pub purpose: String,
    /// Studies released to it.
    pub studies: usize,
    /// Date of the latest.
    pub last_release: String,
    /// The pseudonymous study UIDs it holds (so it can find and delete them).
    pub output_study_uids: Vec<String>,
}

/// One disclosure (or refusal, or deletion) of a patient's data.
#[derive(Debug, Clone, Serialize)]
pub struct Disclosure {
    /// Ledger position.
    pub position: u64,
    /// The entry.
    pub entry: Entry,
    /// The inclusion proof (hex), from the entry to the signed head.
    pub proof: Vec<String>,
    /// True when the proof checks against the signed tree head.
    pub proof_ok: bool,
}

/// `veil disclosures` output.
#[derive(Debug, Clone, Serialize)]
pub struct Disclosures {
    /// The keyed patient reference (not the ID).
    pub patient_ref: String,
    /// Tree size the proofs are against.
    pub tree_size: u64,
    /// Root (hex) the proofs are against.
    pub root: String,
    /// Whether the signed tree head the proofs rest on is valid.
    pub head_signature_ok: bool,
    /// Entries about the patient, in order.
    pub entries: Vec<Disclosure>,
    /// Past recipients whose releases the current consent would now refuse.
    pub notify: Vec<Notify>,
}

/// `veil retention run` output.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionSummary {
    /// Staged studies deleted.
    pub studies_deleted: usize,
    /// Files deleted.
    pub files_deleted: usize,
    /// Released files left in place because their content is no longer
    /// what was released (their SHA-256 differs from the signed one).
    pub files_changed: usize,
    /// Staged studies not touched because nothing ties their folder or
    /// files to the signed release (a database edit, a copied folder, ...):
    /// each with its reason. They stay due.
    pub refused: Vec<String>,
    /// Ledger positions of the deletion entries.
    pub ledger_positions: Vec<u64>,
}

impl Site {
    /// Opens (creating on first use) `$VEIL_HOME` and the store, the ledger
    /// signing key (`ledger.key`, Ed25519) and the site HMAC key
    /// (`site.key`), both 0600.
    pub fn open(db_url: Option<&str>, home: &Path) -> Result<Site, Error> {
        let store = Store::open(db_url, home)?;
        let ledger_key = LedgerKey::load_or_create(&home.join("ledger.key"))
            .map_err(|e| Error::Key(e.to_string()))?;
        let sk = home.join("site.key");
        let site_key = if sk.exists() {
            Key::load(&sk)
        } else {
            Key::create_file(&sk)
        }
        .map_err(|e| Error::Key(format!("site key: {e}")))?;
        Ok(Site {
            store,
            home: home.to_path_buf(),
            ledger_key,
            site_key,
        })
    }

    /// The keyed reference of a patient: the first 128 bits of
    /// HMAC-SHA256(site key, PatientID), hex. The site can recompute it
    /// from an ID; the ledger alone cannot be turned back into one.
    pub fn patient_ref(&self, patient_id: &Phi<String>) -> String {
        veil_ledger::hex(
            &self
                .site_key
                .mac("veil ledger patient", patient_id.expose().trim().as_bytes())[..16],
        )
    }

    /// The keyed reference of an input study (StudyInstanceUID).
    pub fn study_ref(&self, study_uid: &str) -> String {
        veil_ledger::hex(&self.site_key.mac("veil ledger study", study_uid.as_bytes())[..16])
    }

    /// The keyed digest of a study's input SOP Instance UIDs (sorted, one
    /// per line), HMAC-SHA256 under the site key: an unkeyed hash of UIDs
    /// can be matched by anyone holding the originals, which links a
    /// ledger entry to a patient's study.
    pub fn inputs_ref(&self, sorted_sop_uids: &[&str]) -> String {
        veil_ledger::hex(
            &self
                .site_key
                .mac("veil ledger inputs", sorted_sop_uids.join("\n").as_bytes()),
        )
    }

    /// Registers a recipient and creates its own pseudonymization key
    /// (`$VEIL_HOME/keys/NAME.key`, 0600, never printed): two recipients
    /// get unlinkable pseudonyms for the same patient.
    #[allow(clippy::too_many_arguments)]
    pub fn add_recipient(
        &mut self,
        name: &str,
        category: Option<String>,
        contact: Option<String>,
        address: Option<String>,
        purposes: Vec<String>,
        recipe: &Path,
        retention_days: u32,
    ) -> Result<Recipient, Error> {
        if !veil_consent::valid_name(name) {
            return Err(Error::Invalid(
                "a recipient name is 1-64 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        if purposes.is_empty() {
            return Err(Error::Invalid("give at least one --purpose".into()));
        }
        if self.store.recipient(name)?.is_some() {
            return Err(Error::Invalid(format!("recipient {name} already exists")));
        }
        let text = std::fs::read_to_string(recipe).map_err(Error::io("reading the recipe"))?;
        let r = veil_rules::Recipe::parse(&text).map_err(|e| Error::Invalid(e.to_string()))?;
        let label = match &r.version {
            Some(v) => format!("{} {v}", r.name),
            None => r.name.clone(),
        };
        let keys = self.home.join("keys");
        std::fs::create_dir_all(&keys).map_err(Error::io("creating the keys folder"))?;
        let key_file = keys.join(format!("{name}.key"));
        let key =
            Key::create_file(&key_file).map_err(|e| Error::Key(format!("recipient key: {e}")))?;
        let rec = Recipient {
            name: name.to_string(),
            category,
            contact,
            address,
            purposes,
            recipe_toml: text,
            recipe_label: label,
            key_file: key_file.display().to_string(),
            key_id: key.id(),
            retention_days,
        };
        self.store.add_recipient(&rec)?;
        Ok(rec)
    }

    /// Imports FHIR Consent resources; returns how many.
    pub fn import_consents(&mut self, text: &str) -> Result<usize, Error> {
        let cs = veil_consent::import(text).map_err(|e| Error::Invalid(e.to_string()))?;
        let refs: Vec<String> = cs.iter().map(|c| self.patient_ref(&c.patient_id)).collect();
        self.store.transaction(|s| {
            for (c, r) in cs.iter().zip(&refs) {
                s.put_consent(c, r, "fhir-import")?;
            }
            Ok(())
        })?;
        Ok(cs.len())
    }

    /// Every consent record as a FHIR R4 Bundle. It holds patient IDs: it
    /// is for the site's consent systems, not for recipients.
    pub fn export_consents(&mut self) -> Result<serde_json::Value, Error> {
        Ok(veil_consent::export_r4(&self.store.all_consents()?))
    }

    /// Sets the site default for a purpose.
    pub fn set_default(&mut self, purpose: &str, d: SiteDefault) -> Result<(), Error> {
        Ok(self.store.set_default(purpose, d)?)
    }

    /// Records one provision for a patient from the command line, replacing
    /// an earlier one with the same scope (so `--deny` after `--permit` is
    /// a withdrawal, and `--permit` after `--deny` a renewal). Returns the
    /// past recipients the patient's data went to that the consent now
    /// refuses: they must be told.
    pub fn set_consent(
        &mut self,
        patient_id: &Phi<String>,
        p: Provision,
    ) -> Result<Vec<Notify>, Error> {
        let pref = self.patient_ref(patient_id);
        let id = format!("veil-set-{}", &pref[..16]);
        let mut c = self
            .store
            .consents_for(&pref)?
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or(Consent {
                id: id.clone(),
                patient_id: patient_id.clone(),
                patient_system: None,
                status: "active".into(),
                date_time: None,
                provisions: Vec::new(),
            });
        c.provisions.retain(|q| !q.same_scope(&p));
        c.provisions.push(p);
        c.date_time = Some(veil_consent::now());
        self.store.put_consent(&c, &pref, "veil consent set")?;
        let (_, notify) = self.patient_entries(&pref)?;
        Ok(notify)
    }

    /// Every ledger entry about a patient, each with its inclusion proof
    /// checked against the signed head of the whole log, and the past
    /// recipients the current consent would refuse.
    pub fn disclosures(&mut self, patient_id: &Phi<String>) -> Result<Disclosures, Error> {
        let pref = self.patient_ref(patient_id);
        let (d, notify) = self.patient_entries(&pref)?;
        Ok(Disclosures { notify, ..d })
    }

    fn patient_entries(&mut self, pref: &str) -> Result<(Disclosures, Vec<Notify>), Error> {
        let rows = self.ledger_rows()?;
        let leaves: Vec<merkle::Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        let n = leaves.len() as u64;
        let root = merkle::root(&leaves);
        let vk = self.ledger_key.verifying_key();
        // the proofs rest on the signed head stored with the last entry:
        // recomputing a root from the rows alone would prove nothing
        let head_ok = rows
            .last()
            .is_none_or(|last| check_head(&vk, n, &root, &last.head_sig));
        let mut entries = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let Ok(e) = Entry::from_leaf(&row.entry) else {
                continue;
            };
            if e.patient_ref.as_deref() != Some(pref) {
                continue;
            }
            let proof = merkle::inclusion_proof(i, &leaves);
            let ok = head_ok && merkle::verify_inclusion(i as u64, n, &leaves[i], &proof, &root);
            entries.push(Disclosure {
                position: i as u64,
                entry: e,
                proof: proof.iter().map(|h| veil_ledger::hex(h)).collect(),
                proof_ok: ok,
            });
        }
        let notify = self.notify_list(pref, &entries)?;
        Ok((
            Disclosures {
                patient_ref: pref.to_string(),
                tree_size: n,
                root: veil_ledger::hex(&root),
                head_signature_ok: head_ok,
                entries,
                notify: Vec::new(),
            },
            notify,
        ))
    }

    /// Past releases that the patient's current consent would refuse.
    fn notify_list(&mut self, pref: &str, entries: &[Disclosure]) -> Result<Vec<Notify>, Error> {
        let consents = self.store.consents_for(pref)?;
        let now = veil_consent::now();
        let mut out: Vec<Notify> = Vec::new();
        for d in entries.iter().filter(|d| d.entry.event == Event::Release) {
            let e = &d.entry;
            let rec = self.store.recipient(&e.recipient)?;
            // the raw StudyInstanceUID is not in the ledger: find it among
            // the study-level provisions by its keyed reference
            let study = consents
                .iter()
                .flat_map(|c| &c.provisions)
                .filter_map(|p| p.study_uid.as_deref())
                .find(|u| Some(self.study_ref(u)) == e.study_ref)
                .unwrap_or("")
                .to_string();
            let default = self.store.default_for(&e.purpose)?;
            let o = veil_consent::decide(
                &consents,
                default,
                &Request {
                    recipient: &e.recipient,
                    category: rec.as_ref().and_then(|r| r.category.as_deref()),
                    purpose: &e.purpose,
                    study_uid: &study,
                    now: &now,
                },
            );
            if o.decision != Decision::Deny {
                continue;
            }
            let date = e.time.get(..10).unwrap_or(&e.time).to_string();
            match out
                .iter_mut()
                .find(|n| n.recipient == e.recipient && n.purpose == e.purpose)
            {
                Some(n) => {
                    n.studies += 1;
                    n.last_release = n.last_release.clone().max(date);
                    n.output_study_uids.extend(e.output_study_uid.clone());
                }
                None => out.push(Notify {
                    recipient: e.recipient.clone(),
                    contact: rec.and_then(|r| r.contact),
                    purpose: e.purpose.clone(),
                    studies: 1,
                    last_release: date,
                    output_study_uids: e.output_study_uid.clone().into_iter().collect(),
                }),
            }
        }
        Ok(out)
    }

    fn ledger_rows(&mut self) -> Result<Vec<StoredRow>, Error> {
        Ok(self
            .store
            .ledger_rows()?
            .into_iter()
            .map(|r| StoredRow {
                seq: r.seq,
                entry: r.entry,
                leaf_hash: r.leaf_hash,
                head_sig: r.head_sig,
            })
            .collect())
    }

    fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, Error> {
        Ok(self
            .store
            .checkpoints()?
            .into_iter()
            .map(|c| Checkpoint {
                size: c.size.max(0) as u64,
                root: c.root,
                time: c.time,
                key_id: c.key_id,
                signature: c.signature,
            })
            .collect())
    }

    /// Checks the whole log and every checkpoint (see
    /// [`veil_ledger::verify_log`]).
    pub fn verify_ledger(&mut self) -> Result<veil_ledger::VerifyReport, Error> {
        let rows = self.ledger_rows()?;
        let cps = self.checkpoints()?;
        Ok(veil_ledger::verify_log(
            &rows,
            &cps,
            &self.ledger_key.verifying_key(),
        ))
    }

    /// Signs the current tree head, after checking the log: a checkpoint
    /// over a tampered log would bless it.
    pub fn checkpoint(&mut self) -> Result<Result<Checkpoint, veil_ledger::VerifyReport>, Error> {
        let report = self.verify_ledger()?;
        if !report.ok {
            return Ok(Err(report));
        }
        let rows = self.ledger_rows()?;
        let leaves: Vec<merkle::Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        let c = self.ledger_key.checkpoint(
            leaves.len() as u64,
            merkle::root(&leaves),
            veil_consent::now(),
        );
        self.store.insert_checkpoint(&veil_store::CheckpointRow {
            size: c.size as i64,
            root: c.root.clone(),
            time: c.time.clone(),
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        })?;
        Ok(Ok(c))
    }

    /// Every entry, parsed (for the audit exports).
    pub fn entries(&mut self) -> Result<Vec<Entry>, Error> {
        self.ledger_rows()?
            .iter()
            .map(|r| {
                Entry::from_leaf(&r.entry).map_err(|_| {
                    Error::Invalid(format!(
                        "ledger entry {} does not parse; run `veil ledger verify`",
                        r.seq
                    ))
                })
            })
            .collect()
    }

    /// Appends entries (their `seq` is assigned here) in one transaction,
    /// each with the signed head after it; `staged[i]` is recorded with
    /// entry i's position. Returns the positions.
    fn append(
        &mut self,
        mut entries: Vec<Entry>,
        staged: Vec<Option<veil_store::Staged>>,
    ) -> Result<Vec<u64>, Error> {
        let key = &self.ledger_key;
        let out = self.store.transaction(|s| {
            let rows = s.ledger_rows()?;
            if rows.iter().enumerate().any(|(i, r)| r.seq != i as i64) {
                return Err(StoreError::Invalid(
                    "the ledger has gaps or repeats; run `veil ledger verify`".into(),
                ));
            }
            let mut f = merkle::Frontier::new();
            for r in &rows {
                f.push(merkle::leaf_hash(r.entry.as_bytes()));
            }
            let mut positions = Vec::new();
            for (e, st) in entries.iter_mut().zip(staged) {
                let seq = f.size();
                e.seq = seq;
                let data = String::from_utf8(e.to_leaf())
                    .map_err(|_| StoreError::Corrupt("entry".into()))?;
                let lh = merkle::leaf_hash(data.as_bytes());
                f.push(lh);
                s.insert_ledger_row(&veil_store::veil_ledger_row::StoredRow {
                    seq: seq as i64,
                    entry: data,
                    leaf_hash: veil_ledger::hex(&lh),
                    head_sig: key.sign_head(seq + 1, &f.root()),
                })?;
                if let Some(mut st) = st {
                    st.ledger_seq = seq as i64;
                    s.insert_staged(&st)?;
                }
                positions.push(seq);
            }
            Ok(positions)
        })?;
        Ok(out)
    }

    /// Deletes staged outputs whose retention ended by `now` (RFC 3339
    /// UTC), one ledger entry per deleted study. The database only says
    /// which release's retention ended: what is deleted is checked against
    /// the signed ledger and Veil's own marker beside the folder (see the
    /// `publish` module), so a database writer cannot aim it elsewhere.
    pub fn retention_run(&mut self, now: &str) -> Result<RetentionSummary, Error> {
        let expired = self.store.expired_staged(now)?;
        let all = self.entries()?;
        let mut entries = Vec::new();
        let mut done = Vec::new();
        let mut files_deleted = 0;
        let mut files_changed = 0;
        let mut refused = Vec::new();
        for s in &expired {
            let orig = all.iter().find(|e| e.seq as i64 == s.ledger_seq);
            let (files, root, changed) = match publish::retention_plan(&s.out_root, &s.files, orig)
            {
                publish::Retain::Delete {
                    files,
                    root,
                    changed,
                } => (files, root, changed),
                publish::Retain::Refuse(why) => {
                    refused.push(format!("ledger entry {}: {why}", s.ledger_seq));
                    continue;
                }
            };
            let mut n = 0;
            for p in &files {
                match std::fs::remove_file(p) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("deleting a staged file")(e)),
                }
                // remove folders left empty, up to OUT
                let mut dir = p.parent().map(Path::to_path_buf);
                while let Some(d) = dir {
                    if d == root || !d.starts_with(&root) || std::fs::remove_dir(&d).is_err() {
                        break;
                    }
                    dir = d.parent().map(Path::to_path_buf);
                }
            }
            files_deleted += n;
            files_changed += changed;
            done.push(s.ledger_seq);
            entries.push(Entry {
                v: 1,
                seq: 0,
                time: now.to_string(),
                event: Event::RetentionDelete,
                release_id: orig.map(|o| o.release_id.clone()).unwrap_or_default(),
                recipient: orig.map_or_else(|| s.recipient.clone(), |o| o.recipient.clone()),
                purpose: orig.map(|o| o.purpose.clone()).unwrap_or_default(),
                recipe: orig.map(|o| o.recipe.clone()).unwrap_or_default(),
                key_id: orig.map(|o| o.key_id.clone()).unwrap_or_default(),
                patient_ref: orig.and_then(|o| o.patient_ref.clone()),
                study_ref: orig.and_then(|o| o.study_ref.clone()),
                output_study_uid: orig.and_then(|o| o.output_study_uid.clone()),
                instances: n as u64,
                inputs_digest: None,
                output_digest: orig.and_then(|o| o.output_digest.clone()),
                verification: "not-applicable".into(),
                operator: operator(None),
                reason: format!("retention ended {}", s.expires_at),
                refers_to: Some(s.ledger_seq as u64),
            });
        }
        let n = entries.len();
        let positions = self.append(entries, vec![None; n])?;
        for seq in &done {
            self.store.mark_deleted(*seq, now)?;
        }
        Ok(RetentionSummary {
            studies_deleted: done.len(),
            files_deleted,
            files_changed,
            refused,
            ledger_positions: positions,
        })
    }
}

fn check_head(
    vk: &veil_ledger::merkle_vk::VerifyingKey,
    size: u64,
    root: &merkle::Hash,
    sig: &str,
) -> bool {
    veil_ledger::check_signature(vk, &veil_ledger::head_message(size, root), sig)
}

/// The operator: `--operator`, else `$USER`, else `unknown`.
pub fn operator(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
