//! Values taken from a file that an error or a report may name.
//!
//! Why a type: some values help a reader act on a message (which transfer
//! syntax is not supported, which SOP class, which character set), and a
//! file can put anything in them: a site that writes a patient's name into
//! Modality, or a crafted file whose Transfer Syntax UID is "DOE^JOHN MRN
//! 12345678", would otherwise see that text copied into every error,
//! quarantine list and report. An [`Echo`] can only be built by checking the
//! raw value against the grammar of its value representation (PS3.5 6.2):
//! a value that passes is shown as it is, any other as `<invalid, N bytes>`.
//! The grammars admit no lowercase letters and no `^`, `@` or `-`, so names,
//! dates and addresses as files usually spell them cannot pass.

use std::fmt;

/// A file value that passed its grammar, or the mark that it did not.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Echo(String);

/// Longest UID (PS3.5 9.1).
const UID_MAX: usize = 64;
/// Longest value of a code string (PS3.5 6.2, CS).
const CS_MAX: usize = 16;

impl Echo {
    /// A UID (UI): digits and dots, at most 64 characters, components not
    /// empty and without leading zeros (PS3.5 9.1). Trailing NUL and space
    /// padding is dropped first.
    pub fn uid(raw: &str) -> Echo {
        let v = raw.trim_end_matches(['\0', ' ']);
        let ok = !v.is_empty()
            && v.len() <= UID_MAX
            && v.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            });
        Echo::checked(raw, v, ok)
    }

    /// A code string (CS): uppercase letters, digits, space and underscore,
    /// at most 16 characters per value; values are separated by `\`
    /// (Specific Character Set holds several). Leading and trailing spaces
    /// are padding and are dropped.
    pub fn cs(raw: &str) -> Echo {
        let v = raw.trim_end_matches(['\0', ' ']);
        let ok = v.split('\\').all(|c| {
            let c = c.trim_matches(' ');
            c.len() <= CS_MAX
                && c.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_')
        });
        Echo::checked(raw, v, ok)
    }

    /// One of a closed list of defined terms (a photometric interpretation,
    /// say), compared exactly; any other value is `<invalid, N bytes>`.
    pub fn one_of(raw: &str, terms: &[&str]) -> Echo {
        let v = raw.trim_end_matches(['\0', ' ']);
        Echo::checked(raw, v, terms.contains(&v))
    }

    fn checked(raw: &str, trimmed: &str, ok: bool) -> Echo {
        if ok {
            Echo(trimmed.to_string())
        } else {
            Echo(format!("<invalid, {} bytes>", raw.len()))
        }
    }

    /// Whether the value passed its grammar.
    pub fn is_valid(&self) -> bool {
        !self.0.starts_with("<invalid")
    }

    /// The text to show: the value, or `<invalid, N bytes>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Echo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Echo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_22_uid_grammar() {
        for ok in [
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.4.50\0",
            "2.25.329800735698586629295641978511506172918",
            "0.1.0",
        ] {
            let e = Echo::uid(ok);
            assert!(e.is_valid(), "{ok:?}");
            assert_eq!(e.as_str(), ok.trim_end_matches('\0'));
        }
        for bad in [
            "",
            "DOE^JOHN",
            "1.2.840.10008.1.2.1 DOE",
            "1.2.840.010008.1",
            "1..2",
            ".1.2",
            "1.2.",
            "1.2.840.10008.1.2.1.1234567890.1234567890.1234567890.123456789012",
            "1.2.3\u{e9}",
        ] {
            let e = Echo::uid(bad);
            assert!(!e.is_valid(), "{bad:?}");
            assert_eq!(e.to_string(), format!("<invalid, {} bytes>", bad.len()));
        }
    }

    #[test]
    fn issue_22_cs_grammar() {
        for (raw, shown) in [
            ("CT", "CT"),
            ("MR ", "MR"),
            ("ISO_IR 100", "ISO_IR 100"),
            (
                "ISO 2022 IR 6\\ISO 2022 IR 87",
                "ISO 2022 IR 6\\ISO 2022 IR 87",
            ),
            ("", ""),
            ("ORIGINAL_PRIMARY", "ORIGINAL_PRIMARY"),
        ] {
            let e = Echo::cs(raw);
            assert!(e.is_valid(), "{raw:?}");
            assert_eq!(e.as_str(), shown);
        }
        for bad in [
            "Dr Smith",
            "SMITH^JOHN",
            "mr",
            "ISO_IR 100 EXTRA TEXT",
            "12345678-9",
            "1970-01-01",
            "A@B.ORG",
            "ISO_IR 100\\Smith",
        ] {
            let e = Echo::cs(bad);
            assert!(!e.is_valid(), "{bad:?}");
            assert_eq!(e.to_string(), format!("<invalid, {} bytes>", bad.len()));
        }
    }

    #[test]
    fn issue_22_defined_terms() {
        let t = ["MONOCHROME1", "MONOCHROME2", "RGB"];
        assert_eq!(Echo::one_of("RGB ", &t).as_str(), "RGB");
        assert_eq!(Echo::one_of("DR SMITH", &t).as_str(), "<invalid, 8 bytes>");
    }
}
