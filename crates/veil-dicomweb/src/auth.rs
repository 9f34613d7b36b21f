//! Bearer tokens for inbound HTTP. A token is 32 random bytes (hex, with a
//! `veil_` prefix so it is recognisable in a secret scanner); the server
//! keeps only its SHA-256. A plain unsalted hash is enough here because
//! the token is high-entropy: there is no dictionary to run against a
//! leaked hash, and verifying stays one hash per request.

use sha2::{Digest, Sha256};

/// Why a token or a stored hash cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The system's random source failed; no token was made.
    #[error("no randomness for a new token: {0}")]
    Random(getrandom::Error),
    /// A configured hash is not 64 hex digits (the value is not repeated:
    /// a site may have pasted the token itself there).
    #[error("token hash {index} is not 64 hex digits")]
    BadHash {
        /// Its position in the configured list.
        index: usize,
    },
}

/// The SHA-256 of a token: what the configuration and store hold.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Reads 64 hex digits (as written by [`TokenHash::to_hex`]); `index`
    /// names the entry in errors.
    pub fn from_hex(hex: &str, index: usize) -> Result<TokenHash, AuthError> {
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(AuthError::BadHash { index });
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(AuthError::BadHash { index }),
            }
        }
        Ok(TokenHash(out))
    }

    /// Lowercase hex, for the configuration.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// Hashes are not secrets, but nothing gains from printing them either.
impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A freshly made token: show `token` to the operator once, store `hash`.
pub struct NewToken {
    /// The secret, to hand to the sender (e.g. Orthanc's `HttpHeaders`).
    pub token: String,
    /// What the server keeps.
    pub hash: TokenHash,
}

/// Never print the secret by accident (`{:?}` in a log line).
impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").finish_non_exhaustive()
    }
}

/// Makes a token from 32 bytes of the operating system's randomness.
pub fn generate_token() -> Result<NewToken, AuthError> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(AuthError::Random)?;
    let token = format!("veil_{}", hex(&raw));
    let hash = TokenHash::of(&token);
    Ok(NewToken { token, hash })
}

/// The tokens a server accepts. Empty accepts nobody: an unconfigured
/// gateway must not be an open door.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    hashes: Vec<TokenHash>,
}

impl Tokens {
    /// Accepts the tokens whose hashes are given.
    pub fn new(hashes: Vec<TokenHash>) -> Tokens {
        Tokens { hashes }
    }

    /// Whether `token` is one of ours. Hashing first makes the comparison
    /// independent of the presented length, and every stored hash is
    /// compared in full without an early exit, so timing says nothing
    /// about how close a guess came or which entry matched.
    pub fn verify(&self, token: &str) -> bool {
        let presented = TokenHash::of(token);
        let mut any = 0u8;
        for h in &self.hashes {
            let diff =
                h.0.iter()
                    .zip(presented.0.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            any |= u8::from(diff == 0);
        }
        any == 1
    }

    /// Whether an `Authorization` header value carries one of our tokens
    /// (`Bearer <token>`, the scheme case-insensitive per RFC 7235).
    pub fn verify_header(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && self.verify(token.trim())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated token verifies through its stored hash (as read back
    /// from hex) and in a Bearer header; another token, a wrong scheme,
    /// a missing header and an empty token set do not.
    #[test]
    fn generated_token_verifies_only_itself() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with("veil_") && a.token.len() == 69);
        let stored = TokenHash::from_hex(&a.hash.to_hex(), 0).unwrap();
        let tokens = Tokens::new(vec![stored]);
        assert!(tokens.verify(&a.token));
        assert!(!tokens.verify(&b.token));
        assert!(!tokens.verify(""));
        let header = format!("Bearer {}", a.token);
        assert!(tokens.verify_header(Some(header.as_bytes())));
        let lower = format!("bearer {}", a.token);
        assert!(tokens.verify_header(Some(lower.as_bytes())));
        let basic = format!("Basic {}", a.token);
        assert!(!tokens.verify_header(Some(basic.as_bytes())));
        assert!(!tokens.verify_header(None));
        assert!(!Tokens::default().verify(&a.token));
        assert!(!format!("{a:?}").contains(&a.token));
    }

    /// A configured hash of the wrong length or with a non-hex digit is
    /// refused, naming its position only.
    #[test]
    fn bad_hash_is_named_by_position() {
        assert!(matches!(
            TokenHash::from_hex("abc", 3),
            Err(AuthError::BadHash { index: 3 })
        ));
        let not_hex = "g".repeat(64);
        assert!(TokenHash::from_hex(&not_hex, 0).is_err());
    }
}
