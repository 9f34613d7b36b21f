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

mod integrity;
mod publish;
mod release;
mod review;

use std::path::{Path, PathBuf};

use serde::Serialize;
use veil_consent::{Actor, Consent, Decision, Limits, Provision, Recipient, Request, SiteDefault};
use veil_core::Phi;
use veil_deid::Key;
use veil_ledger::{
    merkle, Checkpoint, Entry, Event, ExternalNote, LedgerKey, NoteVerifier, StoredRow,
};
use veil_store::{Store, StoreError};

pub use integrity::{sha256_hex, ImportSummary, RecipientUpdate};
pub use release::{
    DryRun, Prepared, Recovery, ReleaseRequest, ReleaseSummary, StudyDecision, Verifier,
    VerifyOutcome, Workspace,
};
pub use review::ReviewDecision;

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

/// The site: its store, its ledger keys and its HMAC key.
pub struct Site {
    /// The store.
    pub store: Store,
    home: PathBuf,
    /// The ledger signing key, when its file is present: only appending
    /// (releases, refusals, retention, checkpoints) needs it.
    ledger_key: Option<LedgerKey>,
    /// The ledger public key: from the secret key when present, else as
    /// recorded in the store at `veil init` (verification needs only it).
    ledger_vk: veil_ledger::merkle_vk::VerifyingKey,
    ledger_key_path: PathBuf,
    site_key: Key,
    /// Study index rows of decided, not yet logged studies, by (release
    /// id, inputs digest): the append that logs a study's entry writes its
    /// row in the same transaction. Why here and not on the entry: the
    /// ledger must never hold them, and the gateway's `log_decisions`
    /// receives only entries.
    pending_index: PendingIndex,
}

/// The environment variable naming the ledger signing key file, so that it
/// can live apart from `$VEIL_HOME` and the database.
pub const LEDGER_KEY_FILE_ENV: &str = "VEIL_LEDGER_KEY_FILE";

/// Role names in the store's key records.
const SITE_ROLE: &str = "site";
const LEDGER_ROLE: &str = "ledger";

/// Where the site's two keys live: `$VEIL_HOME/site.key`, and
/// `$VEIL_LEDGER_KEY_FILE` or else `$VEIL_HOME/ledger.key`.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// The site HMAC key (patient and study references).
    pub site: PathBuf,
    /// The ledger signing key.
    pub ledger: PathBuf,
}

impl KeyPaths {
    /// The paths for `home`, honouring `VEIL_LEDGER_KEY_FILE`.
    pub fn for_home(home: &Path) -> KeyPaths {
        KeyPaths {
            site: home.join("site.key"),
            ledger: std::env::var_os(LEDGER_KEY_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join("ledger.key")),
        }
    }
}

/// What `veil init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitSummary {
    /// The site key file.
    pub site_key: String,
    /// Its id (a hash of it).
    pub site_key_id: String,
    /// True when `veil init` created it; false when it kept an existing one.
    pub site_key_created: bool,
    /// The ledger key file.
    pub ledger_key: String,
    /// The ledger key's public id.
    pub ledger_key_id: String,
    /// True when created now.
    pub ledger_key_created: bool,
    /// `sqlite` or `postgresql`.
    pub backend: String,
    /// True when the store already recorded these keys (a second `init`).
    pub already_initialized: bool,
}

/// What `veil key adopt` checked and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptSummary {
    /// Consent records whose patient reference the site key reproduces.
    pub consents_checked: usize,
    /// Ledger entries verified under the ledger key.
    pub ledger_entries_checked: u64,
    /// The site key id recorded.
    pub site_key_id: String,
    /// The ledger key id recorded.
    pub ledger_key_id: String,
}

fn missing_key(what: &str, path: &Path) -> Error {
    Error::Key(format!(
        "the {what} {} is missing. Veil never creates keys implicitly: run `veil init` \
         to set up a new site, or restore the file from your key backup (see README, \
         \"Keys: backup and restore\"){}",
        path.display(),
        if what == "site key" {
            "; a new site key would change every patient reference, so no stored consent \
             would match"
        } else {
            ""
        }
    ))
}

fn load_site_key(path: &Path) -> Result<Key, Error> {
    if !path.exists() {
        return Err(missing_key("site key", path));
    }
    Key::load(path).map_err(|e| Error::Key(format!("site key {}: {e}", path.display())))
}

fn load_ledger_key(path: &Path) -> Result<Option<LedgerKey>, Error> {
    if !path.exists() {
        return Ok(None);
    }
    LedgerKey::load(path)
        .map(Some)
        .map_err(|e| Error::Key(format!("{} ({})", e, path.display())))
}

/// The signing key, or the error that says where it should be (a free
/// function so that [`Site::append`] can hold it while writing the store).
fn signing_key<'a>(k: &'a Option<LedgerKey>, path: &Path) -> Result<&'a LedgerKey, Error> {
    k.as_ref().ok_or_else(|| {
        Error::Key(format!(
            "the ledger signing key {} is not here: verifying and reading need only the public \
             key, but writing to the ledger needs the secret key; set {} to its file",
            path.display(),
            LEDGER_KEY_FILE_ENV
        ))
    })
}

fn vk_hex(vk: &veil_ledger::merkle_vk::VerifyingKey) -> String {
    veil_ledger::hex(vk.as_bytes())
}

fn vk_id(vk: &veil_ledger::merkle_vk::VerifyingKey) -> String {
    veil_ledger::key_id(vk)
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

/// `veil consent list` output (site-local: it holds patient IDs).
pub struct ConsentList {
    /// Site defaults: purpose and `opt-in`/`opt-out`.
    pub defaults: Vec<(String, String)>,
    /// The current version of each consent record.
    pub consents: Vec<Consent>,
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
    /// Opens an initialized site: `$VEIL_HOME`, the store, the site HMAC key
    /// (`site.key`) and the ledger key (see [`KeyPaths`]). Creates no key:
    /// a missing site key is an error naming the file. The ledger's secret
    /// key may be absent (it can be kept apart): reading and verifying then
    /// use the public key recorded in the store, and appending fails.
    ///
    /// The keys must be the ones the store recorded at `veil init`; a store
    /// opened with another home's keys is refused. A store from before key
    /// records is tied to its keys on first open only while it holds no
    /// consent or ledger row; otherwise `veil key adopt` must check them
    /// against its data first ([`Site::adopt`]).
    pub fn open(db_url: Option<&str>, home: &Path) -> Result<Site, Error> {
        let paths = KeyPaths::for_home(home);
        // keys first: nothing is created for a home without them
        let site_key = load_site_key(&paths.site)?;
        let ledger_key = load_ledger_key(&paths.ledger)?;
        let mut store = Store::open(db_url, home)?;
        let recorded_site = store.recorded_key(SITE_ROLE)?;
        let recorded_ledger = store.recorded_key(LEDGER_ROLE)?;
        let ledger_vk = match (&ledger_key, &recorded_ledger) {
            (Some(k), _) => k.verifying_key(),
            (None, Some(hex)) => veil_ledger::verifying_key_from_hex(hex).ok_or_else(|| {
                Error::Key("the ledger public key recorded in the store does not parse".into())
            })?,
            (None, None) => return Err(missing_key("ledger key", &paths.ledger)),
        };
        match (&recorded_site, &recorded_ledger) {
            (None, None) => {
                if store.holds_keyed_data()? {
                    return Err(Error::Key(
                        "this store holds consents or ledger entries but records no key ids \
                         (it predates key records): run `veil key adopt` to check these keys \
                         against its data and record them"
                            .into(),
                    ));
                }
                // an empty store: tying it to the keys present is safe
                // (nothing was written under other keys)
                store.transaction(|s| {
                    s.record_key(SITE_ROLE, &site_key.id())?;
                    s.record_key(LEDGER_ROLE, &vk_hex(&ledger_vk))
                })?;
            }
            (Some(sid), Some(lhex)) => {
                if *sid != site_key.id() {
                    return Err(Error::Key(format!(
                        "key mismatch: the store was set up with site key id {sid}, but {} \
                         has id {}. This VEIL_HOME does not belong to this store: its patient \
                         references would match no consent. Use the VEIL_HOME whose site.key \
                         the store records, or restore site.key from your key backup.",
                        paths.site.display(),
                        site_key.id()
                    )));
                }
                if *lhex != vk_hex(&ledger_vk) {
                    return Err(Error::Key(format!(
                        "key mismatch: the store was set up with ledger key id {}, but {} \
                         has id {}. Use the ledger key the store records, or restore it from \
                         your key backup.",
                        veil_ledger::verifying_key_from_hex(lhex)
                            .map(|k| vk_id(&k))
                            .unwrap_or_else(|| "(unreadable)".into()),
                        paths.ledger.display(),
                        vk_id(&ledger_vk)
                    )));
                }
            }
            _ => {
                return Err(Error::Key(
                    "the store records only one of its two keys; restore the store from backup"
                        .into(),
                ))
            }
        }
        Ok(Site {
            store,
            home: home.to_path_buf(),
            ledger_key,
            ledger_vk,
            ledger_key_path: paths.ledger,
            pending_index: Default::default(),
            site_key,
        })
    }

    /// `veil init`: creates `$VEIL_HOME` (0700), the store, and whichever of
    /// `site.key` and the ledger key is missing (0600), then records their
    /// public ids in the store. Never overwrites a key file. Refuses to
    /// create a key for a store that already records one (restore it from
    /// backup instead) or that holds data from before key records (`veil
    /// key adopt`).
    pub fn init(db_url: Option<&str>, home: &Path) -> Result<InitSummary, Error> {
        let paths = KeyPaths::for_home(home);
        let mut store = Store::open(db_url, home)?;
        let recorded =
            store.recorded_key(SITE_ROLE)?.is_some() || store.recorded_key(LEDGER_ROLE)?.is_some();
        let site_exists = paths.site.exists();
        let ledger_exists = paths.ledger.exists();
        for (exists, path) in [(site_exists, &paths.site), (ledger_exists, &paths.ledger)] {
            if recorded && !exists {
                return Err(Error::Key(format!(
                    "this store records its keys, and {} is missing: restore it from your key \
                     backup; `veil init` never replaces a key the store records",
                    path.display()
                )));
            }
        }
        if !recorded && store.holds_keyed_data()? {
            return Err(Error::Key(
                "this store holds consents or ledger entries written before key records: \
                 `veil init` will not create keys for it; put its site.key and ledger key in \
                 place and run `veil key adopt`"
                    .into(),
            ));
        }
        drop(store);
        if !site_exists {
            Key::create_file(&paths.site)
                .map_err(|e| Error::Key(format!("site key {}: {e}", paths.site.display())))?;
        }
        if !ledger_exists {
            LedgerKey::create(&paths.ledger)
                .map_err(|e| Error::Key(format!("{e} ({})", paths.ledger.display())))?;
        }
        // records the ids in a fresh store, checks them in an initialized one
        let site = Site::open(db_url, home)?;
        Ok(InitSummary {
            site_key: paths.site.display().to_string(),
            site_key_id: site.site_key.id(),
            site_key_created: !site_exists,
            ledger_key: paths.ledger.display().to_string(),
            ledger_key_id: vk_id(&site.ledger_vk),
            ledger_key_created: !ledger_exists,
            backend: site.store.backend().to_string(),
            already_initialized: recorded,
        })
    }

    /// `veil key adopt`: ties a store written before key records to the
    /// keys in place, after checking them against its data: every consent
    /// record's patient reference must be reproduced by the site key, and
    /// the ledger must verify under the ledger key. Refuses otherwise, and
    /// for a store that already records keys.
    pub fn adopt(db_url: Option<&str>, home: &Path) -> Result<AdoptSummary, Error> {
        let paths = KeyPaths::for_home(home);
        let site_key = load_site_key(&paths.site)?;
        let ledger_key = load_ledger_key(&paths.ledger)?
            .ok_or_else(|| missing_key("ledger key", &paths.ledger))?;
        let mut store = Store::open(db_url, home)?;
        if store.recorded_key(SITE_ROLE)?.is_some() || store.recorded_key(LEDGER_ROLE)?.is_some() {
            return Err(Error::Invalid(
                "this store already records its keys; nothing to adopt".into(),
            ));
        }
        let refs = store.consent_refs()?;
        let vk = ledger_key.verifying_key();
        let mut site = Site {
            store,
            home: home.to_path_buf(),
            ledger_key: Some(ledger_key),
            ledger_vk: vk,
            ledger_key_path: paths.ledger,
            pending_index: Default::default(),
            site_key,
        };
        let bad = refs
            .iter()
            .filter(|(r, pid)| *r != site.patient_ref(pid))
            .count();
        if bad > 0 {
            return Err(Error::Key(format!(
                "{} does not reproduce the patient references of {bad} of {} consent records: \
                 it is not the key this store was written with; nothing recorded",
                paths.site.display(),
                refs.len()
            )));
        }
        let report = site.verify_ledger()?;
        if !report.ok {
            return Err(Error::Key(format!(
                "the ledger does not verify under {} (first bad position {}): not the key \
                 this store was written with, or the ledger was altered; nothing recorded",
                site.ledger_key_path.display(),
                report.first_bad_position.unwrap_or(0)
            )));
        }
        let sid = site.site_key.id();
        let lhex = vk_hex(&site.ledger_vk);
        site.store.transaction(|s| {
            s.record_key(SITE_ROLE, &sid)?;
            s.record_key(LEDGER_ROLE, &lhex)
        })?;
        Ok(AdoptSummary {
            consents_checked: refs.len(),
            ledger_entries_checked: report.entries,
            site_key_id: sid,
            ledger_key_id: vk_id(&site.ledger_vk),
        })
    }

    /// The ledger's public (verifying) key, whether or not the secret key
    /// is present.
    pub fn ledger_verifying_key(&self) -> veil_ledger::merkle_vk::VerifyingKey {
        self.ledger_vk
    }

    /// The ledger signing key; an error naming the file when it is absent
    /// (appending and signing checkpoints need it, reading does not).
    pub fn ledger_signing_key(&self) -> Result<&LedgerKey, Error> {
        signing_key(&self.ledger_key, &self.ledger_key_path)
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

    /// A keyed value for the portal (issue 19): HMAC-SHA256 under the site
    /// key with the label `veil portal WHAT`, so it can never collide with
    /// the ledger's references. Why the site key: the portal derives TOTP
    /// secrets from a random nonce this way, so the store (which holds
    /// only the nonce) holds no usable second factor.
    pub fn portal_mac(&self, what: &str, data: &[u8]) -> [u8; 32] {
        self.site_key.mac(&format!("veil portal {what}"), data)
    }

    /// The keyed reference of an input study (StudyInstanceUID).
    pub fn study_ref(&self, study_uid: &str) -> String {
        veil_ledger::hex(&self.site_key.mac("veil ledger study", study_uid.as_bytes())[..16])
    }

    /// The keyed reference of one input instance (SOP Instance UID): the
    /// gateway's queue and spool name instances by it, so neither holds a
    /// UID (PHI-adjacent: it links to the archive's copy).
    pub fn instance_ref(&self, sop_uid: &Phi<String>) -> String {
        veil_ledger::hex(
            &self
                .site_key
                .mac("veil gateway instance", sop_uid.expose().as_bytes())[..16],
        )
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
        if self.store.recipient_removed(name)? {
            return Err(Error::Invalid(format!(
                "recipient {name} was removed; the ledger's history keeps its name, so choose another"
            )));
        }
        let text = std::fs::read_to_string(recipe).map_err(Error::io("reading the recipe"))?;
        let r = veil_rules::Recipe::parse(&text).map_err(|e| Error::Invalid(e.to_string()))?;
        let label = match &r.version {
            Some(v) => format!("{} {v}", r.name),
            None => r.name.clone(),
        };
        let keys = self.home.join("keys");
        veil_store::private_dir(&keys).map_err(Error::io("creating the keys folder"))?;
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
        // the row and the ledger entry pinning its key and recipe commit
        // together: a recipient never exists unpinned
        let e = integrity::recipient_entry(&self.site_key, Event::RecipientChange, &rec, &key);
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store.transaction(|s| {
            s.add_recipient(&rec)?;
            append_in(s, lk, vec![e], vec![None])
        })?;
        Ok(rec)
    }

    /// Imports FHIR Consent resources from `source` (a namespace: the
    /// record ids become `SOURCE/ID`, so two sources never share an id).
    /// Append-only: a record seen before with the same content is left as
    /// it is, a changed one gets a new version, nothing is deleted. Each new
    /// version and its ledger entry commit in one transaction.
    pub fn import_consents(
        &mut self,
        text: &str,
        source: &str,
        limits: &Limits,
    ) -> Result<ImportSummary, Error> {
        if !veil_consent::valid_name(source) {
            return Err(Error::Invalid(
                "a consent source is 1-64 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        let mut cs =
            veil_consent::import_with(text, limits).map_err(|e| Error::Invalid(e.to_string()))?;
        for c in &mut cs {
            c.id = format!("{source}/{}", c.id);
        }
        let refs: Vec<String> = cs.iter().map(|c| self.patient_ref(&c.patient_id)).collect();
        let origin = format!("fhir-import:{source}");
        let (sk, lk) = (
            &self.site_key,
            signing_key(&self.ledger_key, &self.ledger_key_path)?,
        );
        let stored = self.store.transaction(|s| {
            let mut entries = Vec::new();
            for (c, r) in cs.iter().zip(&refs) {
                if let Some(v) = s.append_consent(c, r, &origin)? {
                    entries.push(integrity::consent_entry(sk, &v));
                }
            }
            let n = entries.len();
            append_in(s, lk, entries, vec![None; n])?;
            Ok(n)
        })?;
        Ok(ImportSummary {
            records: cs.len(),
            new_versions: stored,
        })
    }

    /// Every consent record as a FHIR R4 Bundle. It holds patient IDs: it
    /// is for the site's consent systems, not for recipients.
    pub fn export_consents(&mut self) -> Result<serde_json::Value, Error> {
        Ok(veil_consent::export_r4(&self.store.all_consents()?))
    }

    /// Sets the site default for a purpose, with its ledger entry, in one
    /// transaction.
    pub fn set_default(&mut self, purpose: &str, d: SiteDefault) -> Result<(), Error> {
        let e = integrity::default_entry(&self.site_key, purpose, d);
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store.transaction(|s| {
            s.set_default(purpose, d)?;
            append_in(s, lk, vec![e], vec![None])
        })?;
        Ok(())
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
        self.record_provision(&pref, patient_id.clone(), None, p, true, "veil consent set")
    }

    /// [`Site::set_consent`] for the patient with keyed reference `pref`,
    /// from `source` (the patient portal: its session holds the
    /// reference, never the ID). The same record, the same replacement
    /// of a provision with the same scope, the same ledger entry as
    /// `veil consent set`. The record keeps the patient ID of the
    /// patient's existing consent records; a patient with none gets a
    /// record identified by the keyed reference (identifier system
    /// `urn:veil:patient-ref`), since the portal never holds the ID.
    pub fn set_consent_by_ref(
        &mut self,
        pref: &str,
        p: Provision,
        source: &str,
    ) -> Result<Vec<Notify>, Error> {
        if pref.len() < 16 {
            return Err(Error::Invalid("not a patient reference".into()));
        }
        let known = self.store.consents_for(pref)?.into_iter().next();
        let (id, system) = match known {
            Some(c) => (c.patient_id, c.patient_system),
            None => (
                Phi::new(pref.to_string()),
                Some("urn:veil:patient-ref".to_string()),
            ),
        };
        self.record_provision(pref, id, system, p, true, source)
    }

    /// Takes back the provision Veil recorded for a patient (by keyed
    /// reference) with the scope of `scope` (its decision is ignored): the
    /// patient's choice for that purpose and actor goes back to the site
    /// default, from the next release. A new version of the record and its
    /// ledger entry, like [`Site::set_consent_by_ref`]; nothing (no entry)
    /// when Veil recorded no such provision. Provisions imported from the
    /// site's consent systems (FHIR) are theirs to change, not taken back.
    pub fn reset_consent_by_ref(
        &mut self,
        pref: &str,
        scope: Provision,
        source: &str,
    ) -> Result<Vec<Notify>, Error> {
        if pref.len() < 16 {
            return Err(Error::Invalid("not a patient reference".into()));
        }
        let id = format!("veil-set-{}", &pref[..16]);
        let Some(c) = self
            .store
            .consents_for(pref)?
            .into_iter()
            .find(|c| c.id == id && c.provisions.iter().any(|q| q.same_scope(&scope)))
        else {
            return Ok(Vec::new());
        };
        self.record_provision(pref, c.patient_id, c.patient_system, scope, false, source)
    }

    fn record_provision(
        &mut self,
        pref: &str,
        patient_id: Phi<String>,
        patient_system: Option<String>,
        p: Provision,
        set: bool,
        source: &str,
    ) -> Result<Vec<Notify>, Error> {
        // the new version is built on the current one: never on rows
        // changed outside Veil, which it would make look logged
        self.check_patient_consents(pref)?;
        let id = format!("veil-set-{}", &pref[..16]);
        let mut c = self
            .store
            .consents_for(pref)?
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or(Consent {
                id: id.clone(),
                patient_id,
                patient_system,
                status: "active".into(),
                date_time: None,
                provisions: Vec::new(),
            });
        c.provisions.retain(|q| !q.same_scope(&p));
        if set {
            c.provisions.push(p);
        }
        c.date_time = Some(veil_consent::now());
        // a new version of the record and its ledger entry, together
        let (sk, lk) = (
            &self.site_key,
            signing_key(&self.ledger_key, &self.ledger_key_path)?,
        );
        self.store.transaction(|s| {
            let entries: Vec<Entry> = s
                .append_consent(&c, pref, source)?
                .map(|v| integrity::consent_entry(sk, &v))
                .into_iter()
                .collect();
            let n = entries.len();
            append_in(s, lk, entries, vec![None; n])
        })?;
        let (_, notify) = self.patient_entries(pref)?;
        Ok(notify)
    }

    /// [`Site::set_consent`] from the command line, after checking that
    /// the provision names a registered recipient, category and purpose: a
    /// typo (`acme_ai` for `acme-ai`) would record a deny that matches
    /// nobody, and the next release would go ahead. The error names the
    /// known ones. `force` records it anyway, for a recipient, category or
    /// purpose registered later.
    pub fn set_consent_checked(
        &mut self,
        patient_id: &Phi<String>,
        p: Provision,
        force: bool,
    ) -> Result<Vec<Notify>, Error> {
        if !force {
            let unknown = self.unknown_terms(&p)?;
            if !unknown.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}; nothing recorded (pass --force to record it for one registered later)",
                    unknown.join("; ")
                )));
            }
        }
        self.set_consent(patient_id, p)
    }

    /// What a provision names that the site does not know, each with the
    /// known values.
    fn unknown_terms(&mut self, p: &Provision) -> Result<Vec<String>, Error> {
        let recipients = self.store.recipients()?;
        let known = |mut v: Vec<String>| {
            v.sort();
            v.dedup();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut unknown = Vec::new();
        match &p.actor {
            Some(Actor::Recipient(n)) if !recipients.iter().any(|r| &r.name == n) => {
                unknown.push(format!(
                    "unknown recipient {n} (known recipients: {})",
                    known(recipients.iter().map(|r| r.name.clone()).collect())
                ))
            }
            Some(Actor::Category(c))
                if !recipients.iter().any(|r| r.category.as_ref() == Some(c)) =>
            {
                unknown.push(format!(
                    "unknown category {c} (known categories: {})",
                    known(
                        recipients
                            .iter()
                            .filter_map(|r| r.category.clone())
                            .collect()
                    )
                ))
            }
            _ => {}
        }
        if let Some(purpose) = &p.purpose {
            let mut purposes: Vec<String> = recipients
                .iter()
                .flat_map(|r| r.purposes.iter().cloned())
                .collect();
            purposes.extend(self.store.defaults()?.into_iter().map(|(p, _)| p));
            if !purposes.contains(purpose) {
                unknown.push(format!(
                    "unknown purpose {purpose} (known purposes: {})",
                    known(purposes)
                ));
            }
        }
        Ok(unknown)
    }

    /// `veil consent list`: the site defaults and the current consent
    /// records (all patients, or one), for staff at the site. It holds
    /// patient IDs: it is printed, never written with a release.
    pub fn consent_list(&mut self, patient_id: Option<&Phi<String>>) -> Result<ConsentList, Error> {
        let defaults = self
            .store
            .defaults()?
            .into_iter()
            .map(|(p, d)| (p, d.as_str().to_string()))
            .collect();
        let consents = match patient_id {
            Some(id) => {
                let pref = self.patient_ref(id);
                self.store.consents_for(&pref)?
            }
            None => self.store.all_consents()?,
        };
        Ok(ConsentList { defaults, consents })
    }

    /// Every ledger entry about a patient, each with its inclusion proof
    /// checked against the signed head of the whole log, and the past
    /// recipients the current consent would refuse.
    pub fn disclosures(&mut self, patient_id: &Phi<String>) -> Result<Disclosures, Error> {
        let pref = self.patient_ref(patient_id);
        let (d, notify) = self.patient_entries(&pref)?;
        Ok(Disclosures { notify, ..d })
    }

    /// Every ledger entry about the patient with keyed reference `pref`,
    /// each with its inclusion proof checked (as [`Site::disclosures`],
    /// without the notify list). Why by reference: the patient portal's
    /// session holds the reference, never the ID.
    pub fn disclosures_by_ref(&mut self, pref: &str) -> Result<Disclosures, Error> {
        Ok(self.patient_entries(pref)?.0)
    }

    fn patient_entries(&mut self, pref: &str) -> Result<(Disclosures, Vec<Notify>), Error> {
        let rows = self.ledger_rows()?;
        let leaves: Vec<merkle::Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        let n = leaves.len() as u64;
        let root = merkle::root(&leaves);
        let vk = self.ledger_vk;
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
        ledger_rows(&mut self.store)
    }

    /// Checks the whole log and every checkpoint (see
    /// [`veil_ledger::verify_log`]).
    pub fn verify_ledger(&mut self) -> Result<veil_ledger::VerifyReport, Error> {
        self.verify_ledger_against(&[])
    }

    /// Checks the whole log, every stored checkpoint and the checkpoint
    /// notes kept outside the site, under the site's own ledger key (see
    /// [`verify_store`]).
    pub fn verify_ledger_against(
        &mut self,
        notes: &[ExternalNote],
    ) -> Result<veil_ledger::VerifyReport, Error> {
        let v = veil_ledger::note_verifier(&self.ledger_vk);
        verify_store(&mut self.store, notes, &v)
    }

    /// The ledger's verifier key (`veil ledger pubkey`): its public key
    /// under its name, all an auditor needs to check notes and the log.
    pub fn ledger_verifier(&self) -> NoteVerifier {
        veil_ledger::note_verifier(&self.ledger_vk)
    }

    /// Signs the current tree head, after checking the log: a checkpoint
    /// over a tampered log would bless it.
    ///
    /// It signs the rows it checked (one read: appends may go on beside
    /// it, and rows appended after the check must not be signed
    /// unchecked), and stores the checkpoint in a ledger transaction, so
    /// two checkpoints of the same size replace one another instead of
    /// colliding.
    pub fn checkpoint(&mut self) -> Result<Result<Checkpoint, veil_ledger::VerifyReport>, Error> {
        // as in verify_store: the checkpoints before the rows
        let cps = stored_checkpoints(&mut self.store)?;
        let rows = self.ledger_rows()?;
        let report = veil_ledger::verify_log_against(&rows, &cps, &[], &self.ledger_verifier());
        if !report.ok {
            return Ok(Err(report));
        }
        let leaves: Vec<merkle::Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        let c = self.ledger_signing_key()?.checkpoint(
            leaves.len() as u64,
            merkle::root(&leaves),
            veil_consent::now(),
        );
        let row = veil_store::CheckpointRow {
            size: c.size as i64,
            root: c.root.clone(),
            time: c.time.clone(),
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        };
        self.store.transaction(|s| s.insert_checkpoint(&row))?;
        Ok(Ok(c))
    }

    /// The proof bundle of entry `position` against the latest stored
    /// checkpoint (`veil ledger proof`); the inner error says why there is
    /// none (see [`veil_ledger::ProofError`]). It reads only (no key file,
    /// no new checkpoint), so a reading host can serve it: a proof must be
    /// against a head that was signed, and ideally published, on purpose;
    /// signing one on demand would hand out heads nobody keeps.
    pub fn proof(
        &mut self,
        position: u64,
    ) -> Result<Result<veil_ledger::ProofBundle, veil_ledger::ProofError>, Error> {
        use veil_ledger::ProofError;
        let rows = self.ledger_rows()?;
        let leaves: Vec<&str> = rows.iter().map(|r| r.entry.as_str()).collect();
        let entries = leaves.len() as u64;
        Ok(match stored_checkpoints(&mut self.store)?.pop() {
            Some(latest) => {
                veil_ledger::proof::bundle(&leaves, position, &latest, &self.ledger_verifier())
            }
            // a missing entry is the clearer message when both apply
            None if position >= entries => Err(ProofError::NoEntry { position, entries }),
            None => Err(ProofError::NoCheckpoint),
        })
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
        entries: Vec<Entry>,
        staged: Vec<Option<veil_store::Staged>>,
    ) -> Result<Vec<u64>, Error> {
        let key = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        let index = take_index(&mut self.pending_index, &entries);
        let r = self.store.transaction(|s| {
            let pos = append_in(s, key, entries, staged)?;
            insert_index(s, &index, &pos)?;
            Ok(pos)
        });
        Ok(restore_index(&mut self.pending_index, index, r)?)
    }

    /// Keeps the study index row of a decided study until its entry is
    /// logged. Bounded: a caller deciding studies it never logs (errors)
    /// cannot grow it without end; dropping rows only loses details from
    /// the patient's history, never a ledger entry.
    pub(crate) fn index_pending(
        &mut self,
        release_id: &str,
        inputs_digest: &str,
        row: veil_store::portal::StudyIndexRow,
    ) {
        if self.pending_index.len() >= 100_000 {
            self.pending_index.clear();
        }
        self.pending_index
            .insert((release_id.to_string(), inputs_digest.to_string()), row);
    }

    /// Appends the entries of decided studies ([`Site::decide_study`]) in
    /// one transaction with `then`, the caller's own bookkeeping, given
    /// the positions. Why together: the gateway records "decided" with the
    /// entries, so after a crash a study is either logged and marked, or
    /// neither and decided again; never logged twice or marked unlogged.
    pub fn log_decisions(
        &mut self,
        entries: Vec<Entry>,
        then: impl FnOnce(&mut Store, &[u64]) -> Result<(), StoreError>,
    ) -> Result<Vec<u64>, Error> {
        let key = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        let n = entries.len();
        let index = take_index(&mut self.pending_index, &entries);
        let r = self.store.transaction(|s| {
            let pos = append_in(s, key, entries, vec![None; n])?;
            insert_index(s, &index, &pos)?;
            then(s, &pos)?;
            Ok(pos)
        });
        Ok(restore_index(&mut self.pending_index, index, r)?)
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

/// Appends entries (their `seq` is assigned here) inside the caller's
/// transaction, each with the signed head after it; `staged[i]` is recorded
/// with entry i's position. Returns the positions. Why a function of its
/// own: a consent, default or recipient change and its entry must commit
/// in the same transaction.
type PendingIndex = std::collections::BTreeMap<(String, String), veil_store::portal::StudyIndexRow>;
type TakenIndex = Vec<Option<((String, String), veil_store::portal::StudyIndexRow)>>;

/// The pending study index rows of `entries` (releases and refusals
/// only), removed from `pending` with their keys.
fn take_index(pending: &mut PendingIndex, entries: &[Entry]) -> TakenIndex {
    entries
        .iter()
        .map(|e| match (&e.event, &e.inputs_digest) {
            (Event::Release | Event::Refusal, Some(d)) => {
                let k = (e.release_id.clone(), d.clone());
                pending.remove(&k).map(|r| (k, r))
            }
            _ => None,
        })
        .collect()
}

/// Writes the study index rows with their entries' positions.
fn insert_index(s: &mut Store, index: &TakenIndex, pos: &[u64]) -> Result<(), StoreError> {
    for (row, p) in index.iter().zip(pos) {
        if let Some((_, row)) = row {
            s.insert_study_index(&veil_store::portal::StudyIndexRow {
                ledger_seq: *p as i64,
                ..row.clone()
            })?;
        }
    }
    Ok(())
}

/// After the append: when it failed (rolled back), the rows wait again
/// for the same entries, so a caller that retries them (the gateway does)
/// still indexes its studies.
fn restore_index<T>(
    pending: &mut PendingIndex,
    index: TakenIndex,
    r: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if r.is_err() {
        pending.extend(index.into_iter().flatten());
    }
    r
}

fn append_in(
    s: &mut Store,
    key: &LedgerKey,
    mut entries: Vec<Entry>,
    staged: Vec<Option<veil_store::Staged>>,
) -> Result<Vec<u64>, StoreError> {
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
        let data =
            String::from_utf8(e.to_leaf()).map_err(|_| StoreError::Corrupt("entry".into()))?;
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
}

fn check_head(
    vk: &veil_ledger::merkle_vk::VerifyingKey,
    size: u64,
    root: &merkle::Hash,
    sig: &str,
) -> bool {
    veil_ledger::check_signature(vk, &veil_ledger::head_message(size, root), sig)
}

fn ledger_rows(store: &mut Store) -> Result<Vec<StoredRow>, Error> {
    Ok(store
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

/// Checks the ledger in `store` (rows, stored checkpoints, and `notes`
/// kept elsewhere) trusting only `verifier`, a public key: no private key
/// is opened, so an auditor with a copy of the database and the published
/// verifier key runs exactly this (see [`veil_ledger::verify_log_against`]).
///
/// The checkpoints are read before the rows: a checkpoint is stored only
/// after the rows it covers were committed, and rows are never removed,
/// so the rows read next cover every checkpoint read. The other order
/// let a `veil ledger checkpoint` committed between the two reads look
/// like a truncation to a verify running beside appends (issue 20).
pub fn verify_store(
    store: &mut Store,
    notes: &[ExternalNote],
    verifier: &NoteVerifier,
) -> Result<veil_ledger::VerifyReport, Error> {
    let cps = stored_checkpoints(store)?;
    let rows = ledger_rows(store)?;
    Ok(veil_ledger::verify_log_against(
        &rows, &cps, notes, verifier,
    ))
}

/// The stored checkpoints, smallest size first (the latest last).
fn stored_checkpoints(store: &mut Store) -> Result<Vec<Checkpoint>, Error> {
    Ok(store
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

/// The operator: `--operator`, else `$USER`, else `unknown`.
pub fn operator(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
