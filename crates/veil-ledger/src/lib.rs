//! Veil's disclosure ledger.
//!
//! Why a Merkle tree and not a plain table: a site must be able to show a
//! patient, an auditor or a court that the list of disclosures it prints is
//! the list it wrote, with nothing edited, dropped, added or reshuffled
//! since. A database row can be changed by anyone with write access; a
//! Merkle tree over the entries (RFC 6962 / RFC 9162 hashing, with leaf and
//! node domain separation so a leaf can never pass for a node) whose tree
//! heads are signed with a key kept outside the database cannot be changed
//! without the signatures failing.
//!
//! This crate is pure: hashing, proofs, signing, entry format, verification
//! of a sequence of stored rows and the audit exports. Persistence lives in
//! `veil-store`, orchestration in `veil-release`.

pub mod audit;
mod entry;
pub mod merkle;
pub mod note;
pub mod proof;
mod sign;
mod verify;

pub use entry::{Entry, Event};
pub use merkle::{Frontier, Hash};
pub use note::{NoteError, NoteVerifier, SignedNote};
pub use proof::{BundleFailure, ProofBundle, ProofError};
pub use sign::{
    head_message, key_id, note_verifier, origin, verifying_key_from_hex, Checkpoint, KeyFileError,
    LedgerKey,
};

/// `web/proof.js`: the browser's check of a [`ProofBundle`] (SHA-256 audit
/// path, then the checkpoint's Ed25519 signature with WebCrypto). It lives
/// here, beside the Rust it mirrors, so the two change together; the
/// portal serves it as a static file, since its Content-Security-Policy
/// allows no inline script.
pub const PROOF_JS: &str = include_str!("../web/proof.js");

/// The verifying key type (re-exported so callers need not depend on
/// ed25519-dalek).
pub mod merkle_vk {
    pub use ed25519_dalek::VerifyingKey;
}

/// Checks a hex Ed25519 signature over `msg`.
pub fn check_signature(k: &ed25519_dalek::VerifyingKey, msg: &str, sig_hex: &str) -> bool {
    sign::check(k, msg, sig_hex)
}
pub use verify::{verify_log, verify_log_against, ExternalNote, Problem, StoredRow, VerifyReport};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex; `None` on any bad digit or odd length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// Parses 64 hex digits into a hash.
pub fn unhex32(s: &str) -> Option<Hash> {
    unhex(s)?.try_into().ok()
}
