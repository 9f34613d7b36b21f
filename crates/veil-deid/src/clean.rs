//! Cleaning free text (the C action, Clean Descriptors, Clean Structured
//! Content): keep a description only after removing what identifies.
//!
//! Two sources of "what identifies": the object's own identifying values
//! (harvested before any change: names, IDs, dates in several spellings,
//! addresses, institutions, devices), and patterns that need no source
//! (dates, MRN/SSN-like numbers, phone numbers, e-mail, URLs, IP
//! addresses). Matches are replaced by `***`. When in doubt, remove: a
//! value that cannot be decoded in its character set is removed, not kept.

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use veil_core::Phi;

/// What replaces a removed span.
pub const MASK: &str = "***";

fn patterns() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        let month = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?";
        let parts = [
            // dates: 2024-01-31, 31/01/2024, 01.31.24, 20240131, 31 Jan 2024, Jan 31, 2024
            r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b".to_string(),
            r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b".to_string(),
            r"\b(?:1[89]|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b".to_string(),
            format!(r"\b\d{{1,2}}[ -]{month}[ -,]*\d{{2,4}}\b"),
            format!(r"\b{month} \d{{1,2}},? \d{{4}}\b"),
            // SSN and MRN-like numbers
            r"\b\d{3}-\d{2}-\d{4}\b".to_string(),
            r"\b[A-Za-z]{0,3}\d{6,}\b".to_string(),
            // phone numbers
            r"(?:\+\d{1,3}[\s.-]?)?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}\b".to_string(),
            // e-mail, URL, IP
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+".to_string(),
            r"\b(?:https?|ftp)://\S+|\bwww\.\S+".to_string(),
            r"\b\d{1,3}(?:\.\d{1,3}){3}\b".to_string(),
        ];
        RegexBuilder::new(&parts.join("|"))
            .case_insensitive(true)
            .build()
            .expect("valid patterns")
    })
}

/// Identifying values harvested from one object.
#[derive(Default)]
pub struct Harvest {
    tokens: Vec<Phi<String>>,
}

impl Harvest {
    /// Adds a value of a given kind, split into the pieces that could appear
    /// on their own in free text.
    pub fn add(&mut self, vr: &str, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        match vr {
            "PN" => {
                for group in v.split('=') {
                    let full = group.replace('^', " ");
                    self.push(full.trim());
                    for part in group.split(['^', ' ', ',']) {
                        self.push(part.trim());
                    }
                }
            }
            "DA" => {
                for d in v.split(['\\', '-']) {
                    if d.len() == 8 && d.chars().all(|c| c.is_ascii_digit()) {
                        let (y, m, dd) = (&d[..4], &d[4..6], &d[6..]);
                        for s in [
                            d.to_string(),
                            format!("{y}-{m}-{dd}"),
                            format!("{dd}/{m}/{y}"),
                            format!("{m}/{dd}/{y}"),
                            format!("{dd}.{m}.{y}"),
                            format!("{y}.{m}.{dd}"),
                        ] {
                            self.push(&s);
                        }
                    }
                }
            }
            _ => {
                for one in v.split('\\') {
                    self.push(one.trim());
                    // words of addresses and institution names; digit runs of IDs
                    for w in one.split(|c: char| !c.is_alphanumeric()) {
                        if w.chars().count() >= 4
                            || (w.len() >= 3 && w.chars().all(|c| c.is_ascii_digit()))
                        {
                            self.push(w);
                        }
                    }
                }
            }
        }
    }

    fn push(&mut self, s: &str) {
        // matched on word boundaries, so the edges must be word characters
        let s = s.trim_matches(|c: char| !c.is_alphanumeric());
        // one- and two-letter pieces (initials, "DR") are too common to
        // remove everywhere; whole values and longer pieces are not
        if s.chars().count() >= 3 {
            self.tokens.push(Phi::new(s.to_lowercase()));
        }
    }

    /// The harvested values (lower-cased pieces and whole values).
    pub fn values(&self) -> &[Phi<String>] {
        &self.tokens
    }

    /// Builds the cleaner. Tokens are matched case-insensitively on word
    /// boundaries, longest first.
    pub fn cleaner(&self) -> Cleaner {
        let mut toks: Vec<&str> = self.tokens.iter().map(|t| t.expose().as_str()).collect();
        toks.sort_by_key(|t| std::cmp::Reverse(t.len()));
        toks.dedup();
        let own = if toks.is_empty() {
            None
        } else {
            let alt = toks
                .iter()
                .map(|t| regex::escape(t))
                .collect::<Vec<_>>()
                .join("|");
            RegexBuilder::new(&format!(r"\b(?:{alt})\b"))
                .case_insensitive(true)
                .size_limit(64 << 20)
                .build()
                .ok()
        };
        let failed = !toks.is_empty() && own.is_none();
        Cleaner { own, failed }
    }
}

/// Removes identifying spans from text.
pub struct Cleaner {
    own: Option<Regex>,
    failed: bool,
}

impl Cleaner {
    /// Cleans one text value. `None` means "remove the whole value": the
    /// cleaner could not be built, so nothing can be trusted.
    pub fn clean(&self, text: &str) -> Option<String> {
        if self.failed {
            return None;
        }
        // patterns first: an e-mail address must go whole, not just the
        // name part that the object's own values would match
        let mut s = patterns().replace_all(text, MASK).into_owned();
        if let Some(re) = &self.own {
            s = re.replace_all(&s, MASK).into_owned();
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_own_values_and_patterns() {
        let mut h = Harvest::default();
        h.add("PN", "Doe^Johnathan");
        h.add("LO", "MRN-778812");
        h.add("DA", "19700412");
        h.add("LO", "St Elsewhere Hospital");
        let c = h.cleaner();
        let out = c
            .clean("CT head for johnathan DOE (778812), born 12/04/1970, seen at St Elsewhere. Call 555-123-4567 or doe@example.org")
            .unwrap();
        for bad in [
            "johnathan",
            "DOE",
            "778812",
            "1970",
            "Elsewhere",
            "555",
            "example.org",
        ] {
            assert!(
                !out.to_lowercase().contains(&bad.to_lowercase()),
                "{bad} left in {out}"
            );
        }
        assert!(out.starts_with("CT head for"));
    }

    #[test]
    fn keeps_plain_descriptions() {
        let c = Harvest::default().cleaner();
        assert_eq!(c.clean("T1 AXIAL POST GAD").unwrap(), "T1 AXIAL POST GAD");
        assert_eq!(c.clean("CHEST PA 2 VIEWS").unwrap(), "CHEST PA 2 VIEWS");
    }
}
