//! A secret string (password, token, TOTP code or secret) that never
//! prints itself.
//!
//! Why not `veil_core::Phi`: a password is not health information, and a
//! log line saying `<phi 12B>` would send a reader looking for a patient.
//! Same idea: Display and Debug are redacted (without the length: a
//! password's length is a hint), and [`Secret::expose`] is the one door.

use std::fmt;

/// A secret value; prints as `<secret>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value. Callers must not print, log or store it.
    pub fn expose(&self) -> &String {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::from("correct horse battery staple");
        assert_eq!(format!("{s}"), "<secret>");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<secret>)");
    }
}
