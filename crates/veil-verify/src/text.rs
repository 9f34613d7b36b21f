//! Text that a verification report may carry beyond the site.
//!
//! Why types: the report is meant to travel with the release (to the
//! recipient, to an auditor), so it must not quote what it found. Masking
//! the found value and keeping its neighbourhood is not enough: the words
//! around a name in a comment are often the rest of the identity ("Dr Smith
//! saw [name:17] MRN 12345678 DOB 1970-0…"), and a detector that misses one
//! value hands it on. So [`Place`] and [`ReportText`] can only be built
//! from what is not PHI: words written in this crate (`&'static str`),
//! categories, tag paths, counts, the release's own relative paths, file
//! values that passed their grammar ([`Echo`]) and quarantine reasons
//! (which carry kinds, offsets and tags only). Text around a finding is
//! kept apart, as [`crate::Finding::context`], and only with `--site-local`.

use std::fmt;

use serde::Serialize;
use veil_core::{Echo, QuarantineReason, TagPath};

use crate::Category;

/// Where in an output a finding is: an element path such as
/// `(0040,A730)[0]/(0040,A160)`, `meta/(0002,0016)`, or a word such as
/// `preamble`, `bytes`, `filename`, `pixels`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Place(String);

impl Place {
    /// A place named by a word of this crate (`preamble`, `filename`, ...)
    /// or by a fixed tag (`(0012,0062)`).
    pub fn fixed(word: &'static str) -> Place {
        Place(word.to_string())
    }

    /// An element: its path, after a fixed prefix (`meta/` or nothing).
    pub fn element(prefix: &'static str, path: &TagPath) -> Place {
        Place(format!("{prefix}{path}"))
    }

    /// The place as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text of a travelling report, built piece by piece from values that
/// cannot be PHI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ReportText(String);

impl ReportText {
    /// Fixed words written in this crate.
    pub fn fixed(words: &'static str) -> ReportText {
        ReportText(words.to_string())
    }

    /// What was found and where, never the value: `[name:17] in (0020,4000)`
    /// (the category and the value's length in characters).
    pub fn found(category: Category, chars: usize, place: &Place) -> ReportText {
        ReportText(format!("[{}:{chars}] in {place}", category.name()))
    }

    /// A quarantine reason: its kinds, offsets and tags (file values in it
    /// have passed their grammar).
    pub fn reason(r: &QuarantineReason) -> ReportText {
        ReportText(r.to_string())
    }

    /// One line of dciodvfy's report with every value it quotes replaced:
    /// `<...>` holds a value unless it follows `attribute `, `Element=`,
    /// `Module=` or `Macro=` (dictionary names); `'x'` quotes a character of
    /// a value; digits become `#` (they change with de-identification), and
    /// everything from a double quote on is dropped.
    pub fn dciodvfy(line: &str) -> ReportText {
        let line = line.split('"').next().unwrap_or(line);
        // `... got VALUE - expected ...` (SR relationship checks) quotes a
        // value without brackets
        let owned;
        let line = match line.split_once(" got ") {
            Some((head, rest)) => {
                let tail = rest.find(" - ").map_or("", |i| &rest[i..]);
                owned = format!("{head} got <value>{tail}");
                owned.as_str()
            }
            None => line,
        };
        let mut out = String::new();
        let mut rest = line;
        while let Some(c) = rest.find(['<', '\'']) {
            let (before, at) = rest.split_at(c);
            push_masked(&mut out, before);
            if let Some(q) = at.strip_prefix('\'') {
                // `'r' (0x72)`: one character of a value; an apostrophe
                // (`Patient's`) is text
                let mut cs = q.chars();
                match (cs.next(), cs.next()) {
                    (Some(_), Some('\'')) => {
                        out.push_str("'?'");
                        rest = cs.as_str();
                    }
                    _ => {
                        out.push('\'');
                        rest = q;
                    }
                }
                continue;
            }
            let Some(end) = at.find('>') else {
                // an unclosed value: drop the rest
                rest = "";
                break;
            };
            let inner = &at[1..end];
            let named = ["attribute ", "Element=", "Module=", "Macro="]
                .iter()
                .any(|p| out.ends_with(p));
            if named
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" '-/()".contains(&b))
            {
                out.push_str(&at[..=end]);
            } else {
                out.push_str("<value>");
            }
            rest = &at[end + 1..];
        }
        push_masked(&mut out, rest);
        ReportText(out)
    }

    /// Appends fixed words.
    pub fn then(mut self, words: &'static str) -> ReportText {
        self.0.push_str(words);
        self
    }

    /// Appends a count.
    pub fn count(mut self, n: u64) -> ReportText {
        self.0.push_str(&n.to_string());
        self
    }

    /// Appends the release's own relative path of an output (the path the
    /// finding's `file` already shows).
    pub fn output(mut self, rel: &str) -> ReportText {
        self.0.push_str(rel);
        self
    }

    /// Appends a file value that passed its grammar.
    pub fn echo(mut self, e: &Echo) -> ReportText {
        self.0.push_str(e.as_str());
        self
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReportText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends text with digit runs and hexadecimal numbers (`0x6c`, the code
/// of a value's character) as `#`.
fn push_masked(out: &mut String, s: &str) {
    let mut cs = s.chars().peekable();
    while let Some(c) = cs.next() {
        // a number's exponent (`1.93911e+07`, dciodvfy's spelling of a
        // large DS) is part of the number: one `#` however it is written
        if matches!(c, 'e' | 'E') && out.ends_with('#') && !out.ends_with("x#") {
            let mut ahead = cs.clone();
            if matches!(ahead.peek(), Some('+' | '-')) {
                ahead.next();
            }
            if ahead.peek().is_some_and(char::is_ascii_digit) {
                cs = ahead;
                continue;
            }
        }
        if c.is_ascii_digit()
            || (c == '.' && out.ends_with('#'))
            || (c.is_ascii_hexdigit() && out.ends_with("x#"))
        {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_core::Tag;

    #[test]
    fn issue_16_dciodvfy_numbers_in_exponent_form_mask_like_plain_ones() {
        let a = ReportText::dciodvfy("Error - Orientation vector is not unit vector for row vector of ImageOrientationPatient - values are 1.93911e+07\\1\\0");
        let b = ReportText::dciodvfy("Error - Orientation vector is not unit vector for row vector of ImageOrientationPatient - values are 2\\1\\0");
        assert_eq!(a.as_str(), b.as_str());
        assert!(a.as_str().ends_with("values are #\\#\\#"), "{}", a.as_str());
        assert_eq!(
            ReportText::dciodvfy("Error - X for TCOORD got SMITH - expected SELECTED FROM")
                .as_str(),
            ReportText::dciodvfy("Error - X for TCOORD got ANONYMIZED - expected SELECTED FROM")
                .as_str()
        );
        // a word after a number keeps its letters
        assert_eq!(
            ReportText::dciodvfy("Error - 3 elements").as_str(),
            "Error - # elements"
        );
    }

    #[test]
    fn issue_22_found_names_category_length_and_place() {
        let p = Place::element("", &TagPath(vec![(Tag(0x0020, 0x4000), None)]));
        assert_eq!(
            ReportText::found(Category::Name, 17, &p).as_str(),
            "[name:17] in (0020,4000)"
        );
    }

    #[test]
    fn issue_22_dciodvfy_lines_lose_their_values() {
        let lines = [
            "Error - Value invalid for this VR - (0x0008,0x0060) CS Modality  CS [1] = <Dr Smith> - Character invalid for this VR = 'm' (0x6d)",
            "Error - Unrecognized enumerated value <JOHNDOE> for value 1 of attribute <Patient's Sex>",
            "Warning - CodingSchemeDesignator is deprecated - attribute <CodingSchemeDesignator> = <SMITHSONIAN>",
            "Error - Value invalid for this VR - (0x0010,0x0030) DA Patient's Birth Date  DA [1] = <19701301x> - Length invalid",
        ];
        let got: Vec<String> = lines.iter().map(|l| ReportText::dciodvfy(l).0).collect();
        for (g, bad) in got.iter().zip(["Smith", "JOHNDOE", "SMITHSONIAN", "1970"]) {
            assert!(!g.to_uppercase().contains(&bad.to_uppercase()), "{g}");
        }
        assert!(got[1].ends_with("attribute <Patient's Sex>"), "{}", got[1]);
        assert!(
            got[0].contains("CS Modality  CS [#] = <value>"),
            "{}",
            got[0]
        );
        assert!(got[0].ends_with("= '?' (#x#)"), "{}", got[0]);
    }
}
