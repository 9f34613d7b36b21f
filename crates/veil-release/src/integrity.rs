//! Consent, site defaults and recipients under the ledger.
//!
//! Why: the store can be written by anyone with database access (a DBA, a
//! backup restore, an attacker with the credentials), without any of the
//! keys. Each consent version, site default and recipient registration is
//! therefore logged as a ledger entry holding a digest keyed with the site
//! key (so nobody without it can compute a matching one) and the keyed
//! patient reference, never a patient ID. Before a release uses them, the
//! rows are checked against the latest logged digests:
//!
//! * a patient's consent rows must be exactly the versions logged for that
//!   patient: a deleted, edited, moved or added row refuses that patient's
//!   studies (fail closed), whatever the rest of the release does;
//! * the site default for the purpose must be the one last logged (or
//!   absent when none was): otherwise the release does not run;
//! * the recipient's key file, recipe and registration must match the
//!   pins of its last registration or key rotation: otherwise the release
//!   does not run, and the error names which one differs.
//!
//! The ledger rows themselves are checked first against the signed head
//! stored with the last entry, so an entry cannot be dropped or edited to
//! make room for a changed row.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use veil_consent::{Consent, Recipient, SiteDefault};
use veil_deid::Key;
use veil_ledger::{merkle, Entry, Event};
use veil_store::ConsentVersion;

use crate::{append_in, check_head, operator, signing_key, Error, Site};

/// `veil consent import` output: counts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Consent resources in the file.
    pub records: usize,
    /// New versions stored (records new or changed since the last import).
    pub new_versions: usize,
}

/// A keyed digest (HMAC-SHA256 under the site key) of canonical JSON.
fn keyed(sk: &Key, label: &str, v: &serde_json::Value) -> String {
    veil_ledger::hex(&sk.mac(label, v.to_string().as_bytes()))
}

/// SHA-256 of some bytes, hex (a recipe's pin in the ledger).
pub fn sha256_hex(bytes: &[u8]) -> String {
    veil_ledger::hex(&Sha256::digest(bytes))
}

/// The digest of one stored consent version: everything a decision or an
/// export reads from the row.
fn consent_digest(sk: &Key, v: &ConsentVersion) -> String {
    let c = &v.consent;
    keyed(
        sk,
        "veil consent version",
        &json!({
            "id": c.id,
            "version": v.version,
            "patient_ref": v.patient_ref,
            "patient_id": c.patient_id.expose(),
            "patient_system": c.patient_system,
            "status": c.status,
            "date_time": c.date_time,
            "provisions": c.provisions,
            "source": v.source,
        }),
    )
}

fn default_digest(sk: &Key, purpose: &str, d: SiteDefault) -> String {
    keyed(
        sk,
        "veil site default",
        &json!({"purpose": purpose, "mode": d.as_str()}),
    )
}

/// The digest of a recipient's whole registration, its key included (by a
/// 256-bit MAC under the key itself, which reveals nothing of it).
fn registration_digest(sk: &Key, r: &Recipient, key: &Key) -> String {
    keyed(
        sk,
        "veil recipient registration",
        &json!({
            "name": r.name,
            "category": r.category,
            "contact": r.contact,
            "address": r.address,
            "purposes": r.purposes,
            "recipe_label": r.recipe_label,
            "recipe_sha256": sha256_hex(r.recipe_toml.as_bytes()),
            "key_file": r.key_file,
            "key_id": r.key_id,
            "key_digest": veil_ledger::hex(&key.mac("veil recipient key pin", b"")),
            "retention_days": r.retention_days,
        }),
    )
}

/// An entry about a change (no study, no release).
fn change_entry(event: Event, digest: String, reason: String) -> Entry {
    Entry {
        v: 1,
        seq: 0,
        time: veil_consent::now(),
        event,
        release_id: String::new(),
        recipient: String::new(),
        purpose: String::new(),
        recipe: String::new(),
        key_id: String::new(),
        patient_ref: None,
        study_ref: None,
        output_study_uid: None,
        instances: 0,
        inputs_digest: None,
        output_digest: Some(digest),
        verification: "not-applicable".into(),
        operator: operator(None),
        reason,
        refers_to: None,
    }
}

/// The entry logging a new consent version.
pub(crate) fn consent_entry(sk: &Key, v: &ConsentVersion) -> Entry {
    let mut e = change_entry(
        Event::ConsentChange,
        consent_digest(sk, v),
        format!(
            "consent record version {} from {}: {}, {} provisions",
            v.version,
            v.source,
            v.consent.status,
            v.consent.provisions.len()
        ),
    );
    e.patient_ref = Some(v.patient_ref.clone());
    e
}

/// The entry logging a site default.
pub(crate) fn default_entry(sk: &Key, purpose: &str, d: SiteDefault) -> Entry {
    let mut e = change_entry(
        Event::SiteDefaultChange,
        default_digest(sk, purpose, d),
        format!("site default for {purpose}: {}", d.as_str()),
    );
    e.purpose = purpose.to_string();
    e
}

/// The entry pinning a recipient's key, recipe and registration.
pub(crate) fn recipient_entry(sk: &Key, event: Event, r: &Recipient, key: &Key) -> Entry {
    let what = match event {
        Event::RecipientKeyRotation => "key rotated",
        _ => "registered",
    };
    let mut e = change_entry(
        event,
        registration_digest(sk, r, key),
        format!("recipient {what}; key, recipe and registration pinned"),
    );
    e.recipient = r.name.clone();
    e.recipe = r.recipe_label.clone();
    e.key_id = r.key_id.clone();
    e.inputs_digest = Some(sha256_hex(r.recipe_toml.as_bytes()));
    e
}

/// The fields `veil recipient update` may change; `None` (or no
/// purposes) keeps the current value, an empty text clears an optional
/// field.
#[derive(Debug, Clone, Default)]
pub struct RecipientUpdate {
    /// A recipe file to read again.
    pub recipe: Option<std::path::PathBuf>,
    /// The new purposes (all of them).
    pub purposes: Vec<String>,
    /// Retention in days.
    pub retention_days: Option<u32>,
    /// Category.
    pub category: Option<String>,
    /// Contact.
    pub contact: Option<String>,
    /// Postal address.
    pub address: Option<String>,
}

/// What the ledger says the rows must be.
pub(crate) struct Coverage {
    /// Patient ref -> the digests of every consent version logged, sorted.
    consents: BTreeMap<String, Vec<String>>,
    /// Purpose -> the digest of the last default logged.
    defaults: BTreeMap<String, String>,
    /// Recipient -> its last registration or key rotation entry.
    pins: BTreeMap<String, Entry>,
}

impl Site {
    /// Reads the ledger, checked against the signed head stored with its
    /// last entry, into what the consent, default and recipient rows must
    /// be.
    fn coverage(&mut self) -> Result<Coverage, Error> {
        let rows = self.ledger_rows()?;
        let leaves: Vec<merkle::Hash> = rows
            .iter()
            .map(|r| merkle::leaf_hash(r.entry.as_bytes()))
            .collect();
        let vk = self.ledger_vk;
        if rows.last().is_some_and(|last| {
            !check_head(
                &vk,
                leaves.len() as u64,
                &merkle::root(&leaves),
                &last.head_sig,
            )
        }) {
            return Err(Error::Invalid(
                "the ledger does not match its signed head, so the consent and recipient records it covers cannot be trusted; run `veil ledger verify`".into(),
            ));
        }
        let mut c = Coverage {
            consents: BTreeMap::new(),
            defaults: BTreeMap::new(),
            pins: BTreeMap::new(),
        };
        for r in &rows {
            let e = Entry::from_leaf(&r.entry).map_err(|_| {
                Error::Invalid(format!(
                    "ledger entry {} does not parse; run `veil ledger verify`",
                    r.seq
                ))
            })?;
            let digest = e.output_digest.clone().unwrap_or_default();
            match e.event {
                Event::ConsentChange => c
                    .consents
                    .entry(e.patient_ref.clone().unwrap_or_default())
                    .or_default()
                    .push(digest),
                Event::SiteDefaultChange => {
                    c.defaults.insert(e.purpose.clone(), digest);
                }
                Event::RecipientChange | Event::RecipientKeyRotation => {
                    c.pins.insert(e.recipient.clone(), e);
                }
                // a removed recipient has no pins: nothing can be released
                // to it, even if its row is brought back outside Veil
                Event::RecipientRemoval => {
                    c.pins.remove(&e.recipient);
                }
                Event::Release
                | Event::Refusal
                | Event::RetentionDelete
                | Event::ReviewApproval
                | Event::ReviewRejection
                | Event::StaffAction => {}
            }
        }
        for d in c.consents.values_mut() {
            d.sort();
        }
        Ok(c)
    }

    /// Checks a recipient's key file, recipe and registration against
    /// their pins; the error names the first that differs.
    fn check_pins(&mut self, cov: &Coverage, r: &Recipient) -> Result<(), Error> {
        let pin = cov.pins.get(&r.name).ok_or_else(|| {
            Error::Invalid(format!(
                "recipient {}: no ledger entry pins its key and recipe (was it added outside Veil?)",
                r.name
            ))
        })?;
        let key = Key::load(Path::new(&r.key_file))
            .map_err(|e| Error::Key(format!("recipient key: {e}")))?;
        if key.id() != pin.key_id {
            return Err(Error::Key(format!(
                "recipient {}: its key file does not match the key pinned in the ledger",
                r.name
            )));
        }
        if Some(sha256_hex(r.recipe_toml.as_bytes())) != pin.inputs_digest {
            return Err(Error::Invalid(format!(
                "recipient {}: its recipe does not match the recipe pinned in the ledger",
                r.name
            )));
        }
        if Some(registration_digest(&self.site_key, r, &key)) != pin.output_digest {
            return Err(Error::Invalid(format!(
                "recipient {}: its registration (category, purposes, contact, address, retention, key file or key) does not match the ledger",
                r.name
            )));
        }
        Ok(())
    }

    /// Checks what a release is about to rely on: the recipient's pins and
    /// the site default for the purpose. Returns the coverage the
    /// per-patient check ([`Site::covered_consents`]) uses.
    pub(crate) fn check_release_inputs(
        &mut self,
        r: &Recipient,
        purpose: &str,
    ) -> Result<Coverage, Error> {
        let cov = self.coverage()?;
        self.check_pins(&cov, r)?;
        let have = self
            .store
            .default_for(purpose)?
            .map(|d| default_digest(&self.site_key, purpose, d));
        if have.as_ref() != cov.defaults.get(purpose) {
            return Err(Error::Invalid(format!(
                "the site default for {purpose} does not match the ledger (changed outside Veil); nothing is released"
            )));
        }
        Ok(cov)
    }

    /// A patient's current consent records, if their rows are exactly the
    /// versions the ledger logged for the patient; else the refusal reason.
    pub(crate) fn covered_consents(
        &mut self,
        cov: &Coverage,
        pref: &str,
    ) -> Result<Result<Vec<Consent>, String>, Error> {
        let versions = self.store.consent_versions_for(pref)?;
        let mut have: Vec<String> = versions
            .iter()
            .map(|v| consent_digest(&self.site_key, v))
            .collect();
        have.sort();
        if cov.consents.get(pref).map_or(&[][..], Vec::as_slice) != have.as_slice() {
            return Ok(Err(
                "consent: the stored consent records differ from the ledger (changed outside Veil)"
                    .into(),
            ));
        }
        Ok(Ok(veil_store::current_versions(versions)))
    }

    /// An error unless a patient's consent rows are exactly the logged
    /// versions (before a change is built on them).
    pub(crate) fn check_patient_consents(&mut self, pref: &str) -> Result<(), Error> {
        let cov = self.coverage()?;
        match self.covered_consents(&cov, pref)? {
            Ok(_) => Ok(()),
            Err(why) => Err(Error::Invalid(format!("{why}; nothing recorded"))),
        }
    }

    /// Logs the recipients, site defaults and consent versions of a store
    /// from before they were logged (`veil consent adopt`), so that its
    /// releases can run. Only once: it refuses when the ledger already
    /// covers any of them, so it can never bless a later change made
    /// outside Veil. A recipient whose key file does not match its key id
    /// is refused. Returns (recipients, defaults, consent versions) logged.
    pub fn adopt_unlogged(&mut self) -> Result<(usize, usize, usize), Error> {
        let cov = self.coverage()?;
        if !(cov.consents.is_empty() && cov.defaults.is_empty() && cov.pins.is_empty()) {
            return Err(Error::Invalid(
                "the ledger already covers consents, site defaults or recipients: adopting is only for a store from before they were logged".into(),
            ));
        }
        let mut entries = Vec::new();
        let recipients = self.store.recipients()?;
        for r in &recipients {
            let key = Key::load(Path::new(&r.key_file))
                .map_err(|e| Error::Key(format!("recipient key: {e}")))?;
            if key.id() != r.key_id {
                return Err(Error::Key(format!(
                    "recipient {}: its key file does not match its registered key id",
                    r.name
                )));
            }
            entries.push(recipient_entry(
                &self.site_key,
                Event::RecipientChange,
                r,
                &key,
            ));
        }
        let defaults = self.store.query(
            "SELECT purpose, mode FROM site_defaults ORDER BY purpose",
            &[],
        )?;
        for d in &defaults {
            let purpose = d[0].text().unwrap_or_default();
            let mode = d[1].text().and_then(SiteDefault::parse).ok_or_else(|| {
                Error::Invalid(format!(
                    "the site default for {purpose} is not opt-in|opt-out"
                ))
            })?;
            entries.push(default_entry(&self.site_key, purpose, mode));
        }
        let refs = self.store.query(
            "SELECT DISTINCT patient_ref FROM consents ORDER BY patient_ref",
            &[],
        )?;
        let mut versions = 0;
        for r in &refs {
            for v in self
                .store
                .consent_versions_for(r[0].text().unwrap_or_default())?
            {
                entries.push(consent_entry(&self.site_key, &v));
                versions += 1;
            }
        }
        let n = entries.len();
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store
            .transaction(|s| append_in(s, lk, entries, vec![None; n]))?;
        Ok((recipients.len(), defaults.len(), versions))
    }

    /// `veil recipient update`: changes a recipient's registration (the
    /// recipe is read again from `recipe`, so a changed file takes effect;
    /// other fields change when given) and pins the result in a ledger
    /// entry in the same transaction. The current registration is checked
    /// against its pins first, as for a key rotation.
    pub fn update_recipient(&mut self, name: &str, u: RecipientUpdate) -> Result<Recipient, Error> {
        let mut r = self
            .store
            .recipient(name)?
            .ok_or_else(|| Error::Invalid(format!("no recipient named {name}")))?;
        let cov = self.coverage()?;
        self.check_pins(&cov, &r)?;
        if let Some(path) = &u.recipe {
            let text = std::fs::read_to_string(path).map_err(Error::io("reading the recipe"))?;
            let parsed =
                veil_rules::Recipe::parse(&text).map_err(|e| Error::Invalid(e.to_string()))?;
            r.recipe_label = match &parsed.version {
                Some(v) => format!("{} {v}", parsed.name),
                None => parsed.name.clone(),
            };
            r.recipe_toml = text;
        }
        if !u.purposes.is_empty() {
            r.purposes = u.purposes;
        }
        if let Some(d) = u.retention_days {
            r.retention_days = d;
        }
        if let Some(c) = u.category {
            r.category = Some(c).filter(|c| !c.is_empty());
        }
        if let Some(c) = u.contact {
            r.contact = Some(c).filter(|c| !c.is_empty());
        }
        if let Some(a) = u.address {
            r.address = Some(a).filter(|a| !a.is_empty());
        }
        let key = Key::load(Path::new(&r.key_file))
            .map_err(|e| Error::Key(format!("recipient key: {e}")))?;
        let e = recipient_entry(&self.site_key, Event::RecipientChange, &r, &key);
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store.transaction(|s| {
            s.update_recipient(&r)?;
            append_in(s, lk, vec![e], vec![None])
        })?;
        Ok(r)
    }

    /// `veil recipient remove`: the recipient can receive nothing more.
    /// Its row stays (marked removed) and so does every ledger entry that
    /// names it; a `recipient-removal` entry is appended in the same
    /// transaction and removes its pins, so no release can use it again.
    pub fn remove_recipient(&mut self, name: &str) -> Result<(), Error> {
        if self.store.recipient(name)?.is_none() {
            return Err(Error::Invalid(format!("no recipient named {name}")));
        }
        let mut e = change_entry(
            Event::RecipientRemoval,
            keyed(
                &self.site_key,
                "veil recipient removal",
                &json!({ "name": name }),
            ),
            "recipient removed; it can receive nothing more".into(),
        );
        e.recipient = name.to_string();
        let now = e.time.clone();
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store.transaction(|s| {
            s.remove_recipient(name, &now)?;
            append_in(s, lk, vec![e], vec![None])
        })?;
        Ok(())
    }

    /// Replaces a recipient's pseudonymization key with a new one, created
    /// explicitly here (`$VEIL_HOME/keys/NAME.kN.key`, 0600, never printed),
    /// and pins it in a ledger entry in the same transaction. The old key
    /// file is kept (the pseudonyms already released were made with it).
    /// The current registration is checked first: rotating must not bless
    /// a recipient changed outside Veil.
    pub fn rotate_key(&mut self, name: &str) -> Result<Recipient, Error> {
        let mut r = self
            .store
            .recipient(name)?
            .ok_or_else(|| Error::Invalid(format!("no recipient named {name}")))?;
        let cov = self.coverage()?;
        self.check_pins(&cov, &r)?;
        let keys = self.home.join("keys");
        let path = (2..)
            .map(|n| keys.join(format!("{name}.k{n}.key")))
            .find(|p| !p.exists())
            .unwrap_or_default();
        let key = Key::create_file(&path).map_err(|e| Error::Key(format!("recipient key: {e}")))?;
        r.key_file = path.display().to_string();
        r.key_id = key.id();
        let e = recipient_entry(&self.site_key, Event::RecipientKeyRotation, &r, &key);
        let lk = signing_key(&self.ledger_key, &self.ledger_key_path)?;
        self.store.transaction(|s| {
            s.set_recipient_key(&r.name, &r.key_file, &r.key_id)?;
            append_in(s, lk, vec![e], vec![None])
        })?;
        Ok(r)
    }
}
