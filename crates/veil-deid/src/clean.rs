//! Cleaning free text (the C action, Clean Descriptors, Clean Structured
//! Content) and the safety net that runs after the table on every value an
//! object keeps.
//!
//! Two sources of "what identifies": the object's own identifying values
//! (harvested before any change: names, IDs, dates in several spellings,
//! addresses, institutions, devices), and patterns that need no source
//! (dates in any common spelling, MRN/SSN-like numbers, phone numbers,
//! e-mail, URLs, IP addresses, ages over 89). Matches are replaced by `***`
//! (ages by `90+`; URLs lose their query, fragment and identifier-like path
//! segments). When in doubt, remove: a value that cannot be decoded in its
//! character set is removed, not kept.
//!
//! The own values are matched by one Aho-Corasick automaton per object,
//! built once, ASCII case-insensitive (non-ASCII values are added in lower
//! and upper case), with a word-boundary check on each hit; the cleaner and
//! the safety net share it and differ only in which of its tokens count.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder, RegexSet};
use veil_core::Phi;

/// What replaces a removed span.
pub const MASK: &str = "***";

/// What an over-89 age in prose becomes (HIPAA Safe Harbor).
const AGE_CAP: &str = "90+";

/// Digit-only own values shorter than this count in the safety net only as
/// a whole value of a text or coded attribute, never inside text and never
/// in numeric VRs: PatientID `123` must not take InstanceNumber `123`, or
/// `4` of `4.5 mm`, with it. Six digits is where an ID stops being a
/// plausible count or measurement.
pub const NET_MIN_DIGITS: usize = 6;

/// Words that test data and form templates put where a person's name goes
/// ("ANONYMOUS", "Last Name^First Name", "Enter text"). As name components
/// they are words that technical values hold for other reasons (a concept
/// name "Recording Observer's Name", a coding scheme "TEST"), so the safety
/// net does not look for them alone; the cleaner of descriptions still
/// does, and a whole name is still looked for.
const PLACEHOLDER_WORDS: &[&str] = &[
    "anon",
    "anonymous",
    "anonymized",
    "anonymised",
    "demo",
    "none",
    "patient",
    "phantom",
    "sample",
    "test",
    "unknown",
    "name",
    "first",
    "last",
    "given",
    "family",
    "enter",
    "text",
];

/// What kind of own value a token came from; `veil explain` names the kind,
/// never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A person name or one of its components.
    Name,
    /// A date, in one of the spellings harvested.
    Date,
    /// An identifier (a value with digits).
    Id,
    /// Another identifying value (institution, address, AE title...).
    Value,
}

/// How far a harvested token reaches in the safety net (the cleaner uses
/// every token anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// A word of a longer value (an address, an institution): common words
    /// ("MEDICAL", "CENTER") that only descriptions being cleaned lose.
    Piece,
    /// A short digit-only value: counts as a whole value only.
    WholeOnly,
    /// Names, IDs, dates, whole values: count anywhere on word boundaries.
    Strong,
}

/// The PHI pattern that hit (for `veil explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// A date in some spelling.
    Date,
    /// An SSN- or MRN-like number.
    Number,
    /// A phone number.
    Phone,
    /// An e-mail address.
    Email,
    /// A URL (query, fragment or an identifier-like path segment).
    Url,
    /// An IP address.
    Ip,
    /// An age over 89.
    Age,
}

/// What the safety net found in a value: the category only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetHit {
    /// One of the object's own identifying values.
    Own(Kind),
    /// A PHI pattern.
    Pattern(Pattern),
    /// The own-value matcher could not be built: nothing can be trusted.
    Unchecked,
}

impl NetHit {
    /// The words `veil explain` adds to the decision.
    pub fn note(self) -> &'static str {
        match self {
            NetHit::Own(Kind::Name) => "cleaned by the safety net: name",
            NetHit::Own(Kind::Date) => "cleaned by the safety net: date",
            NetHit::Own(Kind::Id) => "cleaned by the safety net: id",
            NetHit::Own(Kind::Value) => "cleaned by the safety net: identifying value",
            NetHit::Pattern(Pattern::Date) => "cleaned by the safety net: pattern: date",
            NetHit::Pattern(Pattern::Number) => "cleaned by the safety net: pattern: number",
            NetHit::Pattern(Pattern::Phone) => "cleaned by the safety net: pattern: phone",
            NetHit::Pattern(Pattern::Email) => "cleaned by the safety net: pattern: e-mail",
            NetHit::Pattern(Pattern::Url) => "cleaned by the safety net: pattern: url",
            NetHit::Pattern(Pattern::Ip) => "cleaned by the safety net: pattern: ip address",
            NetHit::Pattern(Pattern::Age) => "cleaned by the safety net: pattern: age over 89",
            NetHit::Unchecked => "removed by the safety net: the own-value matcher failed",
        }
    }
}

/// Which patterns a value is scanned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patterns {
    /// None: vocabulary (code attributes) and values an option keeps.
    None,
    /// Those no technical string has the shape of (e-mail, URL, SSN, dates
    /// with a month name, ages in words): short
    /// free text (LO, SH, PN), where version numbers, kernels and model
    /// names look like numeric dates, IP addresses or MRNs.
    Distinct,
    /// All of them: prose (LT, ST, UT, UC, text inside UN/OB) and the C
    /// action.
    All,
}

/// A month name, abbreviated or in full (not any word that starts like
/// one: "MARKER 1 12" is no date).
fn month() -> &'static str {
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
}

/// The patterns: (category, distinct?, regex). Order matters: the first
/// alternative that matches at a position wins.
fn pattern_parts() -> Vec<(Pattern, bool, String)> {
    let m = month();
    let year_first = r"(?:1[89]|20)\d{2}";
    vec![
        // ages over 89 in words: 93-year-old, 93 y/o, 93Y, 93 years, aged 93
        (
            Pattern::Age,
            true,
            r"\b0?(?:9\d|1[0-4]\d)\s?-?\s?(?:years?|yrs?|y/o|yo|y)(?:[\s-]?old)?\b".into(),
        ),
        (
            Pattern::Age,
            true,
            r"\bage[d:]?:?\s*0?(?:9\d|1[0-4]\d)\b".into(),
        ),
        // e-mail before the rest: it must go whole
        (Pattern::Email, true, r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+".into()),
        (
            Pattern::Url,
            true,
            r"\b(?:https?|ftp)://\S+|\bwww\.\S+".into(),
        ),
        // dates with a month name: 11-DEC-2018, 11 Dec 2018, 11th Dec 18,
        // Dec 11, 2018, DEC-11-2018, December 2018
        (
            Pattern::Date,
            true,
            format!(r"\b\d{{1,2}}(?:st|nd|rd|th)?[ .-]?{m}[ ,.-]*\d{{2,4}}\b"),
        ),
        (
            Pattern::Date,
            true,
            format!(r"\b{m}[ .-]?\d{{1,2}}(?:st|nd|rd|th)?,?[ .-]?\d{{2,4}}\b"),
        ),
        (Pattern::Date, true, format!(r"\b{m}[ ,.-]*{year_first}\b")),
        // numeric dates: 2018-12-11, 2018/12/11 (build dates of software
        // versions have this shape too, so prose only), 12/11/2018,
        // 11.12.2018, 11-12-18, 20181211
        (
            Pattern::Date,
            false,
            format!(r"\b{year_first}[-/.]\d{{1,2}}[-/.]\d{{1,2}}\b"),
        ),
        (
            Pattern::Date,
            false,
            r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b".into(),
        ),
        (
            Pattern::Date,
            false,
            format!(r"\b{year_first}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"),
        ),
        // SSN and MRN-like numbers
        (Pattern::Number, true, r"\b\d{3}-\d{2}-\d{4}\b".into()),
        (Pattern::Number, false, r"\b[A-Za-z]{0,3}\d{6,}\b".into()),
        // phone numbers
        (
            Pattern::Phone,
            false,
            r"(?:\+\d{1,3}[\s.-]?)?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}\b".into(),
        ),
        (Pattern::Ip, false, r"\b\d{1,3}(?:\.\d{1,3}){3}\b".into()),
    ]
}

struct PatternSet {
    all: Regex,
    distinct: Regex,
    /// Each part anchored, to name the category of a match.
    which: RegexSet,
    kinds: Vec<Pattern>,
}

fn patterns() -> &'static PatternSet {
    static R: OnceLock<PatternSet> = OnceLock::new();
    R.get_or_init(|| {
        let parts = pattern_parts();
        let build = |alts: Vec<&str>| {
            RegexBuilder::new(&alts.join("|"))
                .case_insensitive(true)
                .build()
                .expect("valid patterns")
        };
        PatternSet {
            all: build(parts.iter().map(|p| p.2.as_str()).collect()),
            distinct: build(parts.iter().filter(|p| p.1).map(|p| p.2.as_str()).collect()),
            which: regex::RegexSetBuilder::new(parts.iter().map(|p| format!("^(?:{})$", p.2)))
                .case_insensitive(true)
                .build()
                .expect("valid patterns"),
            kinds: parts.iter().map(|p| p.0).collect(),
        }
    })
}

/// Replaces the pattern matches in `text`; returns the first category hit.
/// Borrows `text` where nothing matched: most values are scanned and kept.
fn replace_patterns(text: &str, which: Patterns) -> (Cow<'_, str>, Option<Pattern>) {
    // every pattern needs a digit, an `@` or a URL's `://` or `www.`: most
    // kept values ("CT", "HFS", "SIEMENS") skip the regex altogether
    let may_hit = text.bytes().any(|b| b.is_ascii_digit() || b == b'@')
        || text.contains("://")
        || text
            .as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"www."));
    let set = patterns();
    let re = match which {
        _ if !may_hit => return (Cow::Borrowed(text), None),
        Patterns::None => return (Cow::Borrowed(text), None),
        Patterns::Distinct => &set.distinct,
        Patterns::All => &set.all,
    };
    let mut first = None;
    let out = re.replace_all(text, |c: &regex::Captures| {
        let span = &c[0];
        let kind = set
            .which
            .matches(span)
            .iter()
            .next()
            .map_or(Pattern::Number, |i| set.kinds[i]);
        let new = match kind {
            Pattern::Age => cap_age_words(span),
            Pattern::Url => sanitize_url(span),
            _ => MASK.to_string(),
        };
        // a URL already clean is rewritten to itself: not a hit
        if new != span {
            first.get_or_insert(kind);
        }
        new
    });
    (out, first)
}

/// "93-year-old" -> "90+-year-old", "aged 093" -> "aged 90+": the number
/// goes, the words stay.
fn cap_age_words(span: &str) -> String {
    let start = span.find(|c: char| c.is_ascii_digit()).unwrap_or(0);
    let end = span[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(span.len(), |e| start + e);
    format!("{}{AGE_CAP}{}", &span[..start], &span[end..])
}

/// A path segment that looks like an identifier: four or more digits (an
/// MRN, an accession number, a UID, a date), which no plain resource name
/// needs.
fn id_like(segment: &str) -> bool {
    segment.bytes().filter(u8::is_ascii_digit).count() >= 4
}

/// A URL or URI without its query and fragment (where search parameters
/// such as `?mrn=` live), without user information, and with every
/// identifier-like path segment masked. Scheme, host and plain path
/// segments stay, so the link still says what it points to.
pub fn sanitize_url(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or("");
    let (head, path) = match base.find("://") {
        Some(i) => {
            let rest = &base[i + 3..];
            let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let auth = match auth.rsplit_once('@') {
                Some((_, host)) => format!("{MASK}@{host}"),
                None => auth.to_string(),
            };
            (format!("{}{auth}", &base[..i + 3]), path)
        }
        None => (String::new(), base),
    };
    let path: Vec<&str> = path
        .split('/')
        .map(|s| if id_like(s) { MASK } else { s })
        .collect();
    format!("{head}{}", path.join("/"))
}

struct Token {
    text: Phi<String>,
    kind: Kind,
    reach: Reach,
}

/// Identifying values harvested from one object.
#[derive(Default)]
pub struct Harvest {
    tokens: Vec<Token>,
}

impl Harvest {
    /// Adds a value of a given VR, split into the pieces that could appear
    /// on their own in free text. The kind follows the VR: PN names, DA/DT
    /// dates, values with digits IDs.
    pub fn add(&mut self, vr: &str, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        match vr {
            "PN" => {
                for group in v.split('=') {
                    let full = group.replace('^', " ");
                    self.push(full.trim(), Kind::Name, Reach::Strong);
                    for part in group.split(['^', ' ', ',']) {
                        let part = part.trim();
                        let reach = if PLACEHOLDER_WORDS.contains(&part.to_lowercase().as_str()) {
                            Reach::Piece
                        } else {
                            Reach::Strong
                        };
                        self.push(part, Kind::Name, reach);
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
                            self.push(&s, Kind::Date, Reach::Strong);
                        }
                        // with the month's name, where no pattern looks
                        // (a code meaning): 11-DEC-2018, 11 Dec 2018,
                        // Dec 11, 2018, with and without a leading zero
                        const MONTHS: [&str; 12] = [
                            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                            "nov", "dec",
                        ];
                        let Some(mon) = m
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| MONTHS.get(i.wrapping_sub(1)))
                        else {
                            continue;
                        };
                        let short = dd.trim_start_matches('0');
                        for day in [dd, short] {
                            for s in [
                                format!("{day}-{mon}-{y}"),
                                format!("{day} {mon} {y}"),
                                format!("{mon} {day}, {y}"),
                            ] {
                                self.push(&s, Kind::Date, Reach::Strong);
                            }
                        }
                    }
                }
            }
            _ => {
                let kind = if vr == "DT" {
                    Kind::Date
                } else if v.chars().any(|c| c.is_ascii_digit()) {
                    Kind::Id
                } else {
                    Kind::Value
                };
                for one in v.split('\\') {
                    let one = one.trim();
                    let short_number = one.chars().all(|c| c.is_ascii_digit())
                        && one.chars().count() < NET_MIN_DIGITS;
                    let reach = if short_number {
                        Reach::WholeOnly
                    } else {
                        Reach::Strong
                    };
                    self.push(one, kind, reach);
                    // the spelling a CS can hold: `MF-0000012` as `MF_0000012`
                    if one.chars().any(|c| !c.is_alphanumeric() && c != ' ') {
                        let cs: String = one
                            .chars()
                            .map(|c| {
                                if c.is_alphanumeric() || c == ' ' {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        self.push(&cs, kind, reach);
                    }
                    // words of addresses and institution names
                    for w in one.split(|c: char| !c.is_alphanumeric()) {
                        if w.chars().count() >= 4 {
                            self.push(w, kind, Reach::Piece);
                        }
                    }
                    // digit runs of IDs, also inside a word (`MRN4455667`
                    // gives `4455667`, which a number attribute can hold)
                    for d in one.split(|c: char| !c.is_ascii_digit()) {
                        if d.len() >= NET_MIN_DIGITS {
                            self.push(d, kind, Reach::Strong);
                        } else if d.len() >= 3 {
                            self.push(d, kind, Reach::Piece);
                        }
                    }
                }
            }
        }
    }

    fn push(&mut self, s: &str, kind: Kind, reach: Reach) {
        // matched on word boundaries, so the edges must be word characters
        let s = s.trim_matches(|c: char| !c.is_alphanumeric());
        // one- and two-letter pieces (initials, "DR") are too common to
        // remove everywhere; whole values and longer pieces are not
        if s.chars().count() >= 3 {
            self.tokens.push(Token {
                text: Phi::new(s.to_lowercase()),
                kind,
                reach,
            });
        }
    }

    /// The harvested values (lower-cased pieces and whole values).
    pub fn values(&self) -> Vec<Phi<String>> {
        self.tokens.iter().map(|t| t.text.clone()).collect()
    }

    /// Builds the cleaner: one automaton over every token, each token with
    /// the strongest kind and reach it was harvested with.
    ///
    /// The objects of one series harvest the same tokens, and building the
    /// automaton costs more than scanning an object's values with it, so
    /// each thread keeps the last few automata ([`CACHED`]) and reuses one
    /// whose token list is the same (compared in full, not by a hash: a
    /// collision would scan one patient's object for another's values).
    pub fn cleaner(&self) -> Cleaner {
        let mut by_text: HashMap<&str, (Kind, Reach)> = HashMap::new();
        for t in &self.tokens {
            let e = by_text
                .entry(t.text.expose().as_str())
                .or_insert((t.kind, t.reach));
            if t.reach > e.1 {
                *e = (t.kind, t.reach);
            }
        }
        let mut key: Vec<(String, Kind, Reach)> = Vec::with_capacity(by_text.len() * 2);
        for (text, (kind, reach)) in by_text {
            key.push((text.to_string(), kind, reach));
            // the automaton folds ASCII case only
            if !text.is_ascii() {
                key.push((text.to_uppercase(), kind, reach));
            }
        }
        if key.is_empty() {
            return Cleaner {
                own: None,
                failed: false,
            };
        }
        key.sort_unstable();
        let key = Phi::new(key);
        let own = CACHE.with_borrow_mut(|cache| {
            if let Some(i) = cache.iter().position(|(k, _)| k.expose() == key.expose()) {
                let hit = cache.remove(i);
                let own = Arc::clone(&hit.1);
                cache.insert(0, hit);
                return Some(own);
            }
            // one automaton per token set, scanned over a few short values:
            // a contiguous NFA builds several times faster than a DFA, and
            // the scan time it gives up is small on values this short
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(key.expose().iter().map(|(t, _, _)| t))
                .ok()?;
            let info = key.expose().iter().map(|&(_, k, r)| (k, r)).collect();
            let own = Arc::new(Own { ac, info });
            cache.insert(0, (key, Arc::clone(&own)));
            cache.truncate(CACHED);
            Some(own)
        });
        let failed = own.is_none();
        Cleaner { own, failed }
    }
}

/// How many automata each thread keeps for reuse: a batch walks a folder
/// series by series, and a few cover series that interleave.
const CACHED: usize = 4;

/// The token list an automaton was built from (sorted, deduplicated).
type TokenList = Phi<Vec<(String, Kind, Reach)>>;

thread_local! {
    /// The last automata built on this thread, most recent first, with the
    /// token lists they were built from.
    static CACHE: RefCell<Vec<(TokenList, Arc<Own>)>> =
        const { RefCell::new(Vec::new()) };
}

struct Own {
    ac: AhoCorasick,
    info: Vec<(Kind, Reach)>,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Is `text[start..end]` one whole value (of a `\`-separated list, spaces
/// around ignored)?
fn is_whole(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].trim_end_matches(' ');
    let after = text[end..].trim_start_matches(' ');
    (before.is_empty() || before.ends_with('\\')) && (after.is_empty() || after.starts_with('\\'))
}

impl Own {
    /// Non-overlapping hits on word boundaries, leftmost-longest, of the
    /// tokens that `counts` accepts (given kind, reach and whether the hit
    /// is a whole value).
    fn spans(&self, text: &str, counts: impl Fn(Reach, bool) -> bool) -> Vec<(usize, usize, Kind)> {
        let mut hits: Vec<(usize, usize, Kind)> = self
            .ac
            .find_overlapping_iter(text)
            .filter_map(|m| {
                let (s, e) = (m.start(), m.end());
                let before = text[..s].chars().next_back().is_some_and(is_word);
                let after = text[e..].chars().next().is_some_and(is_word);
                if before || after {
                    return None;
                }
                let (kind, reach) = self.info[m.pattern().as_usize()];
                counts(reach, is_whole(text, s, e)).then_some((s, e, kind))
            })
            .collect();
        hits.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        let mut out: Vec<(usize, usize, Kind)> = Vec::with_capacity(hits.len());
        for h in hits {
            if out.last().is_none_or(|l| h.0 >= l.1) {
                out.push(h);
            }
        }
        out
    }
}

fn mask_spans(text: &str, spans: &[(usize, usize, Kind)]) -> String {
    let mut s = String::with_capacity(text.len());
    let mut at = 0;
    for &(a, b, _) in spans {
        s.push_str(&text[at..a]);
        s.push_str(MASK);
        at = b;
    }
    s.push_str(&text[at..]);
    s
}

/// What the safety net does to a text value.
#[derive(Debug, PartialEq, Eq)]
pub struct NetFix {
    /// The cleaned text; `None`: remove the value.
    pub text: Option<String>,
    /// What was found (the first hit).
    pub hit: NetHit,
}

/// Removes identifying spans from text.
pub struct Cleaner {
    own: Option<Arc<Own>>,
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
        let (s, _) = replace_patterns(text, Patterns::All);
        Some(match &self.own {
            Some(own) => mask_spans(&s, &own.spans(&s, |_, _| true)),
            None => s.into_owned(),
        })
    }

    /// The safety net on a text value (LO, SH, PN, LT, ST, UT, UC, UR, text
    /// inside UN/OB): the object's own values (names, IDs, dates, whole
    /// values; a digit-only value shorter than [`NET_MIN_DIGITS`] only as a
    /// whole value; words of addresses not at all) and the `which`
    /// patterns. `None` when the value holds none of them.
    pub fn net_text(&self, text: &str, which: Patterns) -> Option<NetFix> {
        if self.failed {
            return Some(NetFix {
                text: None,
                hit: NetHit::Unchecked,
            });
        }
        let (s, pat) = replace_patterns(text, which);
        let spans = match &self.own {
            Some(own) => own.spans(&s, |reach, whole| {
                reach == Reach::Strong || (reach == Reach::WholeOnly && whole)
            }),
            None => Vec::new(),
        };
        let hit = match (spans.first(), pat) {
            (Some(&(_, _, k)), _) => NetHit::Own(k),
            (None, Some(p)) => NetHit::Pattern(p),
            (None, None) => return None,
        };
        Some(NetFix {
            text: Some(mask_spans(&s, &spans)),
            hit,
        })
    }

    /// The safety net on a coded or numeric value (CS, AE: own values on
    /// word boundaries; IS, DS, AS, DA, TM, DT, UI: `exact`, own values
    /// only as a whole value and never a short digit-only one). Returns,
    /// for each `\`-separated value, whether it holds an own value, and the
    /// kind of the first; `None` when none does.
    pub fn net_values(&self, text: &str, exact: bool) -> Option<(Vec<bool>, NetHit)> {
        let n = text.split('\\').count();
        if self.failed {
            return Some((vec![true; n], NetHit::Unchecked));
        }
        let own = self.own.as_ref()?;
        let n_values = n;
        // a UID holds an ID's digits inside a component ("1.2.3.14455667"):
        // a long digit-only own value counts there without word boundaries
        if exact
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'\\')
        {
            let mut hit = vec![false; n_values];
            let mut first = None;
            for m in own.ac.find_overlapping_iter(text) {
                let (kind, reach) = own.info[m.pattern().as_usize()];
                let len = m.end() - m.start();
                if reach == Reach::Strong
                    && len >= NET_MIN_DIGITS
                    && text[m.start()..m.end()].bytes().all(|b| b.is_ascii_digit())
                {
                    hit[text[..m.start()].matches('\\').count()] = true;
                    first.get_or_insert(kind);
                }
            }
            if let Some(k) = first {
                return Some((hit, NetHit::Own(k)));
            }
        }
        let spans = own.spans(text, |reach, whole| match reach {
            Reach::Strong => whole || !exact,
            Reach::WholeOnly => whole && !exact,
            Reach::Piece => false,
        });
        let first = spans.first()?.2;
        // which value each span lies in
        let mut hit = vec![false; n];
        for (s, _, _) in &spans {
            hit[text[..*s].matches('\\').count()] = true;
        }
        Some((hit, NetHit::Own(first)))
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

    #[test]
    fn dates_in_every_common_spelling() {
        let c = Harvest::default().cleaner();
        for d in [
            "11-DEC-2018",
            "11 Dec 2018",
            "11th December 2018",
            "Dec 11, 2018",
            "DEC-11-2018",
            "December 2018",
            "2018-12-11",
            "2018/12/11",
            "12/11/2018",
            "11.12.2018",
            "20181211",
            "11-DEC-18",
            "12/11/18",
            "11.12.18",
            "Dec 11 18",
        ] {
            let out = c.clean(&format!("seen {d} again")).unwrap();
            assert_eq!(out, "seen *** again", "{d}");
        }
        // the net scans short text with the distinct spellings only
        for d in ["11-DEC-2018", "Dec 11, 2018", "December 2018"] {
            let f = c.net_text(&format!("CT {d}"), Patterns::Distinct).unwrap();
            assert_eq!(f.text.as_deref(), Some("CT ***"), "{d}");
            assert_eq!(f.hit, NetHit::Pattern(Pattern::Date));
        }
    }

    #[test]
    fn ages_over_89_in_any_wording() {
        let c = Harvest::default().cleaner();
        for (a, want) in [
            ("93-year-old male", "90+-year-old male"),
            ("93 y/o male", "90+ y/o male"),
            ("aged 93", "aged 90+"),
            ("age: 93", "age: 90+"),
            ("93Y", "90+Y"),
            ("093Y", "90+Y"),
            ("93 years", "90+ years"),
            ("101 yo", "90+ yo"),
            ("93 yrs old", "90+ yrs old"),
        ] {
            assert_eq!(c.clean(a).unwrap(), want, "{a}");
            let f = c.net_text(a, Patterns::Distinct).unwrap();
            assert_eq!(f.hit, NetHit::Pattern(Pattern::Age));
        }
        for keep in ["45-year-old", "89 y/o", "aged 62", "CT 93 slices", "T93"] {
            assert_eq!(c.clean(keep).unwrap(), keep);
        }
    }

    #[test]
    fn urls_lose_query_fragment_and_identifiers() {
        assert_eq!(
            sanitize_url("https://pacs.example.org/viewer/study?mrn=778812&x=1#frag"),
            "https://pacs.example.org/viewer/study"
        );
        assert_eq!(
            sanitize_url("https://user:pw@h.example/p/MRN778812/1.2.840.1234/view"),
            "https://***@h.example/p/***/***/view"
        );
        assert_eq!(sanitize_url("urn:oid:1.2.3"), "urn:oid:1.2.3");
        let c = Harvest::default().cleaner();
        assert_eq!(
            c.clean("see https://x.example/a?id=778812 now").unwrap(),
            "see https://x.example/a now"
        );
        let f = c
            .net_text("see www.x.example/r/12345678", Patterns::Distinct)
            .unwrap();
        assert_eq!(f.text.as_deref(), Some("see www.x.example/r/***"));
        assert_eq!(f.hit, NetHit::Pattern(Pattern::Url));
        assert!(c
            .net_text("https://x.example/docs", Patterns::Distinct)
            .is_none());
    }

    #[test]
    fn net_finds_own_values_anywhere_but_spares_technical_values() {
        let mut h = Harvest::default();
        h.add("PN", "Knowlesworth^Eustace");
        h.add("LO", "123"); // a short PatientID
        h.add("LO", "MRN-4455667");
        h.add("DA", "19700412");
        h.add("LO", "General Medical Center");
        let c = h.cleaner();
        // names inside code meanings, any case, any separator
        let f = c
            .net_text("CT HEAD FOR EUSTACE_KNOWLESWORTH", Patterns::None)
            .unwrap();
        assert_eq!(f.text.as_deref(), Some("CT HEAD FOR ***_***"));
        assert_eq!(f.hit, NetHit::Own(Kind::Name));
        assert_eq!(
            c.net_text("ref 4455667", Patterns::None)
                .unwrap()
                .text
                .as_deref(),
            Some("ref ***")
        );
        // the short ID only as a whole value
        assert!(c.net_text("Series 123", Patterns::None).is_none());
        assert_eq!(
            c.net_text("123", Patterns::None).unwrap().hit,
            NetHit::Own(Kind::Id)
        );
        // words of an institution are not own values for the net
        assert!(c.net_text("GE MEDICAL SYSTEMS", Patterns::None).is_none());
        // coded and numeric values
        assert!(c.net_values("123", true).is_none());
        assert!(c.net_values("0.5\\123", true).is_none());
        let (hit, k) = c.net_values("ORIGINAL\\KNOWLESWORTH", false).unwrap();
        assert_eq!((hit, k), (vec![false, true], NetHit::Own(Kind::Name)));
        for spelled in ["12-APR-1970", "12 Apr 1970", "Apr 12, 1970", "4455667"] {
            let f = c.net_text(&format!("CT {spelled}"), Patterns::None);
            assert_eq!(f.unwrap().text.as_deref(), Some("CT ***"), "{spelled}");
        }
        assert!(c.net_values("MRN_4455667", false).is_some());
        let (hit, k) = c.net_values("19700412", true).unwrap();
        assert_eq!((hit, k), (vec![true], NetHit::Own(Kind::Date)));
        assert!(c.net_values("HEAD", false).is_none());
        // an ID's digits inside a UID component
        let (hit, _) = c.net_values("1.2.826.0.1.14455667.5", true).unwrap();
        assert_eq!(hit, vec![true]);
        assert!(c.net_values("1.2.826.0.1.1445566.5", true).is_none());
        // non-ASCII names in either case
        let mut h = Harvest::default();
        h.add("PN", "Müller^Jörg");
        let c = h.cleaner();
        assert_eq!(
            c.net_text("MÜLLER jörg", Patterns::None)
                .unwrap()
                .text
                .as_deref(),
            Some("*** ***")
        );
    }

    #[test]
    fn net_patterns_by_tier() {
        let c = Harvest::default().cleaner();
        // version numbers and kernels are not dates or IP addresses in
        // short text; in prose they are scanned with every pattern
        for v in [
            "syngo CT 2012B",
            "4.5.0.123",
            "V5.0.12",
            "B30f",
            "FC03",
            "PRINTERS__[2010/06/30]",
        ] {
            assert!(c.net_text(v, Patterns::Distinct).is_none(), "{v}");
        }
        assert!(c.net_text("call 555-123-4567", Patterns::All).is_some());
        assert!(c.net_text("call 555-123-4567", Patterns::None).is_none());
    }
}
