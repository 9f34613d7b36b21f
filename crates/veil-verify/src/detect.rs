//! Source-free detectors: what identifying text looks like, for outputs
//! whose originals are not at hand and for values the source never held in
//! a structured field (a name typed into a comment).
//!
//! They run on text: text-VR values other than those whose shape is
//! expected in a release (DA/DT/TM hold shifted dates, UI/DS/IS numbers),
//! printable runs inside binary values, and file names.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

use crate::Category;

/// One detector hit in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternHit {
    /// What it looks like.
    pub category: Category,
    /// The detector's name (`pattern:date`, `name-list`, ...).
    pub detector: &'static str,
    /// Byte range in the text.
    pub start: usize,
    /// End of the byte range.
    pub end: usize,
}

/// What the text is, which decides the detectors that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Free text, descriptions, private text, printable runs of bytes.
    Text,
    /// A PN value: its components are checked against the name lists.
    PersonName,
    /// A file or folder name: bare digit runs are expected there
    /// (pseudonymous hex names), so only the shaped detectors run.
    FileName,
}

struct Detectors {
    list: Vec<(Category, &'static str, Regex)>,
    bare_number: Regex,
    word: Regex,
    first: HashSet<&'static str>,
    last: HashSet<&'static str>,
    not_names: HashSet<&'static str>,
    dicom_words: HashSet<&'static str>,
}

const FIRST: &str = include_str!("../data/names/first.txt");
const LAST: &str = include_str!("../data/names/last.txt");

/// Words that are in the census name lists but are everyday English or
/// imaging vocabulary; a pair of them is not a person. Veil's own list, as
/// data beside the census lists.
const NOT_NAMES: &str = include_str!("../data/names/not_names.txt");

/// Every word of every attribute keyword in the PS3.3 module tables
/// (generated; see [`vocabulary_word`] and the test that regenerates it).
pub(crate) const DICOM_WORDS: &str = include_str!("../data/dicom_words.txt");

fn detectors() -> &'static Detectors {
    static D: OnceLock<Detectors> = OnceLock::new();
    D.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("detector pattern");
        let mon = "(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC)[A-Z]*";
        let octet = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)";
        let list = vec![
            (
                Category::Date,
                "pattern:date",
                re(&format!(
                    r"(?i)\b(?:(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])|(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)\d\d|(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:19|20)\d\d|\d{{1,2}}[ -]{mon}[ ,-]+(?:19|20)\d\d|\d{{1,2}}-{mon}-\d\d|{mon} \d{{1,2}},? (?:19|20)\d\d)\b"
                )),
            ),
            (
                Category::Date,
                "pattern:compact-date",
                re(r"\b(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"),
            ),
            (
                Category::Id,
                "pattern:ssn",
                re(r"\b\d{3}-\d{2}-\d{4}\b"),
            ),
            (
                Category::Id,
                "pattern:labelled-id",
                re(r"(?i)\b(?:MRN|MR#|MR NO|MED(?:ICAL)? REC(?:ORD)?(?: NO| NUMBER)?|PATIENT ID|ACC(?:ESSION)?(?: NO| NUMBER|#)?)[:#\s]+[A-Z0-9-]*\d[A-Z0-9-]*\b"),
            ),
            (
                Category::Phone,
                "pattern:phone",
                re(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)\s?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b"),
            ),
            (
                Category::Email,
                "pattern:email",
                re(r"(?i)\b[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}\b"),
            ),
            (
                Category::Url,
                "pattern:url",
                re(r"(?i)\b(?:https?://|www\.)[^\s\\]+"),
            ),
            (
                Category::Ip,
                "pattern:ip",
                re(&format!(r"(?:^|[^\d.-]){octet}\.{octet}\.{octet}\.{octet}(?:$|[^\d.-])")),
            ),
        ];
        let set = |s: &'static str| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect()
        };
        Detectors {
            list,
            bare_number: re(r"(?:^|[^\d.])(\d{7,12})(?:$|[^\d.])"),
            word: re(r"[A-Za-z][A-Za-z'-]*"),
            first: set(FIRST),
            last: set(LAST),
            not_names: set(NOT_NAMES),
            dicom_words: set(DICOM_WORDS),
        }
    })
}

/// Ages over 89 in prose: `93-year-old`, `93 years old`, `93 y/o`, `93yo`,
/// `93Y`, `aged 93`, `age: 93`. HIPAA's Safe Harbor lets a release say
/// only "90 or older", so these run whatever the text's place (vocabulary
/// places excepted) and whether or not the other patterns run: the shape is
/// specific and cheap to find. Not findings: `90+` (the aggregated
/// category itself) and `90Y` with no space (Yttrium-90, a radionuclide
/// written so in nuclear-medicine descriptions).
pub fn ages(text: &str) -> Vec<PatternHit> {
    static RE: OnceLock<[Regex; 2]> = OnceLock::new();
    let [after, before] = RE.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("age pattern");
        [
            // the number, then a unit of years
            re(r"(?i)\b0*(\d{2,3})(\s*-?\s*)(y/o|y\.o\.?|yo|yoa|yrs?|years?|y)\b(\+)?"),
            // a word saying age, then the number
            re(r"(?i)\b(?:aged?|age\s*:)\s*0*(\d{2,3})\b(\+)?"),
        ]
    });
    let hit = |c: &regex::Captures| {
        let m = c.get(0).expect("match");
        PatternHit {
            category: Category::Age,
            detector: "pattern:age",
            start: m.start(),
            end: m.end(),
        }
    };
    let mut hits = Vec::new();
    for c in after.captures_iter(text) {
        let (n, gap, unit) = (&c[1], &c[2], &c[3]);
        let yttrium = n == "90" && gap.is_empty() && unit.eq_ignore_ascii_case("y");
        if over_89(n) && c.get(4).is_none() && !yttrium {
            hits.push(hit(&c));
        }
    }
    for c in before.captures_iter(text) {
        if over_89(&c[1]) && c.get(2).is_none() {
            hits.push(hit(&c));
        }
    }
    hits
}

/// Whether a number of years is a human age over 89 (not a count of
/// something else: 90 to 130).
fn over_89(years: &str) -> bool {
    years.parse::<u32>().is_ok_and(|n| (90..=130).contains(&n))
}

/// Whether an AS value (`nnnD`, `nnnW`, `nnnM`, `nnnY`) is an age over 90.
/// `090Y` is not: an AS cannot say "90 or older", so `090Y` is how a
/// de-identifier writes the aggregated category (Veil caps ages so).
/// In months, weeks or days three digits cannot reach 90 years.
pub fn age_string_over_90(value: &str) -> bool {
    value.split('\\').any(|v| {
        let v = v.trim_matches([' ', '\0']);
        v.len() == 4 && v.ends_with(['Y', 'y']) && v[..3].parse::<u32>().is_ok_and(|n| n > 90)
    })
}

/// Runs the detectors that apply to `kind` over `text`.
pub fn detect(text: &str, kind: TextKind) -> Vec<PatternHit> {
    let d = detectors();
    let mut hits = Vec::new();
    if kind == TextKind::PersonName {
        return person_name(text);
    }
    for (category, detector, re) in &d.list {
        for m in re.find_iter(text) {
            let (mut start, mut end) = (m.start(), m.end());
            // the IP pattern includes its boundary characters
            if *category == Category::Ip {
                let s = m.as_str();
                start += s.len() - s.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
                end -= s.len() - s.trim_end_matches(|c: char| !c.is_ascii_digit()).len();
            }
            hits.push(PatternHit {
                category: *category,
                detector,
                start,
                end,
            });
        }
    }
    if kind == TextKind::Text {
        for c in d.bare_number.captures_iter(text) {
            let m = c.get(1).expect("group");
            if !hits
                .iter()
                .any(|h| h.start <= m.start() && m.end() <= h.end)
            {
                hits.push(PatternHit {
                    category: Category::Id,
                    detector: "pattern:long-number",
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
    hits.extend(name_pairs(text));
    hits
}

/// Whether an upper-case word is vocabulary: a word of a PS3.3 attribute
/// keyword (`data/dicom_words.txt`, generated from the module tables) or an
/// everyday or imaging word of [`NOT_NAMES`]. Why: test and phantom objects
/// name their patients `OBSERVER`, `TEXT`, `ABDOMEN` or `PERFUSION`, which
/// a clean output holds by design as an SR observer type, a value type, a
/// body part or an image type; any other single word of a patient's name is
/// the patient's in a code string as anywhere else (`OKONKWO`, `SMITH`),
/// census list or not.
pub(crate) fn vocabulary_word(w: &str) -> bool {
    let d = detectors();
    d.dicom_words.contains(w) || d.not_names.contains(w)
}

fn is_first(w: &str) -> bool {
    let d = detectors();
    d.first.contains(w) && !d.not_names.contains(w)
}

fn is_last(w: &str) -> bool {
    let d = detectors();
    d.last.contains(w) && !d.not_names.contains(w)
}

/// A first name next to a surname (`John Smith`, `SMITH, JOHN`,
/// `Smith^John`): one census name alone is too often an ordinary word.
fn name_pairs(text: &str) -> Vec<PatternHit> {
    let d = detectors();
    let words: Vec<_> = d.word.find_iter(text).collect();
    let mut hits = Vec::new();
    for pair in words.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let gap = &text[a.end()..b.start()];
        if !matches!(gap, " " | ", " | "," | "^") {
            continue;
        }
        // in mixed-case text a name is capitalized
        let capital = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
        if !(capital(a.as_str()) && capital(b.as_str())) {
            continue;
        }
        let (ua, ub) = (a.as_str().to_uppercase(), b.as_str().to_uppercase());
        if ua.len() < 2 || ub.len() < 2 {
            continue;
        }
        if is_first(&ua) && is_last(&ub) || is_last(&ua) && is_first(&ub) {
            hits.push(PatternHit {
                category: Category::Name,
                detector: "name-list",
                start: a.start(),
                end: b.end(),
            });
        }
    }
    hits
}

/// A PN value is a finding when its family and given components are a
/// census surname and first name (a pseudonym or code is not).
fn person_name(text: &str) -> Vec<PatternHit> {
    let mut hits = Vec::new();
    for group in text.split('=') {
        let comps: Vec<String> = group.split('^').map(|c| c.trim().to_uppercase()).collect();
        let family = comps.first().map(String::as_str).unwrap_or("");
        let given = comps.get(1).map(String::as_str).unwrap_or("");
        let named = (!family.is_empty() && !given.is_empty())
            && (is_last(family) || family.split(' ').any(is_last))
            && (is_first(given) || given.split(' ').any(is_first));
        if named {
            hits.push(PatternHit {
                category: Category::Name,
                detector: "name-list",
                start: 0,
                end: text.len(),
            });
            break;
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(t: &str, k: TextKind) -> Vec<(Category, &'static str)> {
        detect(t, k)
            .into_iter()
            .map(|h| (h.category, h.detector))
            .collect()
    }

    #[test]
    fn shapes() {
        let t = "Seen by Dr Mary Johnson on 03/04/2021, MRN: 8812345, call (555) 123-4567 \
                 or mj@example.org, http://x.example/y 10.1.2.3 SSN 123-45-6789";
        let c = cats(t, TextKind::Text);
        for want in [
            (Category::Name, "name-list"),
            (Category::Date, "pattern:date"),
            (Category::Id, "pattern:labelled-id"),
            (Category::Phone, "pattern:phone"),
            (Category::Email, "pattern:email"),
            (Category::Url, "pattern:url"),
            (Category::Ip, "pattern:ip"),
            (Category::Id, "pattern:ssn"),
        ] {
            assert!(c.contains(&want), "{want:?} missing in {c:?}");
        }
    }

    /// Issue 16: the spellings people type (`[ -,]` was a range that left
    /// out the hyphen of `11-DEC-2018`).
    #[test]
    fn date_spellings() {
        for t in [
            "11-DEC-2018",
            "11-Dec-18",
            "11 Dec 2018",
            "Dec 11, 2018",
            "December 11 2018",
            "2018-12-11",
            "12/11/2018",
            "11.12.2018",
            "20181211",
        ] {
            assert!(
                cats(t, TextKind::Text)
                    .iter()
                    .any(|(c, _)| *c == Category::Date),
                "{t}"
            );
        }
    }

    #[test]
    fn ordinary_text_is_quiet() {
        for t in [
            "T1 AXIAL POST CONTRAST",
            "Head First-Supine",
            "1.2.840.10008.5.1.4.1.1.2",
            "ORIGINAL\\PRIMARY\\AXIAL",
            "White Matter",
            "Brain Stem",
            "Anatomical Position",
        ] {
            assert!(
                cats(t, TextKind::Text).is_empty(),
                "{t}: {:?}",
                cats(t, TextKind::Text)
            );
        }
        assert!(cats("3F2A9C0B12345678", TextKind::FileName).is_empty());
    }

    #[test]
    fn ages_over_89() {
        for t in [
            "93-year-old woman",
            "a 93 year old",
            "93 years old",
            "93 y/o",
            "93yo",
            "93Y",
            "093Y",
            "aged 93",
            "Age: 104",
            "92 yrs",
            "90 years old",
        ] {
            assert_eq!(ages(t).len(), 1, "{t}");
            assert_eq!(ages(t)[0].category, Category::Age, "{t}");
        }
        for t in [
            "89-year-old",
            "aged 45",
            "90+ years",
            "aged 90+",
            "90Y microspheres",
            "Y90",
            "1993 yearly",
            "series 93",
            "450 years",
        ] {
            assert!(ages(t).is_empty(), "{t}: {:?}", ages(t));
        }
        assert!(age_string_over_90("093Y"));
        assert!(age_string_over_90("045Y\\103Y"));
        for v in ["090Y", "089Y", "999M", "099W", "045Y", ""] {
            assert!(!age_string_over_90(v), "{v}");
        }
    }

    #[test]
    fn person_names() {
        assert_eq!(cats("SMITH^JOHN", TextKind::PersonName).len(), 1);
        assert!(cats("A1B2C3D4^", TextKind::PersonName).is_empty());
        assert!(cats("HEAD^PHANTOM", TextKind::PersonName).is_empty());
    }
}

/// `data/dicom_words.txt` is generated from the PS3.3 module tables in
/// `rules/sources/highdicom-0.28.2/` (provenance there). This test is the
/// generator: it fails when the file differs from what the source gives,
/// and with `VEIL_WRITE_GENERATED=1` writes it.
#[cfg(test)]
mod dicom_words {
    use sha2::{Digest, Sha256};
    use std::collections::BTreeSet;
    use std::path::Path;

    const SOURCE: &str = "rules/sources/highdicom-0.28.2/module_attribute_map.json";

    /// The words of a keyword: `SOPInstanceUID` is `SOP`, `Instance`,
    /// `UID` (a capital run ends before a capital that starts a word).
    fn words(kw: &str) -> Vec<String> {
        let c: Vec<char> = kw.chars().collect();
        let mut out = Vec::new();
        let mut cur = String::new();
        for (i, &ch) in c.iter().enumerate() {
            if !ch.is_ascii_alphabetic() {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            let prev = i.checked_sub(1).map(|j| c[j]);
            let next = c.get(i + 1).copied();
            let starts = ch.is_ascii_uppercase()
                && prev.is_some_and(|p| {
                    p.is_ascii_lowercase()
                        || p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase())
                });
            if starts {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(ch);
        }
        out.push(cur);
        out.into_iter()
            .filter(|w| w.len() >= 3)
            .map(|w| w.to_ascii_uppercase())
            .collect()
    }

    fn generate(root: &Path) -> String {
        let bytes = std::fs::read(root.join(SOURCE)).expect("module_attribute_map.json");
        let map: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        let mut all = BTreeSet::new();
        for rows in map.as_object().expect("modules").values() {
            for r in rows.as_array().expect("rows") {
                let path = r["path"].as_array().expect("path");
                for kw in path.iter().chain([&r["keyword"]]) {
                    all.extend(words(kw.as_str().expect("keyword")));
                }
            }
        }
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut out = format!(
            "# Generated; do not edit. {} words: every word (3 letters or more,\n\
             # upper case) of every attribute keyword in\n\
             # {SOURCE}\n\
             # sha256 {sha}\n\
             # (the PS3.3 module tables as highdicom 0.28.2 ships them, MIT;\n\
             # provenance in that folder's README.md). Why: detect.rs, vocabulary_word.\n\
             # Regenerate: VEIL_WRITE_GENERATED=1 cargo test -p veil-verify dicom_words\n",
            all.len()
        );
        for w in all {
            out.push_str(&w);
            out.push('\n');
        }
        out
    }

    #[test]
    fn dicom_words_match_their_source() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let want = generate(&root);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dicom_words.txt");
        if std::env::var_os("VEIL_WRITE_GENERATED").is_some() {
            veil_io::atomic::write_all(&file, want.as_bytes()).expect("write dicom_words.txt");
        }
        assert!(
            super::DICOM_WORDS == want,
            "data/dicom_words.txt differs from its source; regenerate it (see its header)"
        );
        assert_eq!(
            words("SOPInstanceUID"),
            ["SOP", "INSTANCE", "UID"].map(String::from)
        );
        assert_eq!(
            words("RTBeamLimitingDeviceType"),
            ["BEAM", "LIMITING", "DEVICE", "TYPE"].map(String::from)
        );
        for w in ["OBSERVER", "TEXT", "ORIGINAL"] {
            assert!(super::vocabulary_word(w), "{w}");
        }
        assert!(!super::vocabulary_word("OKONKWO"));
    }
}
