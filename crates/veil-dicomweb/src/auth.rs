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

/// One accepted token: its hash and, if scoped, the routes it may post
/// to. A route decides the recipient and the purpose consent is checked
/// for, so a sender trusted for one route should not be able to choose
/// another.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// The token's hash.
    pub hash: TokenHash,
    /// Routes it may post to; `None`: every route.
    pub routes: Option<Vec<String>>,
}

/// What a presented credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token, another scheme, or an unknown token (401).
    Denied,
    /// A known token not scoped to the route asked for (403).
    WrongRoute,
    /// Allowed.
    Granted,
}

/// The tokens a server accepts. Empty accepts nobody: an unconfigured
/// gateway must not be an open door.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

impl Tokens {
    /// Accepts the tokens whose hashes are given, on every route.
    pub fn new(hashes: Vec<TokenHash>) -> Tokens {
        Tokens::scoped(
            hashes
                .into_iter()
                .map(|hash| TokenEntry { hash, routes: None })
                .collect(),
        )
    }

    /// Accepts `entries`, each on its routes.
    pub fn scoped(entries: Vec<TokenEntry>) -> Tokens {
        Tokens { entries }
    }

    /// Whether `token` is one of ours (on any route).
    pub fn verify(&self, token: &str) -> bool {
        self.access(token, None) == Access::Granted
    }

    /// What `token` allows on `route` (`None`: an endpoint of no route,
    /// such as `/metrics`, which any known token may read). Hashing first
    /// makes the comparison independent of the presented length, and every
    /// stored hash is compared in full without an early exit, so timing
    /// says nothing about how close a guess came or which entry matched.
    pub fn access(&self, token: &str, route: Option<&str>) -> Access {
        let presented = TokenHash::of(token);
        let (mut known, mut allowed) = (0u8, 0u8);
        for e in &self.entries {
            let diff = e
                .hash
                .0
                .iter()
                .zip(presented.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            let matched = u8::from(diff == 0);
            let in_scope = match (&e.routes, route) {
                (None, _) | (_, None) => 1,
                (Some(rs), Some(r)) => u8::from(rs.iter().any(|x| x == r)),
            };
            known |= matched;
            allowed |= matched & in_scope;
        }
        match (known, allowed) {
            (_, 1) => Access::Granted,
            (1, _) => Access::WrongRoute,
            _ => Access::Denied,
        }
    }

    /// What an `Authorization` header value (`Bearer <token>`, the scheme
    /// case-insensitive per RFC 7235) allows on `route`.
    pub fn access_header(&self, value: Option<&[u8]>, route: Option<&str>) -> Access {
        let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return Access::Denied;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return Access::Denied;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Access::Denied;
        }
        self.access(token.trim(), route)
    }

    /// Whether an `Authorization` header value carries one of our tokens.
    pub fn verify_header(&self, value: Option<&[u8]>) -> bool {
        self.access_header(value, None) == Access::Granted
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

    /// A token scoped to one route is granted there, refused as
    /// WrongRoute elsewhere, and still reads route-less endpoints; an
    /// unknown token is Denied whatever the route.
    #[test]
    fn scoped_tokens_stay_on_their_routes() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        let tokens = Tokens::scoped(vec![
            TokenEntry {
                hash: a.hash.clone(),
                routes: Some(vec!["acme".into()]),
            },
            TokenEntry {
                hash: b.hash.clone(),
                routes: None,
            },
        ]);
        assert_eq!(tokens.access(&a.token, Some("acme")), Access::Granted);
        assert_eq!(tokens.access(&a.token, Some("beta")), Access::WrongRoute);
        assert_eq!(tokens.access(&a.token, None), Access::Granted);
        assert_eq!(tokens.access(&b.token, Some("beta")), Access::Granted);
        let c = generate_token().unwrap();
        assert_eq!(tokens.access(&c.token, Some("acme")), Access::Denied);
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
