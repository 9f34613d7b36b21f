//! One ledger entry: one decision about one patient-study, or one deletion.
//!
//! Entries hold no raw PHI. The patient and the input study are referenced
//! by keyed hashes (HMAC-SHA256 under the site's ledger key), so the site,
//! which holds the key, can find every entry about a patient, while the log
//! alone (a backup, an auditor's copy) identifies no one. The instance UIDs
//! of the input appear only as one SHA-256 digest, which proves what was
//! sent without listing it.

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A study was de-identified and released to a recipient.
    Release,
    /// A study was not released (consent, ambiguity, verification).
    Refusal,
    /// A staged output was deleted because its retention ended.
    RetentionDelete,
    /// A version of a patient's consent record was stored. `patient_ref`
    /// is the patient, `output_digest` the keyed digest of the version (id,
    /// version, patient, content, source): a release uses a patient's
    /// consent rows only when they are exactly the ones logged.
    ConsentChange,
    /// A site default was set. `purpose` is the purpose, `output_digest`
    /// the keyed digest of (purpose, mode), `reason` says the mode.
    SiteDefaultChange,
    /// A recipient was registered or changed. It pins what a release will
    /// use: `key_id` the id of its key, `recipe` its label,
    /// `inputs_digest` the SHA-256 of its recipe text, `output_digest` the
    /// keyed digest of its whole registration (category, purposes,
    /// contact, address, retention, key file and a 256-bit digest of the
    /// key, recipe digest).
    RecipientChange,
    /// A recipient's pseudonymization key was replaced by a new one; pins
    /// as for [`Event::RecipientChange`].
    RecipientKeyRotation,
    /// A recipient was removed: it can receive nothing more, and its
    /// earlier entries stay. `recipient` names it.
    RecipientRemoval,
    /// A person approved an object held for review: it was moved into the
    /// output folder. `operator` is the reviewer, `output_digest` the
    /// SHA-256 of the object, `output_study_uid` its pseudonymous study,
    /// `reason` why it was held.
    ReviewApproval,
    /// A person rejected an object held for review: it was deleted.
    /// Fields as for [`Event::ReviewApproval`].
    ReviewRejection,
    /// A member of staff acted through the console or `veil staff`
    /// (issue 19): an account added, a sign-in, a patient looked up.
    /// `operator` is who acted, `reason` what was done (no value typed by
    /// anyone), `patient_ref` the patient looked up, if any. Appended
    /// after the existing variants: older ledgers never contain it, so
    /// they parse and verify as before.
    StaffAction,
}

/// A ledger entry. Field order is the canonical serialization order: the
/// leaf is the exact JSON bytes stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Entry format version (1).
    pub v: u32,
    /// Position in the log (0-based).
    pub seq: u64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// What happened.
    pub event: Event,
    /// The release run this belongs to.
    pub release_id: String,
    /// Recipient name.
    pub recipient: String,
    /// Purpose of use.
    pub purpose: String,
    /// Recipe name and version.
    pub recipe: String,
    /// Id (hash) of the recipient's pseudonymization key.
    pub key_id: String,
    /// Keyed hash of the patient (issuer + PatientID); `None` when the
    /// input had no PatientID.
    pub patient_ref: Option<String>,
    /// Keyed hash of the input StudyInstanceUID.
    pub study_ref: Option<String>,
    /// The pseudonymous StudyInstanceUID the recipient holds (releases).
    pub output_study_uid: Option<String>,
    /// Instances in the study (input side).
    pub instances: u64,
    /// SHA-256 of the sorted input SOP Instance UIDs, one per line.
    pub inputs_digest: Option<String>,
    /// SHA-256 over the released files (relative path and SHA-256 of each).
    pub output_digest: Option<String>,
    /// `pass`, `fail`, or `not-run` (no verifier wired).
    pub verification: String,
    /// Who ran it.
    pub operator: String,
    /// The rule that decided, or why it was refused.
    pub reason: String,
    /// For a deletion: the release entry whose output was deleted.
    pub refers_to: Option<u64>,
}

impl Entry {
    /// The leaf data: canonical JSON.
    pub fn to_leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entry serializes")
    }

    /// Parses stored leaf data.
    pub fn from_leaf(data: &str) -> Result<Entry, serde_json::Error> {
        serde_json::from_str(data)
    }
}
