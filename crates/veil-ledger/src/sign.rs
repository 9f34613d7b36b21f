//! Signed tree heads.
//!
//! Why every entry carries a signed head, and not only the checkpoints: the
//! signature over "the tree of the first i+1 entries has root R" stored with
//! entry i lets `ledger verify` name the *first* position at which the
//! stored log stops matching what was signed, whatever was done to the rows
//! (edited, deleted, inserted, reordered); someone who can write to the
//! database but not read the key file cannot forge it. Checkpoints
//! (`veil ledger checkpoint`) are the same signature plus a time, meant to
//! be copied outside the site (printed, mailed to an auditor), so that a
//! truncated log, or one re-signed by someone who stole the key, is still
//! caught by comparing with a head held elsewhere.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::note::{self, checkpoint_text, NoteVerifier};
use crate::{hex, unhex, unhex32};

/// Key file errors (never show the key).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("ledger key file: {0}")]
    Io(#[from] std::io::Error),
    /// Group or others may read it.
    #[error(
        "ledger key file permissions are {0:o}; it must be readable by its owner only (chmod 600)"
    )]
    Permissions(u32),
    /// Not 64 hex digits.
    #[error("ledger key file does not hold a 32-byte Ed25519 seed (64 hex digits)")]
    Format,
    /// No system random source.
    #[error("no system random source")]
    Random,
}

/// The site's Ed25519 ledger signing key. `Debug` shows only its id.
pub struct LedgerKey(SigningKey);

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LedgerKey(id {})", self.id())
    }
}

impl LedgerKey {
    /// A key from a 32-byte seed (tests).
    pub fn from_seed(seed: [u8; 32]) -> LedgerKey {
        LedgerKey(SigningKey::from_bytes(&seed))
    }

    /// Loads the key file at `path`. Never creates it: a ledger key is
    /// made only by `veil init` ([`LedgerKey::create`]), because a key
    /// silently recreated would sign a log nobody can tie to the old one.
    pub fn load(path: &Path) -> Result<LedgerKey, KeyFileError> {
        Ok(LedgerKey::from_seed(read_secret(path)?))
    }

    /// Creates a new key file at `path` (mode 0600, 32 random bytes);
    /// refuses to overwrite an existing one.
    pub fn create(path: &Path) -> Result<LedgerKey, KeyFileError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|_| KeyFileError::Random)?;
        write_secret(path, &seed)?;
        Ok(LedgerKey::from_seed(seed))
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// A short public id of the key: the first 8 bytes of SHA-256 of the
    /// public key.
    pub fn id(&self) -> String {
        key_id(&self.verifying_key())
    }

    /// Signs the head "the first `size` entries have root `root`".
    pub fn sign_head(&self, size: u64, root: &Hash) -> String {
        hex(&self.0.sign(head_message(size, root).as_bytes()).to_bytes())
    }

    /// Signs a checkpoint.
    pub fn checkpoint(&self, size: u64, root: Hash, time: String) -> Checkpoint {
        let mut c = Checkpoint {
            size,
            root: hex(&root),
            time,
            key_id: self.id(),
            signature: String::new(),
        };
        c.signature = hex(&self.0.sign(c.body().as_bytes()).to_bytes());
        c
    }

    /// The verifier key of this ledger's notes (`veil ledger pubkey`).
    pub fn note_verifier(&self) -> NoteVerifier {
        note_verifier(&self.verifying_key())
    }
}

/// The origin line of a ledger's checkpoints, also the name of its note
/// key: `veil-ledger/` and the key id. Naming the log by its key means a
/// log re-signed with another key is another log, whose notes cannot pass
/// for this one's.
pub fn origin(key_id: &str) -> String {
    format!("veil-ledger/{key_id}")
}

/// The note verifier of a ledger verifying key.
pub fn note_verifier(k: &VerifyingKey) -> NoteVerifier {
    NoteVerifier::new(&origin(&key_id(k)), *k).expect("a ledger origin is a valid key name")
}

/// A verifying key from its 64 hex digits (as the store records it).
pub fn verifying_key_from_hex(text: &str) -> Option<VerifyingKey> {
    let b: [u8; 32] = unhex(text.trim())?.try_into().ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

/// The public id of a verifying key.
pub fn key_id(k: &VerifyingKey) -> String {
    hex(&Sha256::digest(k.as_bytes())[..8])
}

/// The signed text of a per-entry head.
pub fn head_message(size: u64, root: &Hash) -> String {
    format!("veil ledger tree head v1\n{size}\n{}\n", hex(root))
}

/// Checks a hex signature over `msg`.
pub(crate) fn check(k: &VerifyingKey, msg: &str, sig_hex: &str) -> bool {
    let Some(bytes) = unhex(sig_hex) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    k.verify(msg.as_bytes(), &Signature::from_bytes(&arr))
        .is_ok()
}

/// A signed checkpoint: tree size, root, time, signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Entries covered.
    pub size: u64,
    /// Root (hex).
    pub root: String,
    /// When it was signed (RFC 3339, UTC).
    pub time: String,
    /// Which key signed it.
    pub key_id: String,
    /// Ed25519 signature over [`Checkpoint::body`] (hex).
    pub signature: String,
}

impl Checkpoint {
    /// The signed text: a C2SP tlog-checkpoint body (origin, size, base64
    /// root). The time is kept beside it, unsigned: extension lines are
    /// advised against and witnesses' post-quantum cosignatures would not
    /// cover it; a witness's cosignature carries its own time.
    pub fn body(&self) -> String {
        let root = unhex32(&self.root).unwrap_or_default();
        checkpoint_text(&origin(&self.key_id), self.size, &root)
    }

    /// The text signed before checkpoints were C2SP notes (hex root, time
    /// line), so that checkpoints stored by earlier versions still verify.
    fn legacy_body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            origin(&self.key_id),
            self.size,
            self.root,
            self.time
        )
    }

    /// Is the signature valid under `k`?
    pub fn verify(&self, k: &VerifyingKey) -> bool {
        self.key_id == key_id(k)
            && unhex32(&self.root).is_some()
            && (check(k, &self.body(), &self.signature)
                || check(k, &self.legacy_body(), &self.signature))
    }

    /// The signed note to copy outside the site, `k` being the key that
    /// signed it.
    pub fn note(&self, k: &VerifyingKey) -> String {
        let sig = unhex(&self.signature).unwrap_or_default();
        note::assemble(&self.body(), &note_verifier(k), &sig)
    }
}

/// Reads a 0600 file of 64 hex digits.
pub fn read_secret(path: &Path) -> Result<[u8; 32], KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions(mode));
        }
    }
    let text = std::fs::read_to_string(path)?;
    unhex(&text)
        .and_then(|b| b.try_into().ok())
        .ok_or(KeyFileError::Format)
}

/// Writes a new 0600 file of 64 hex digits; never overwrites.
pub fn write_secret(path: &Path, secret: &[u8; 32]) -> Result<(), KeyFileError> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // a key's folder is private too (VEIL_LEDGER_KEY_FILE may name one
        // outside $VEIL_HOME)
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(format!("{}\n", hex(secret)).as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_checkpoints_sign_and_verify() {
        let k = LedgerKey::from_seed([3; 32]);
        let root = [9u8; 32];
        let sig = k.sign_head(5, &root);
        assert!(check(&k.verifying_key(), &head_message(5, &root), &sig));
        assert!(!check(&k.verifying_key(), &head_message(6, &root), &sig));
        let c = k.checkpoint(5, root, "2025-01-01T00:00:00Z".into());
        assert!(c.verify(&k.verifying_key()));
        let mut bad = c.clone();
        bad.size = 4;
        assert!(!bad.verify(&k.verifying_key()));
        let other = LedgerKey::from_seed([4; 32]);
        assert!(!c.verify(&other.verifying_key()));
        assert!(!format!("{k:?}").contains("0303"));
    }

    #[test]
    fn checkpoint_notes_are_c2sp_checkpoints_and_old_checkpoints_still_verify() {
        let k = LedgerKey::from_seed([3; 32]);
        let c = k.checkpoint(6, [9u8; 32], "2025-01-01T00:00:00Z".into());
        let n = note::SignedNote::parse(c.note(&k.verifying_key()).as_bytes()).unwrap();
        let h = note::parse_checkpoint_text(k.note_verifier().open(&n).unwrap()).unwrap();
        assert_eq!(h.origin, origin(&k.id()));
        assert_eq!((h.size, h.root), (6, [9u8; 32]));
        // a checkpoint stored by an earlier version (hex root, signed time)
        let mut old = c.clone();
        old.signature = hex(&k.0.sign(old.legacy_body().as_bytes()).to_bytes());
        assert!(old.verify(&k.verifying_key()));
        old.time = "2026-01-01T00:00:00Z".into();
        assert!(!old.verify(&k.verifying_key()));
    }

    #[test]
    fn key_file_is_0600_and_stable() {
        let dir = std::env::temp_dir().join(format!("veil-ledger-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("ledger.key");
        assert!(LedgerKey::load(&p).is_err(), "never created by loading");
        assert!(!p.exists());
        let a = LedgerKey::create(&p).unwrap();
        let b = LedgerKey::load(&p).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(LedgerKey::create(&p).is_err(), "never overwritten");
        assert_eq!(LedgerKey::load(&p).unwrap().id(), a.id());
        assert_eq!(
            verifying_key_from_hex(&hex(a.verifying_key().as_bytes())),
            Some(a.verifying_key())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert!(matches!(
                LedgerKey::load(&p),
                Err(KeyFileError::Permissions(_))
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
