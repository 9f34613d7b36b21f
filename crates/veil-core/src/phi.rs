//! A value that may identify a patient.
//!
//! Why a type: the cheapest way to keep PHI out of logs, errors and reports is
//! to make printing it impossible by accident. `Phi<T>` prints as
//! `<phi 12B>` in both `Display` and `Debug`; the only way to the value is
//! [`Phi::expose`], which is easy to grep for in review.

use std::fmt;

/// Wraps a value that may be protected health information.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Phi(value)
    }

    /// Gives access to the value. Callers must not print, log or write it
    /// anywhere that travels with the output.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value (same obligations as [`Phi::expose`]).
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Lets the redacted form say how large the hidden value is, which helps
/// debugging without revealing content.
pub trait RedactedLen {
    /// A size in bytes or items, shown in the redacted form.
    fn redacted_len(&self) -> usize;
}

impl RedactedLen for String {
    fn redacted_len(&self) -> usize {
        self.len()
    }
}
impl RedactedLen for Vec<u8> {
    fn redacted_len(&self) -> usize {
        self.len()
    }
}
impl RedactedLen for std::path::PathBuf {
    fn redacted_len(&self) -> usize {
        self.as_os_str().len()
    }
}
impl RedactedLen for &str {
    fn redacted_len(&self) -> usize {
        self.len()
    }
}

impl<T: RedactedLen> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<phi {}B>", self.0.redacted_len())
    }
}

impl<T: RedactedLen> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_never_show_the_value() {
        let p = Phi::new(String::from("DOE^JOHN"));
        assert_eq!(format!("{p}"), "<phi 8B>");
        assert_eq!(format!("{p:?}"), "<phi 8B>");
        assert_eq!(p.expose(), "DOE^JOHN");
    }
}
