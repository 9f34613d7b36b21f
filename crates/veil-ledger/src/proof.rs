//! Proof bundles: one entry, its inclusion proof and the signed checkpoint
//! it is proved against (`veil ledger proof`).
//!
//! Why a self-contained bundle: a patient's portal shows the entries about
//! them, and the point of the ledger is that they need not take the site's
//! word for it. The bundle carries everything a third party needs (the
//! exact leaf bytes, the audit path, the C2SP checkpoint note and the
//! verifier key) so that the check can run somewhere the site does not
//! control: the patient's browser (`web/proof.js`), a few lines of Python,
//! an auditor's tool. Nothing in it is trusted by itself: the root and the
//! size come from the signed note, and the `root` and `tree_size` fields
//! are only cross-checked against it.
//!
//! The one thing a bundle cannot prove is that its verifier key is the
//! hospital's: whoever builds the page can build a whole consistent bundle
//! under a key of their own. The key must be compared with one published
//! out of band (letterhead, the data-protection board's minutes, a witness).

use serde::{Deserialize, Serialize};

use crate::merkle::{self, Hash};
use crate::note::{parse_checkpoint_text, NoteVerifier, SignedNote};
use crate::sign::Checkpoint;
use crate::{hex, unhex32};

/// The `format` of bundles this version writes and reads.
pub const BUNDLE_FORMAT: &str = "veil-ledger-proof/1";

/// What `veil ledger proof --json` prints (field names are documented in
/// docs/ledger.md and read by `web/proof.js`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The entry's position (0-based leaf index).
    pub index: u64,
    /// The entry exactly as hashed: the leaf is `SHA-256(0x00 || UTF-8
    /// bytes of this string)`. Kept as text, not hex, so a reader sees what
    /// was disclosed; JSON strings carry UTF-8 text losslessly.
    pub leaf: String,
    /// Entries covered by the checkpoint (must equal the note's size).
    pub tree_size: u64,
    /// Root of those entries, hex (must equal the note's root).
    pub root: String,
    /// The RFC 6962 audit path, leaf to root, hex.
    pub proof: Vec<String>,
    /// The checkpoint as a C2SP signed note, byte for byte as signed.
    pub checkpoint: String,
    /// `NAME+KEYID+BASE64`, as `veil ledger pubkey` prints it.
    pub verifier_key: String,
}

/// Why a bundle could not be made. Each message says what to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No entry at that position.
    #[error("no ledger entry at position {position}: the log has {entries} entries")]
    NoEntry {
        /// The position asked for.
        position: u64,
        /// Entries in the log.
        entries: u64,
    },
    /// No checkpoint yet.
    #[error("the ledger has no checkpoint yet; run `veil ledger checkpoint` first")]
    NoCheckpoint,
    /// The latest checkpoint was signed before the entry was appended.
    #[error(
        "position {position} is not covered by the latest checkpoint (size {size}); \
         run `veil ledger checkpoint` first"
    )]
    NotCovered {
        /// The position asked for.
        position: u64,
        /// The latest checkpoint's size.
        size: u64,
    },
    /// The stored log no longer matches its own checkpoint: a proof would
    /// fail, and the log must be looked at first.
    #[error("the log does not match its latest checkpoint (size {0}); run `veil ledger verify`")]
    LogMismatch(u64),
    /// The latest checkpoint does not verify as a signed note under the
    /// ledger's key (signed by an earlier version over another text, or
    /// altered in the database).
    #[error(
        "the latest checkpoint does not verify as a signed note ({0}); \
         run `veil ledger verify`, then `veil ledger checkpoint`"
    )]
    BadCheckpoint(String),
}

/// The bundle proving entry `index` of `leaves` (the entries' exact leaf
/// data, in log order) against `checkpoint`, the latest one, signed by
/// `verifier`'s key. The bundle is checked before it is returned, so the
/// site never hands out a proof that it knows fails.
pub fn bundle(
    leaves: &[&str],
    index: u64,
    checkpoint: &Checkpoint,
    verifier: &NoteVerifier,
) -> Result<ProofBundle, ProofError> {
    let hashes: Vec<Hash> = leaves
        .iter()
        .map(|l| merkle::leaf_hash(l.as_bytes()))
        .collect();
    bundle_hashed(
        &hashes,
        |i| leaves[i].to_string(),
        index,
        checkpoint,
        verifier,
    )
}

/// [`bundle`] over the leaves' hashes, for a reader that keeps them (the
/// portal's ledger cache: hashing every entry again per proof is what
/// does not scale). `leaf(i)` gives entry i's exact leaf data; it is only
/// asked for `index`. Same checks, same errors, same bundle as [`bundle`]
/// over the leaves these hashes are of.
pub fn bundle_hashed(
    hashes: &[Hash],
    leaf: impl FnOnce(usize) -> String,
    index: u64,
    checkpoint: &Checkpoint,
    verifier: &NoteVerifier,
) -> Result<ProofBundle, ProofError> {
    let entries = hashes.len() as u64;
    if index >= entries {
        return Err(ProofError::NoEntry {
            position: index,
            entries,
        });
    }
    let size = checkpoint.size;
    if index >= size {
        return Err(ProofError::NotCovered {
            position: index,
            size,
        });
    }
    if size > entries {
        return Err(ProofError::LogMismatch(size));
    }
    let hashes = &hashes[..size as usize];
    let root = merkle::root(hashes);
    if unhex32(&checkpoint.root) != Some(root) {
        return Err(ProofError::LogMismatch(size));
    }
    let b = ProofBundle {
        format: BUNDLE_FORMAT.into(),
        index,
        leaf: leaf(index as usize),
        tree_size: size,
        root: hex(&root),
        proof: merkle::inclusion_proof(index as usize, hashes)
            .iter()
            .map(|h| hex(h))
            .collect(),
        checkpoint: checkpoint.note(verifier.key()),
        verifier_key: verifier.to_string(),
    };
    b.verify()
        .map_err(|e| ProofError::BadCheckpoint(e.to_string()))?;
    Ok(b)
}

/// Why a bundle does not verify. The messages are the reasons
/// `web/proof.js` gives for the same failures, so the portal, the browser
/// and the tests speak alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleFailure {
    /// Not a bundle this version reads.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// The note is not signed by the verifier key (or speaks for another
    /// log).
    #[error("wrong key: the checkpoint is not signed by the given verifier key")]
    WrongKey,
    /// A signature by the verifier key does not verify.
    #[error("bad signature: the checkpoint was altered after it was signed")]
    BadSignature,
    /// The bundle's root or size is not the signed one.
    #[error("root does not match checkpoint")]
    RootMismatch,
    /// The audit path does not lead from the leaf to the signed root.
    #[error("leaf not in tree: the entry is not at this position in the signed log")]
    NotIncluded,
}

impl ProofBundle {
    /// Checks the bundle as an independent party would, trusting nothing
    /// but its verifier key: the note's signature, the root and size it
    /// signs, then the audit path from the leaf to that root.
    pub fn verify(&self) -> Result<(), BundleFailure> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleFailure::Malformed(format!(
                "format is not {BUNDLE_FORMAT}"
            )));
        }
        let v = NoteVerifier::parse(&self.verifier_key)
            .map_err(|e| BundleFailure::Malformed(e.to_string()))?;
        let note = SignedNote::parse(self.checkpoint.as_bytes())
            .map_err(|e| BundleFailure::Malformed(e.to_string()))?;
        let text = v.open(&note).map_err(|e| match e {
            crate::NoteError::BadSignature(_) => BundleFailure::BadSignature,
            _ => BundleFailure::WrongKey,
        })?;
        let head =
            parse_checkpoint_text(text).map_err(|e| BundleFailure::Malformed(e.to_string()))?;
        // a note by this key about another log is not this log's head
        if head.origin != v.name() {
            return Err(BundleFailure::WrongKey);
        }
        if head.size != self.tree_size || unhex32(&self.root) != Some(head.root) {
            return Err(BundleFailure::RootMismatch);
        }
        let path = self
            .proof
            .iter()
            .map(|h| unhex32(h))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| BundleFailure::Malformed("a proof hash is not 64 hex digits".into()))?;
        let leaf = merkle::leaf_hash(self.leaf.as_bytes());
        if merkle::verify_inclusion(self.index, head.size, &leaf, &path, &head.root) {
            Ok(())
        } else {
            Err(BundleFailure::NotIncluded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LedgerKey;

    fn log(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{{\"seq\":{i}}}")).collect()
    }

    fn checkpoint(k: &LedgerKey, leaves: &[String]) -> Checkpoint {
        let h: Vec<Hash> = leaves
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        k.checkpoint(
            h.len() as u64,
            merkle::root(&h),
            "2026-01-01T00:00:00Z".into(),
        )
    }

    #[test]
    fn every_position_of_every_small_log_proves_and_tampering_names_the_reason() {
        let k = LedgerKey::from_seed([5; 32]);
        for n in 1..=9 {
            let l = log(n);
            let refs: Vec<&str> = l.iter().map(String::as_str).collect();
            let c = checkpoint(&k, &l);
            for i in 0..n as u64 {
                let b = bundle(&refs, i, &c, &k.note_verifier()).unwrap();
                assert_eq!(b.verify(), Ok(()), "{i}/{n}");
                let mut t = b.clone();
                t.leaf.push(' ');
                assert_eq!(t.verify(), Err(BundleFailure::NotIncluded));
                let mut t = b.clone();
                t.index = (i + 1) % n as u64;
                if n > 1 {
                    assert_eq!(t.verify(), Err(BundleFailure::NotIncluded));
                }
                let mut t = b.clone();
                t.tree_size += 1;
                assert_eq!(t.verify(), Err(BundleFailure::RootMismatch));
            }
        }
    }

    #[test]
    fn altered_notes_and_other_keys_fail() {
        let k = LedgerKey::from_seed([5; 32]);
        let other = LedgerKey::from_seed([6; 32]);
        let l = log(5);
        let refs: Vec<&str> = l.iter().map(String::as_str).collect();
        let b = bundle(&refs, 2, &checkpoint(&k, &l), &k.note_verifier()).unwrap();
        // the note altered: its size line changed
        let mut t = b.clone();
        t.checkpoint = t.checkpoint.replacen("\n5\n", "\n4\n", 1);
        assert_eq!(t.verify(), Err(BundleFailure::BadSignature));
        // a note by another key, checked with the bundle's key
        let mut t = b.clone();
        t.checkpoint = checkpoint(&other, &l).note(&other.verifying_key());
        assert_eq!(t.verify(), Err(BundleFailure::WrongKey));
        // the root field changed (the note still intact)
        let mut t = b.clone();
        t.root = hex(&[0u8; 32]);
        assert_eq!(t.verify(), Err(BundleFailure::RootMismatch));
    }

    #[test]
    fn proof_js_gives_the_same_reasons() {
        // the browser and the server must name a failure alike
        for f in [
            BundleFailure::WrongKey,
            BundleFailure::BadSignature,
            BundleFailure::RootMismatch,
            BundleFailure::NotIncluded,
        ] {
            assert!(crate::PROOF_JS.contains(&format!("'{f}'")), "{f}");
        }
        assert!(crate::PROOF_JS.contains(&format!("'{BUNDLE_FORMAT}'")));
    }

    #[test]
    fn a_bundle_is_refused_when_the_checkpoint_does_not_cover_or_match() {
        let k = LedgerKey::from_seed([5; 32]);
        let l = log(4);
        let refs: Vec<&str> = l.iter().map(String::as_str).collect();
        let c = checkpoint(&k, &l[..3]);
        let v = k.note_verifier();
        assert_eq!(
            bundle(&refs, 3, &c, &v),
            Err(ProofError::NotCovered {
                position: 3,
                size: 3
            })
        );
        assert!(matches!(
            bundle(&refs, 4, &c, &v),
            Err(ProofError::NoEntry { .. })
        ));
        let mut edited = l.clone();
        edited[1].push(' ');
        let refs: Vec<&str> = edited.iter().map(String::as_str).collect();
        assert_eq!(bundle(&refs, 0, &c, &v), Err(ProofError::LogMismatch(3)));
        // a checkpoint signed by another key than the one the bundle names
        let other = LedgerKey::from_seed([6; 32]).note_verifier();
        let refs: Vec<&str> = l.iter().map(String::as_str).collect();
        assert!(matches!(
            bundle(&refs, 0, &c, &other),
            Err(ProofError::BadCheckpoint(_))
        ));
    }
}
