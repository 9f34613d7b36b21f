//! Finding harvested tokens in bytes, in every encoding a value may have
//! been written in.
//!
//! Each token is compiled in UTF-8, Latin-1 (when it differs), and UTF-16 in
//! both byte orders (private OB blobs and documents often hold UTF-16), into
//! one Aho-Corasick automaton matched ASCII-case-insensitively. A match only
//! counts when it does not continue a run of the same kind of character
//! (`ANN` in `ANNUAL` is not a name, `1234` in `412345` is not an ID).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::harvest::Token;
use crate::Category;

/// How a pattern was encoded, which decides how neighbours are read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Enc {
    Byte,
    Utf16Le,
    Utf16Be,
}

/// A compiled set of tokens.
pub struct Matcher {
    tokens: Vec<Token>,
    ac: Option<AhoCorasick>,
    /// pattern index → (token index, encoding)
    pats: Vec<(usize, Enc)>,
    longest: usize,
}

/// One match: which token, where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`Matcher::tokens`].
    pub token: usize,
    /// Byte range in the searched buffer.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
    /// Matched in its UTF-16 form. Numeric data matches UTF-16 digit
    /// strings by chance (a LUT ramp 0x30, 0x31, ... reads as "0123..."),
    /// so raw binary scans take only single-byte hits.
    pub utf16: bool,
}

impl Matcher {
    /// Compiles tokens.
    pub fn new(tokens: Vec<Token>) -> Matcher {
        let mut pats: Vec<Vec<u8>> = Vec::new();
        let mut map = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let v = t.value.expose();
            // the automaton folds ASCII case only: a non-ASCII value is
            // also sought in lower case and capitalized (MÜLLER, müller,
            // Müller)
            let mut forms = vec![v.clone()];
            if !v.is_ascii() {
                let lower = v.to_lowercase();
                let mut c = lower.chars();
                let cap: String = c
                    .next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default();
                forms.push(lower);
                forms.push(cap);
            }
            for v in &forms {
                let mut add = |bytes: Vec<u8>, enc: Enc| {
                    pats.push(bytes);
                    map.push((i, enc));
                };
                add(v.as_bytes().to_vec(), Enc::Byte);
                if !v.is_ascii() && v.chars().all(|c| (c as u32) < 256) {
                    add(v.chars().map(|c| c as u8).collect(), Enc::Byte);
                }
                // UTF-16 holds text (names, IDs, addresses) in documents and
                // private blobs; dates, times and UIDs there are rare, and
                // each extra pattern costs automaton size
                if !matches!(t.category, Category::Date | Category::Time | Category::Uid) {
                    add(
                        v.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
                        Enc::Utf16Le,
                    );
                    add(
                        v.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
                        Enc::Utf16Be,
                    );
                }
            }
        }
        let longest = pats.iter().map(Vec::len).max().unwrap_or(0);
        let ac = (!pats.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&pats)
                .expect("token automaton")
        });
        Matcher {
            tokens,
            ac,
            pats: map,
            longest,
        }
    }

    /// The tokens, by index.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The longest pattern in bytes (for overlapping chunked scans).
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// All matches in `hay`, overlapping ones included.
    pub fn find(&self, hay: &[u8]) -> Vec<Hit> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let mut hits = Vec::new();
        for m in ac.find_overlapping_iter(hay) {
            let (token, enc) = self.pats[m.pattern().as_usize()];
            let short = self.tokens[token].value.expose().chars().count() < 6;
            if bounded(hay, m.start(), m.end(), enc, short) {
                hits.push(Hit {
                    token,
                    start: m.start(),
                    end: m.end(),
                    utf16: enc != Enc::Byte,
                });
            }
        }
        // one hit per place, however many spellings of the token matched
        // (UTF-16 text holds the other byte order one byte further on)
        hits.sort_by_key(|h| (h.token, h.start, h.end));
        let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
        for h in hits {
            match out.last() {
                Some(p) if p.token == h.token && h.start < p.end => {}
                _ => out.push(h),
            }
        }
        out.sort_by_key(|h| (h.start, h.end, h.token));
        out
    }
}

#[derive(PartialEq)]
enum Class {
    Letter,
    Digit,
    Other,
}

fn class(c: u8) -> Class {
    if c.is_ascii_alphabetic() || c >= 0xC0 {
        Class::Letter
    } else if c.is_ascii_digit() {
        Class::Digit
    } else {
        Class::Other
    }
}

/// The character before and after a match, in the match's encoding.
fn neighbours(hay: &[u8], start: usize, end: usize, enc: Enc) -> (Option<u8>, Option<u8>) {
    let unit = |i: usize| -> Option<u8> {
        match enc {
            Enc::Byte => hay.get(i).copied(),
            Enc::Utf16Le => match (hay.get(i), hay.get(i + 1)) {
                (Some(&lo), Some(&0)) => Some(lo),
                (Some(_), Some(_)) => Some(b'a'),
                _ => None,
            },
            Enc::Utf16Be => match (hay.get(i), hay.get(i + 1)) {
                (Some(&0), Some(&lo)) => Some(lo),
                (Some(_), Some(_)) => Some(b'a'),
                _ => None,
            },
        }
    };
    let w = if enc == Enc::Byte { 1 } else { 2 };
    let before = start.checked_sub(w).and_then(unit);
    (before, unit(end))
}

/// `short`: a token under 6 characters must stand alone (no letter or
/// digit next to it): inside a pseudonym such as `VSKB4VN123Q` any three
/// digits occur by chance.
fn bounded(hay: &[u8], start: usize, end: usize, enc: Enc, short: bool) -> bool {
    let (first, last) = match enc {
        Enc::Byte => (hay[start], hay[end - 1]),
        Enc::Utf16Le => (hay[start], hay[end - 2]),
        Enc::Utf16Be => (hay[start + 1], hay[end - 1]),
    };
    let (before, after) = neighbours(hay, start, end, enc);
    let ok = |edge: u8, n: Option<u8>| match n {
        None => true,
        Some(n) => {
            // a dot is a boundary, so a record number inside a UID
            // (`1.2.1234567.3`) is still found
            let (ce, cn) = (class(edge), class(n));
            if short {
                return ce == Class::Other || cn == Class::Other;
            }
            ce == Class::Other || ce != cn
        }
    };
    ok(first, before) && ok(last, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_core::Phi;

    fn m(v: &[&str]) -> Matcher {
        Matcher::new(
            v.iter()
                .map(|s| Token {
                    value: Phi::new(s.to_string()),
                    category: Category::Name,
                })
                .collect(),
        )
    }

    #[test]
    fn boundaries_and_case() {
        let mt = m(&["ANN", "1234567"]);
        assert_eq!(mt.find(b"Annual").len(), 0);
        assert_eq!(mt.find(b"for ann.").len(), 1);
        assert_eq!(mt.find(b"x12345678").len(), 0);
        assert_eq!(mt.find(b"MRN1234567").len(), 1);
        assert_eq!(mt.find(b"1.2.3.1234567.4").len(), 1);
    }

    #[test]
    fn utf16_and_latin1() {
        let mt = m(&["MÜLLER"]);
        let utf16: Vec<u8> = "Herr Müller"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(mt.find(&utf16).len(), 1);
        let latin1: Vec<u8> = "MÜLLER^HANS".chars().map(|c| c as u8).collect();
        assert_eq!(mt.find(&latin1).len(), 1);
        assert_eq!(mt.find("müller".to_uppercase().as_bytes()).len(), 1);
    }
}
