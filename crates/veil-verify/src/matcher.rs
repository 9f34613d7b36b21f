//! Finding harvested tokens in bytes, in every encoding a value may have
//! been written in.
//!
//! Each token is compiled in UTF-8, Latin-1 (when it differs), and UTF-16 in
//! both byte orders (private OB blobs and documents often hold UTF-16), into
//! one Aho-Corasick automaton matched ASCII-case-insensitively. A match only
//! counts when it does not continue a run of the same kind of character
//! (`ANN` in `ANNUAL` is not a name, `1234` in `412345` is not an ID).
//!
//! UIDs are not in the automaton. A patient's pool holds every UID of every
//! source file (thousands, 40-60 bytes each): on the bench corpus they made
//! three quarters of the automaton's states, most of its build time and
//! the cache misses of its search. A UID occurs only as a run of digits and
//! dots, and under the boundary rule above (a digit may not continue it) a
//! UID token matches exactly where it is a dot-aligned part of such a run;
//! so each run's dot-aligned parts are looked up in a hash set instead.

use std::collections::HashMap;

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
    /// every spelling of every token except UIDs: for element values
    all: Automaton,
    /// the single-byte spellings of tokens of 6 characters or more: for
    /// the raw pass over a whole file, which drops shorter values (binary
    /// data holds them by chance) and UTF-16 hits (so does numeric data),
    /// and so need not walk their states through every pixel byte
    raw: Automaton,
    /// UID-shaped tokens (digits and dots): value → token indices
    uids: HashMap<Vec<u8>, Vec<usize>>,
    /// shortest and longest key of `uids`
    uid_len: (usize, usize),
    /// per token: under [`SHORT`] characters
    short: Vec<bool>,
    /// per token: its length in characters (what a report may say of it)
    chars: Vec<usize>,
    longest: usize,
    /// the tokens sought inside a UID's components: IDs of at least
    /// [`INNER_DIGITS`] digits ([`Matcher::find_inside_uid`])
    inner: Vec<usize>,
}

/// One Aho-Corasick automaton over some spellings of the tokens.
struct Automaton {
    ac: Option<AhoCorasick>,
    /// pattern index → (token index, encoding)
    pats: Vec<(usize, Enc)>,
    /// the bytes the spellings hold, in both ASCII cases
    bytes: [bool; 256],
    /// the shortest spelling, in bytes
    shortest: usize,
}

impl Automaton {
    fn new(spellings: Vec<(Vec<u8>, usize, Enc)>) -> Automaton {
        let mut bytes = [false; 256];
        for &b in spellings.iter().flat_map(|s| &s.0) {
            bytes[b.to_ascii_lowercase() as usize] = true;
            bytes[b.to_ascii_uppercase() as usize] = true;
        }
        let shortest = spellings.iter().map(|s| s.0.len()).min().unwrap_or(0);
        let ac = (!spellings.is_empty()).then(|| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(spellings.iter().map(|s| &s.0))
                .expect("token automaton")
        });
        Automaton {
            ac,
            pats: spellings.into_iter().map(|(_, t, e)| (t, e)).collect(),
            bytes,
            shortest,
        }
    }
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

/// Values shorter than this (in characters) match binary data by chance:
/// the raw pass does not look for them, and they must stand alone.
pub const SHORT: usize = 6;

/// An all-digit ID at least this long is sought inside a UID component too
/// (`1.2.826.0.1.3680043.10.1234.15063071.7`: a tool built the UID from the
/// record number). Why 7: a given run of 7 digits occurs in a random
/// 39-digit component with a chance of about 33 in 10^7 (measured:
/// docs/verify.md), and UIDs whose digits are random by construction are
/// not searched so ([`Matcher::find_inside_uid`]); 6 digits would be ten
/// times as likely, and record numbers are rarely shorter than 7.
pub const INNER_DIGITS: usize = 7;

impl Matcher {
    /// Compiles tokens.
    pub fn new(tokens: Vec<Token>) -> Matcher {
        let mut spellings: Vec<(Vec<u8>, usize, Enc)> = Vec::new();
        let mut uids: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let v = t.value.expose();
            if t.category == Category::Uid && uid_shaped(v.as_bytes()) {
                uids.entry(v.as_bytes().to_vec()).or_default().push(i);
                continue;
            }
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
                let mut add = |bytes: Vec<u8>, enc: Enc| spellings.push((bytes, i, enc));
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
        let uid_len = (
            uids.keys().map(Vec::len).min().unwrap_or(0),
            uids.keys().map(Vec::len).max().unwrap_or(0),
        );
        let longest = spellings
            .iter()
            .map(|s| s.0.len())
            .max()
            .unwrap_or(0)
            .max(uid_len.1);
        let chars: Vec<usize> = tokens
            .iter()
            .map(|t| t.value.expose().chars().count())
            .collect();
        let short: Vec<bool> = chars.iter().map(|&n| n < SHORT).collect();
        let inner = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                let v = t.value.expose();
                t.category == Category::Id
                    && v.len() >= INNER_DIGITS
                    && v.bytes().all(|b| b.is_ascii_digit())
            })
            .map(|(i, _)| i)
            .collect();
        let raw = spellings
            .iter()
            .filter(|(_, t, e)| *e == Enc::Byte && !short[*t])
            .cloned()
            .collect();
        Matcher {
            all: Automaton::new(spellings),
            raw: Automaton::new(raw),
            tokens,
            uids,
            uid_len,
            short,
            chars,
            longest,
            inner,
        }
    }

    /// The tokens, by index.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Whether token `i` is under [`SHORT`] characters: distinctive in
    /// text only, since binary values hold it by chance.
    pub fn is_short(&self, i: usize) -> bool {
        self.short[i]
    }

    /// Token `i`'s length in characters.
    pub fn chars(&self, i: usize) -> usize {
        self.chars[i]
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
        let mut hits = Vec::new();
        self.find_uids(hay, &mut hits);
        self.matches(&self.all, hay, 0..hay.len(), &mut hits);
        dedup(hits)
    }

    /// The matches the raw pass over a whole file keeps: single-byte
    /// spellings of values of at least [`SHORT`] characters. Why runs: a
    /// match lies within a run of bytes the spellings hold at least as
    /// long as the shortest spelling, and binary data (16-bit pixels,
    /// whose high bytes are rarely text) has few; the automaton walks
    /// those runs only, not every byte of the file.
    pub fn find_raw(&self, hay: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.find_uids(hay, &mut hits);
        let a = &self.raw;
        for run in runs(hay, |b| a.bytes[b as usize], a.shortest.max(1)) {
            self.matches(a, hay, run, &mut hits);
        }
        dedup(hits)
    }

    /// The IDs of [`INNER_DIGITS`] digits or more inside the components of
    /// one UID value (`uid`, padding trimmed), where the boundary rule of
    /// [`Matcher::find`] does not look: a digit run is part of a longer
    /// component. A component that is the ID exactly is [`Matcher::find`]'s.
    /// A UID under `2.25` is not searched: its one component is a UUID's
    /// 128 bits in decimal (PS3.5 B.2), random by construction (Veil's own
    /// replacement UIDs are such), so an ID's digits occur there only by
    /// chance; the ID itself as a component is still found.
    pub fn find_inside_uid(&self, uid: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if self.inner.is_empty() || uid.starts_with(b"2.25.") {
            return hits;
        }
        let mut at = 0;
        for comp in uid.split(|&b| b == b'.') {
            for &token in &self.inner {
                let t = self.tokens[token].value.expose().as_bytes();
                if comp.len() > t.len() {
                    if let Some(p) = comp.windows(t.len()).position(|w| w == t) {
                        hits.push(Hit {
                            token,
                            start: at + p,
                            end: at + p + t.len(),
                            utf16: false,
                        });
                    }
                }
            }
            at += comp.len() + 1;
        }
        hits
    }

    /// The bounded matches of one automaton in `hay[within]`; the bounds
    /// are judged on the whole of `hay`.
    fn matches(
        &self,
        a: &Automaton,
        hay: &[u8],
        within: std::ops::Range<usize>,
        hits: &mut Vec<Hit>,
    ) {
        let Some(ac) = &a.ac else {
            return;
        };
        let base = within.start;
        for m in ac.find_overlapping_iter(&hay[within]) {
            let (token, enc) = a.pats[m.pattern().as_usize()];
            let (start, end) = (base + m.start(), base + m.end());
            if bounded(hay, start, end, enc, self.short[token]) {
                hits.push(Hit {
                    token,
                    start,
                    end,
                    utf16: enc != Enc::Byte,
                });
            }
        }
    }

    /// UID tokens in `hay`: every dot-aligned part of each run of digits
    /// and dots that is a UID token (what the boundary rule lets the
    /// automaton find: bounded by the run's ends or by a dot).
    fn find_uids(&self, hay: &[u8], hits: &mut Vec<Hit>) {
        let (min, max) = self.uid_len;
        if self.uids.is_empty() {
            return;
        }
        for r in runs(hay, uid_byte, min) {
            let (start, run) = (r.start, &hay[r]);
            // where a part may start (the run's start, after each dot) and
            // end (before each dot, the run's end)
            let dots = run
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'.')
                .map(|(k, _)| k);
            let starts: Vec<usize> = std::iter::once(0)
                .chain(dots.clone().map(|k| k + 1))
                .collect();
            let ends: Vec<usize> = dots.chain(std::iter::once(run.len())).collect();
            for &s in &starts {
                for &e in ends.iter().filter(|&&e| e >= s + min && e <= s + max) {
                    if let Some(ts) = self.uids.get(&run[s..e]) {
                        hits.extend(ts.iter().map(|&token| Hit {
                            token,
                            start: start + s,
                            end: start + e,
                            utf16: false,
                        }));
                    }
                }
            }
        }
    }
}

/// The maximal runs of bytes `keep` holds, at least `min` long. Why
/// probing: such a run holds every `min`-th position it passes over, so
/// only those are tested until one is kept, and then the run around it;
/// in binary data, where kept bytes are scattered, this reads about one
/// byte in `min` (the searches over a whole file spent half their time
/// testing every byte).
fn runs(hay: &[u8], keep: impl Fn(u8) -> bool, min: usize) -> Vec<std::ops::Range<usize>> {
    let min = min.max(1);
    let mut out = Vec::new();
    let mut i = min - 1;
    while i < hay.len() {
        if !keep(hay[i]) {
            i += min;
            continue;
        }
        let mut a = i;
        while a > 0 && keep(hay[a - 1]) {
            a -= 1;
        }
        let mut b = i + 1;
        while b < hay.len() && keep(hay[b]) {
            b += 1;
        }
        if b - a >= min {
            out.push(a..b);
        }
        // hay[b] is not kept: the next run that could be long enough
        // reaches b + min
        i = b + min;
    }
    out
}

/// One hit per place, however many spellings of the token matched
/// (UTF-16 text holds the other byte order one byte further on), in
/// order of place.
fn dedup(mut hits: Vec<Hit>) -> Vec<Hit> {
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

/// A byte of a UID's text.
fn uid_byte(b: u8) -> bool {
    b.is_ascii_digit() || b == b'.'
}

/// Digits and dots, starting and ending with a digit: found by
/// [`Matcher::find_uids`], not the automaton.
fn uid_shaped(v: &[u8]) -> bool {
    v.first().is_some_and(u8::is_ascii_digit)
        && v.last().is_some_and(u8::is_ascii_digit)
        && v.iter().all(|&b| uid_byte(b))
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

/// `short`: a token under [`SHORT`] characters must stand alone (no letter or
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

    /// An ID of 7 digits or more is found inside a UID component, but not
    /// under 2.25 (random digits), nor when it is the whole component
    /// ([`Matcher::find`] reports that), nor when shorter or not an ID.
    #[test]
    fn ids_inside_uid_components() {
        let tok = |c: Category, v: &str| Token {
            value: Phi::new(v.to_string()),
            category: c,
        };
        let mt = Matcher::new(vec![
            tok(Category::Id, "5063071"),
            tok(Category::Id, "506307"),
            tok(Category::Date, "19610203"),
        ]);
        let uid = b"1.2.826.0.1.3680043.10.1234.15063071.7";
        let hits = mt.find_inside_uid(uid);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(&uid[hits[0].start..hits[0].end], b"5063071");
        assert!(mt.find_inside_uid(b"2.25.915063071").is_empty());
        assert!(mt.find_inside_uid(b"1.2.5063071.3").is_empty());
        assert!(mt.find_inside_uid(b"1.2.1196102034").is_empty());
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

    /// The run probing and the UID lookup find what one automaton over
    /// every single-byte spelling (UIDs included) finds, on haystacks
    /// dense with near misses: values cut short, run on by a digit or a
    /// letter, UID prefixes and suffixes, digit runs inside UIDs.
    #[test]
    fn runs_and_uid_lookup_find_what_a_plain_automaton_finds() {
        let toks: Vec<Token> = [
            (Category::Uid, "1.2.826.0.1.3680043.2.1125.1234567890"),
            (Category::Uid, "1234567890"),
            (Category::Uid, "2.25.4711"),
            (Category::Date, "20110304"),
            (Category::Date, "03.04.2011"),
            (Category::Name, "DOE^JOHN"),
            (Category::Name, "ANN"),
            (Category::Id, "MRN0042"),
            (Category::Id, "12345678"),
        ]
        .iter()
        .map(|(c, v)| Token {
            value: Phi::new(v.to_string()),
            category: *c,
        })
        .collect();
        let mt = Matcher::new(toks.clone());
        let pats: Vec<&str> = toks.iter().map(|t| t.value.expose().as_str()).collect();
        let plain = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&pats)
            .expect("automaton");
        let pieces: &[&[u8]] = &[
            b"1.2.826.0.1.3680043.2.1125.1234567890",
            b"1.2.826.0.1.3680043.2.1125.12345678901",
            b".1234567890.",
            b"2.25.4711",
            b"2.25.47110",
            b"92.25.4711",
            b"20110304",
            b"201103045",
            b"03.04.2011",
            b"doe^john",
            b"DOE^JOHNNY",
            b"ann",
            b"MRN0042",
            b"12345678",
            b"112345678",
            b".",
            b"1",
            b"x",
            b" ",
            b"\0",
            b"\xff\x01",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let mut hay = Vec::new();
            for _ in 0..(next() % 12) {
                hay.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let want: Vec<(usize, usize, usize)> = {
                let mut w: Vec<Hit> = plain
                    .find_overlapping_iter(&hay)
                    .filter(|m| {
                        let short = pats[m.pattern().as_usize()].chars().count() < SHORT;
                        bounded(&hay, m.start(), m.end(), Enc::Byte, short)
                    })
                    .map(|m| Hit {
                        token: m.pattern().as_usize(),
                        start: m.start(),
                        end: m.end(),
                        utf16: false,
                    })
                    .collect();
                w = dedup(std::mem::take(&mut w));
                w.iter().map(|h| (h.token, h.start, h.end)).collect()
            };
            let got: Vec<(usize, usize, usize)> = mt
                .find(&hay)
                .iter()
                .filter(|h| !h.utf16)
                .map(|h| (h.token, h.start, h.end))
                .collect();
            assert_eq!(got, want, "find, haystack {hay:?}");
            let raw: Vec<(usize, usize, usize)> = mt
                .find_raw(&hay)
                .iter()
                .map(|h| (h.token, h.start, h.end))
                .collect();
            let long: Vec<(usize, usize, usize)> = want
                .into_iter()
                .filter(|&(t, _, _)| pats[t].chars().count() >= SHORT)
                .collect();
            assert_eq!(raw, long, "find_raw, haystack {hay:?}");
        }
    }
}
