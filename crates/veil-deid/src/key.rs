//! Pseudonymization keys: 32 random bytes in a file only its owner can read.
//!
//! Why keyed: a keyed HMAC gives the same pseudonym for the same input on
//! any machine with no shared table, while a different key (another
//! project or recipient) gives unlinkable pseudonyms.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Key errors. They name the problem, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    /// Other users can read the key file.
    #[error(
        "key file permissions are {0:o}; a key must be readable by its owner only (chmod 600)"
    )]
    Permissions(u32),
    /// The file does not hold a 32-byte key.
    #[error("key file does not hold a 32-byte key (64 hex digits)")]
    Format,
    /// The file already exists.
    #[error("refusing to overwrite an existing key file")]
    Exists,
    /// No random source.
    #[error("no system random source")]
    Random,
}

/// A 32-byte secret. `Debug` and `Display` show only the key id.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id {})", self.id())
    }
}

impl Key {
    /// Builds a key from bytes (tests, embedding).
    pub fn from_bytes(b: [u8; 32]) -> Key {
        Key(b)
    }

    /// A fresh random key.
    pub fn generate() -> Result<Key, KeyError> {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b).map_err(|_| KeyError::Random)?;
        Ok(Key(b))
    }

    /// Writes a new key file with mode 0600. Never overwrites.
    pub fn create_file(path: &Path) -> Result<Key, KeyError> {
        use std::io::Write;
        let key = Key::generate()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists,
            _ => KeyError::Io(e),
        })?;
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_all(format!("{hex}\n").as_bytes())?;
        f.sync_all()?;
        Ok(key)
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions(mode));
            }
        }
        Key::from_hex(&std::fs::read_to_string(path)?)
    }

    /// Parses 64 hex digits (a key file's content, or the `VEIL_KEY`
    /// environment variable for deployments that inject secrets that way).
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let t = text.trim();
        if t.len() != 64 || !t.is_ascii() {
            return Err(KeyError::Format);
        }
        let mut b = [0u8; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| KeyError::Format)?;
        }
        Ok(Key(b))
    }

    /// A public identifier of the key (a hash of it), recorded in reports so
    /// that a release can be tied to its key without revealing it.
    pub fn id(&self) -> String {
        let d = Sha256::new()
            .chain_update(b"veil key id v1\0")
            .chain_update(self.0)
            .finalize();
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// HMAC-SHA256 of `value` under a domain-separation `label`, so that the
    /// same string hashed as a UID and as a name gives unrelated outputs.
    pub fn mac(&self, label: &str, value: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        m.update(label.as_bytes());
        m.update(&[0]);
        m.update(value);
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_permissions() {
        let dir = std::env::temp_dir().join(format!("veil-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.key");
        let _ = std::fs::remove_file(&p);
        let k = Key::create_file(&p).unwrap();
        assert!(matches!(Key::create_file(&p), Err(KeyError::Exists)));
        let k2 = Key::load(&p).unwrap();
        assert_eq!(k.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Key::load(&p), Err(KeyError::Permissions(_))));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_keys() {
        let k = Key::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(k.0, [0xab; 32]);
        assert!(Key::from_hex("abcd").is_err());
        assert!(Key::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn debug_shows_only_the_id() {
        let k = Key::from_bytes([7; 32]);
        let s = format!("{k:?}");
        assert!(s.contains(&k.id()));
        assert!(!s.contains("0707"));
    }

    #[test]
    fn labels_separate_domains() {
        let k = Key::from_bytes([1; 32]);
        assert_ne!(k.mac("uid", b"1.2.3"), k.mac("patient-id", b"1.2.3"));
        assert_eq!(k.mac("uid", b"1.2.3"), k.mac("uid", b"1.2.3"));
        assert_ne!(
            Key::from_bytes([2; 32]).mac("uid", b"1.2.3"),
            k.mac("uid", b"1.2.3")
        );
    }
}
