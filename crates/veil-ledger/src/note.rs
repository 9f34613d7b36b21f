//! Signed notes (<https://c2sp.org/signed-note>) and transparency-log
//! checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! Why this format and not Veil's own: a checkpoint is only worth something
//! once it lives outside the site (a second host, a transparency-log
//! witness, a printout), and the tools that keep, cosign and check tree
//! heads elsewhere (the Go `note` package, the witness network, Sigstore,
//! Cloudflare's `signed_note`) all speak this one. A note is the text, a
//! blank line, and one line per signature:
//!
//! ```text
//! veil-ledger/46333a1e7129dcf2          origin (= the key's name)
//! 6                                     tree size
//! 4fpWLNPjcNVU4ACY0rc...=               root hash, base64
//!
//! — veil-ledger/46333a1e7129dcf2 <base64(key id || Ed25519 signature)>
//! ```
//!
//! The key id is the first four bytes of SHA-256(name || "\n" || 0x01 ||
//! public key), so a note names the exact key that must check it, and the
//! verifier key string `name+hex(id)+base64(0x01 || public key)` is all an
//! auditor needs. Parsing is strict and bounded: the input comes from a
//! file someone hands in.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
#[cfg(test)]
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Signature type byte of Ed25519 note signatures.
const ED25519: u8 = 0x01;

/// The largest note accepted: room for the spec's minimum of 16
/// signatures, post-quantum cosignatures included (about 5 kB each).
pub const MAX_NOTE_BYTES: usize = 128 * 1024;

/// The most signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note or a verifier key was refused. Every message says what is
/// wrong with the text; none echoes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a well-formed signed note.
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    /// A signed note, but not a checkpoint.
    #[error("not a checkpoint: {0}")]
    NotCheckpoint(&'static str),
    /// Not a verifier key `name+keyid+base64`.
    #[error("not a verifier key (NAME+KEYID+BASE64): {0}")]
    BadKey(&'static str),
    /// No signature line is from the expected key.
    #[error("the note is not signed by {expected}; it is signed by {found}")]
    UnknownKey {
        /// The verifier key's name and id.
        expected: String,
        /// The names and ids of the signature lines.
        found: String,
    },
    /// A signature line names the expected key but does not verify.
    #[error("the signature by {0} does not verify: the note was altered")]
    BadSignature(String),
}

/// `SHA-256(name || "\n" || 0x01 || public key)[:4]` as a big-endian u32.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let h = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n")
        .chain_update([ED25519])
        .chain_update(key.as_bytes())
        .finalize();
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// A key name: non-empty, no Unicode space, no '+'.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A named Ed25519 public key that checks notes: what an auditor holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// The verifier of `key` under `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteVerifier, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "a key name is non-empty, without spaces or '+'",
            ));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses `name+hex(keyid)+base64(0x01 || public key)`.
    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let text = text.trim();
        // from the left: neither the name nor the hex id holds a '+', the
        // base64 key may
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected three parts joined by '+'"));
        };
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NoteError::BadKey("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey("bad key id"))?;
        let raw = B64
            .decode(data)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let Some((&ED25519, pk)) = raw.split_first() else {
            return Err(NoteError::BadKey("not an Ed25519 key (type 0x01)"));
        };
        let pk: [u8; 32] = pk
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| NoteError::BadKey("not a valid Ed25519 public key"))?;
        let v = NoteVerifier::new(name, key)?;
        if v.id != id {
            return Err(NoteError::BadKey(
                "the key id does not match the name and key",
            ));
        }
        Ok(v)
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// `name+keyid` (how messages name the key).
    pub fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.id)
    }

    /// Checks `note` and returns its text. Per the spec, signature lines of
    /// other keys are ignored (witness cosignatures ride along), a line of
    /// this key that fails to verify rejects the note, and at least one line
    /// of this key must verify.
    pub fn open<'a>(&self, note: &'a SignedNote) -> Result<&'a str, NoteError> {
        let mut found = Vec::new();
        let mut ok = false;
        for s in &note.sigs {
            if s.name != self.name || s.id != self.id {
                found.push(format!("{}+{:08x}", s.name, s.id));
                continue;
            }
            let sig = <[u8; 64]>::try_from(s.sig.as_slice())
                .map(|b| Signature::from_bytes(&b))
                .map_err(|_| NoteError::BadSignature(self.label()))?;
            self.key
                .verify(note.text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature(self.label()))?;
            ok = true;
        }
        if ok {
            Ok(&note.text)
        } else {
            Err(NoteError::UnknownKey {
                expected: self.label(),
                found: found.join(", "),
            })
        }
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NoteSig {
    name: String,
    id: u32,
    sig: Vec<u8>,
}

/// A parsed, not yet verified, signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    sigs: Vec<NoteSig>,
}

impl SignedNote {
    /// Parses a note: UTF-8 without control characters other than newline,
    /// the text (ending in a newline), a blank line, then signature lines
    /// `— NAME BASE64`, each ending in a newline.
    pub fn parse(bytes: &[u8]) -> Result<SignedNote, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("larger than 128 KiB"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed(
                "holds control characters (CR line ends, tabs or NUL?)",
            ));
        }
        // the text ends at the last blank line
        let Some(split) = s.rfind("\n\n") else {
            return Err(NoteError::Malformed(
                "no blank line between the text and the signatures",
            ));
        };
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::Malformed(
                "no signature line, or the last one does not end in a newline",
            ));
        };
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::Malformed("more than 100 signature lines"));
        }
        let sigs = lines
            .into_iter()
            .map(parse_sig_line)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SignedNote {
            text: text.to_string(),
            sigs,
        })
    }

    /// The signed text (ends with a newline).
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn parse_sig_line(line: &str) -> Result<NoteSig, NoteError> {
    let Some(rest) = line.strip_prefix("\u{2014} ") else {
        return Err(NoteError::Malformed(
            "a signature line does not start with an em dash and a space",
        ));
    };
    let Some((name, data)) = rest.split_once(' ') else {
        return Err(NoteError::Malformed(
            "a signature line is not `— NAME SIGNATURE`",
        ));
    };
    if !valid_name(name) {
        return Err(NoteError::Malformed("a signature line has a bad key name"));
    }
    let raw = B64
        .decode(data)
        .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
    if raw.len() < 5 {
        return Err(NoteError::Malformed("a signature is too short"));
    }
    Ok(NoteSig {
        name: name.to_string(),
        id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        sig: raw[4..].to_vec(),
    })
}

/// Signs `text` (which must end in a newline) as `name`: the signed note.
#[cfg(test)]
fn sign(text: &str, name: &str, key: &SigningKey) -> String {
    let v = NoteVerifier::new(name, key.verifying_key()).expect("valid name");
    assemble(text, &v, &key.sign(text.as_bytes()).to_bytes())
}

/// The note of `text` with one signature line, `sig` being `v`'s signature
/// of `text`.
pub(crate) fn assemble(text: &str, v: &NoteVerifier, sig: &[u8]) -> String {
    debug_assert!(text.ends_with('\n'));
    let mut raw = v.id.to_be_bytes().to_vec();
    raw.extend_from_slice(sig);
    format!("{text}\n\u{2014} {} {}\n", v.name, B64.encode(raw))
}

/// A tree head read from a checkpoint note's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The log's identity.
    pub origin: String,
    /// Entries covered.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: Hash,
}

/// The checkpoint text `origin\nsize\nbase64(root)\n` (no extension lines:
/// the spec advises against them and witnesses' ML-DSA cosignatures do not
/// cover them).
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Parses a checkpoint's (verified) text: origin, decimal size without
/// leading zeros, base64 of a 32-byte root, then optional non-empty
/// extension lines (ignored).
pub fn parse_checkpoint_text(text: &str) -> Result<TreeHead, NoteError> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err(NoteError::NotCheckpoint(
            "the text does not end in a newline",
        ));
    };
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() < 3 {
        return Err(NoteError::NotCheckpoint(
            "fewer than three lines (origin, size, root)",
        ));
    }
    if lines.iter().any(|l| l.is_empty()) {
        return Err(NoteError::NotCheckpoint("an empty line"));
    }
    let size = lines[1];
    if !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
        return Err(NoteError::NotCheckpoint(
            "the size is not a decimal number without leading zeros",
        ));
    }
    let size = size
        .parse()
        .map_err(|_| NoteError::NotCheckpoint("the size is too large"))?;
    let root = B64
        .decode(lines[2])
        .ok()
        .and_then(|r| Hash::try_from(r.as_slice()).ok())
        .ok_or(NoteError::NotCheckpoint(
            "the root is not the base64 of 32 bytes",
        ))?;
    Ok(TreeHead {
        origin: lines[0].to_string(),
        size,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published vectors of golang.org/x/mod/sumdb/note (note_test.go), an
    // independent implementation: the key PeterNeumann's seed, verifier key
    // and signature of this text, and a second signer, EnochRoot.
    const PETER_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
    // The example of the C2SP signed-note specification.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn peter() -> SigningKey {
        let raw = B64.decode(PETER_SEED).unwrap();
        assert_eq!(raw[0], ED25519);
        SigningKey::from_bytes(&raw[1..].try_into().unwrap())
    }

    #[test]
    fn signing_and_keys_match_the_go_note_vectors() {
        let k = peter();
        // the verifier key string and key id, byte for byte
        let v = NoteVerifier::new("PeterNeumann", k.verifying_key()).unwrap();
        assert_eq!(v.to_string(), PETER_VKEY);
        assert_eq!(NoteVerifier::parse(PETER_VKEY).unwrap(), v);
        // a key whose base64 holds a '+' (as about one in two do)
        let v = (0..=255u8)
            .map(|i| NoteVerifier::new("n", SigningKey::from_bytes(&[i; 32]).verifying_key()))
            .map(Result::unwrap)
            .find(|v| v.to_string().matches('+').count() > 2)
            .unwrap();
        assert_eq!(NoteVerifier::parse(&v.to_string()).unwrap(), v);
        // the signed note, byte for byte
        assert_eq!(
            sign(TEXT, "PeterNeumann", &k),
            format!("{TEXT}\n{PETER_SIG}")
        );
    }

    #[test]
    fn published_notes_verify_and_unknown_signers_are_ignored() {
        let spec = NoteVerifier::parse(SPEC_VKEY).unwrap();
        let n = SignedNote::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(spec.open(&n).unwrap(), "This is an example message.\n");

        let (peter, enoch) = (
            NoteVerifier::parse(PETER_VKEY).unwrap(),
            NoteVerifier::parse(ENOCH_VKEY).unwrap(),
        );
        let both = SignedNote::parse(format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}").as_bytes()).unwrap();
        assert_eq!(peter.open(&both).unwrap(), TEXT);
        assert_eq!(enoch.open(&both).unwrap(), TEXT);
        // a key that signed nothing here
        let only_peter = SignedNote::parse(format!("{TEXT}\n{PETER_SIG}").as_bytes()).unwrap();
        let e = enoch.open(&only_peter).unwrap_err();
        assert!(
            matches!(&e, NoteError::UnknownKey { found, .. } if found == "PeterNeumann+c74f20a3"),
            "{e}"
        );
        // the same name and key id, another signature: rejected
        let forged = PETER_SIG.replace("x08go/ZJ", "x08go/ZK");
        let n = SignedNote::parse(format!("{TEXT}\n{forged}").as_bytes()).unwrap();
        assert!(matches!(peter.open(&n), Err(NoteError::BadSignature(_))));
        // an altered text
        let n = SignedNote::parse(
            format!("{}\n{PETER_SIG}", TEXT.replace("answer", "Answer")).as_bytes(),
        )
        .unwrap();
        assert!(matches!(peter.open(&n), Err(NoteError::BadSignature(_))));
        // the spec's key is not Peter's
        assert!(matches!(
            spec.open(&only_peter),
            Err(NoteError::UnknownKey { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason_never_a_panic() {
        let good = format!("{TEXT}\n{PETER_SIG}");
        let long_sigs = PETER_SIG.repeat(101);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "no blank line"),
            (TEXT.as_bytes().to_vec(), "no blank line"),
            (format!("\n{TEXT}").into_bytes(), "no blank line"),
            (
                good.as_bytes()[..good.len() - 1].to_vec(),
                "does not end in a newline",
            ),
            (format!("{TEXT}\n").into_bytes(), "no signature line"),
            (format!("\x01{good}").into_bytes(), "control characters"),
            (
                good.replace('\n', "\r\n").into_bytes(),
                "control characters",
            ),
            ([&[0xffu8][..], good.as_bytes()].concat(), "not UTF-8"),
            (
                format!("{TEXT}\n- PeterNeumann AAAA\n").into_bytes(),
                "em dash",
            ),
            (
                format!("{TEXT}\n— PeterNeumann\n").into_bytes(),
                "`— NAME SIGNATURE`",
            ),
            (
                format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG\n").into_bytes(),
                "not base64",
            ),
            (
                format!("{TEXT}\n— a+b x08go/ZJ\n").into_bytes(),
                "bad key name",
            ),
            (format!("{TEXT}\n— P !!!!\n").into_bytes(), "not base64"),
            (format!("{TEXT}\n— P AAAA\n").into_bytes(), "too short"),
            (format!("{TEXT}\n{long_sigs}").into_bytes(), "more than 100"),
            (vec![b'a'; MAX_NOTE_BYTES + 1], "larger than"),
        ];
        for (bytes, why) in cases {
            let e = SignedNote::parse(&bytes).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        // checkpoint texts
        let root = B64.encode([7u8; 32]);
        for (text, why) in [
            ("o\n5\n".to_string(), "fewer than three"),
            (format!("o\n5\n{root}"), "end in a newline"),
            (format!("\n5\n{root}\n"), "empty line"),
            (format!("o\n05\n{root}\n"), "leading zeros"),
            (format!("o\n-5\n{root}\n"), "decimal"),
            (format!("o\n 5\n{root}\n"), "decimal"),
            (format!("o\n99999999999999999999999\n{root}\n"), "too large"),
            ("o\n5\nAAAA\n".to_string(), "32 bytes"),
            ("o\n5\n####\n".to_string(), "32 bytes"),
            (format!("o\n5\n{root}\n\n"), "empty line"),
        ] {
            let e = parse_checkpoint_text(&text).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
        }
        let h = parse_checkpoint_text(&format!("o\n0\n{root}\next\n")).unwrap();
        assert_eq!((h.origin.as_str(), h.size, h.root), ("o", 0, [7u8; 32]));
        // verifier keys
        let other_type = format!("P+00000000+{}", B64.encode([2u8; 33]));
        for (k, why) in [
            (other_type.as_str(), "Ed25519"),
            ("", "three parts"),
            ("PeterNeumann+ARpc", "three parts"),
            ("PeterNeumann+c74f20a+ARpc", "8 hex"),
            (
                "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "does not match",
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
                "base64",
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",
                "32 bytes",
            ),
            (
                "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "key name",
            ),
        ] {
            let e = NoteVerifier::parse(k).unwrap_err();
            assert!(e.to_string().contains(why), "{k}: {e}");
        }
    }
}
