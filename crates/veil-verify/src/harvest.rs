//! Identifying values taken from a source object.
//!
//! The verifier decides what to look for from the source's own values, not
//! from the de-identification tables: an element is harvested by its value
//! representation (PN, DA, DT, TM, UI) or by what the DICOM dictionary calls
//! it (a keyword naming an ID, number, address, telephone, institution,
//! department, station or serial number). Private elements are harvested only
//! when their VR says they hold a name, date or UID; their text is searched
//! in the output, not trusted as a source of tokens.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use veil_core::{Phi, Tag};
use veil_io::{DataSet, DicomFile, Value};

use crate::Category;

/// One value to look for, normalized to upper case with single spaces.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    /// The value.
    pub value: Phi<String>,
    /// What it is.
    pub category: Category,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?}, {:?})", self.category, self.value)
    }
}

/// Placeholder values that identify no one; harvesting them would flag
/// every output that uses the same placeholder.
const PLACEHOLDERS: &[&str] = &[
    "ANON",
    "ANONYMOUS",
    "ANONYMIZED",
    "ANONYMISED",
    "DEIDENTIFIED",
    "DE-IDENTIFIED",
    "REMOVED",
    "UNKNOWN",
    "NONE",
    "NULL",
    "TEST",
    "PHANTOM",
    "PATIENT",
    "NAME",
    "DEMO",
    "DEFAULT",
    "NONAME",
    "NO NAME",
    "SAMPLE",
    "ANONYMOUS PATIENT",
    "N/A",
    "NA",
    "DR",
    "MD",
    "MR",
    "MRS",
    "MS",
    "PHD",
    "JR",
    "SR",
];

/// Month abbreviations for date spellings such as `15-JAN-2024`.
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Month names, for `January 15, 2024`.
const MONTH_NAMES: [&str; 12] = [
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
];

/// Harvests every identifying value of a source file (File Meta included:
/// source AE titles and UIDs there are identifying too).
pub fn harvest(file: &DicomFile) -> Vec<Token> {
    let mut out = Vec::new();
    if let Some(meta) = &file.meta {
        walk(&meta.elements, &mut out);
    }
    walk(&file.dataset, &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk(ds: &DataSet, out: &mut Vec<Token>) {
    for e in &ds.elements {
        match &e.value {
            Value::Sequence(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Bytes(b) => harvest_element(e.tag, e.vr, b, out),
            _ => {}
        }
    }
}

/// The dictionary keyword of a standard tag.
pub(crate) fn keyword(tag: Tag) -> Option<&'static str> {
    StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.alias())
}

/// Decodes a text value: UTF-8 when valid, otherwise Latin-1 (the common
/// single-byte sets agree on ASCII, which is what matching needs most).
pub(crate) fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Upper case, trimmed of DICOM padding, inner whitespace collapsed.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches('\0')
        .to_uppercase()
}

fn push(out: &mut Vec<Token>, category: Category, value: String) {
    let v = normalize(&value);
    // binary junk under a text VR (a mislabelled private value) is no token
    if PLACEHOLDERS.contains(&v.as_str())
        || v.chars().all(|c| !c.is_alphanumeric())
        || v.chars().any(char::is_control)
    {
        return;
    }
    out.push(Token {
        value: Phi::new(v),
        category,
    });
}

fn harvest_element(tag: Tag, vr: VR, bytes: &[u8], out: &mut Vec<Token>) {
    if tag.is_private_creator() || tag.is_group_length() {
        return;
    }
    let text = || decode(bytes);
    let values = |t: &str| -> Vec<String> {
        t.split('\\')
            .map(|v| v.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    match vr {
        VR::PN => values(&text()).iter().for_each(|v| person_name(v, out)),
        VR::DA => values(&text()).iter().for_each(|v| date(v, out)),
        VR::DT => values(&text()).iter().for_each(|v| {
            date(v.get(..8).unwrap_or(""), out);
            time(v.get(8..).unwrap_or(""), out);
        }),
        VR::TM => values(&text()).iter().for_each(|v| time(v, out)),
        VR::UI => {
            let kw = keyword(tag).unwrap_or("");
            values(&text()).iter().for_each(|v| uid(kw, v, out));
        }
        VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC | VR::AE if !tag.is_private() => {
            let Some(kw) = keyword(tag) else { return };
            let Some(category) = keyword_category(kw) else {
                return;
            };
            for v in values(&text()) {
                match category {
                    // a tool that fills an ID with a UID (a procedure step
                    // ID `1.2.826.0.1.3680043.8.498.5549...`) wrote a UID:
                    // its components are an organization's root, not the
                    // patient's digits, so it is harvested as one
                    Category::Id if uid_like(&v) => uid("", &v, out),
                    Category::Id | Category::Device => {
                        // a short number like StudyID "1" identifies nothing
                        if v.len() >= 3 && (v.len() >= 5 || v.chars().any(|c| c.is_ascii_digit())) {
                            // the digits of `MRN12345678` identify on their
                            // own (a number field, a URL, a report's text)
                            if category == Category::Id {
                                digit_runs(&v, out);
                                code_string(&v, category, out);
                            }
                            push(out, category, v);
                        }
                    }
                    // telecom information holds e-mail addresses too
                    Category::Phone if v.contains('@') => push(out, Category::Email, v),
                    Category::Phone => {
                        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                        if digits.len() >= 5 {
                            push(out, category, v.clone());
                            if digits != v {
                                push(out, category, digits);
                            }
                        }
                    }
                    Category::Address => {
                        if v.len() >= 4 {
                            push(out, category, v.clone());
                        }
                        for part in v.split([',', '^', '\n', '\r', ';']) {
                            let part = part.trim();
                            if part.len() >= 5 && part != v {
                                push(out, category, part.to_string());
                            }
                        }
                    }
                    _ => {
                        if v.len() >= 3 {
                            push(out, category, v);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Which category a standard attribute's keyword puts its value in. Judged
/// from the name alone, so the verifier needs no rule table.
fn keyword_category(kw: &str) -> Option<Category> {
    let has = |s: &str| kw.contains(s);
    if has("Telephone") || has("Telecom") {
        Some(Category::Phone)
    } else if has("ElectronicMail") || has("Email") {
        Some(Category::Email)
    } else if has("Address") && !has("Network") || has("Residence") {
        Some(Category::Address)
    } else if has("Institution") || has("Department") {
        Some(Category::Institution)
    } else if has("StationName")
        || has("SerialNumber")
        || has("AETitle")
        || kw == "DetectorID"
        || kw == "GantryID"
        || kw == "PlateID"
        || kw == "CassetteID"
    {
        Some(Category::Device)
    } else if kw.ends_with("ID")
        || kw.ends_with("IDs")
        || kw.ends_with("Number") && !kw.ends_with("SoftwareVersionNumber")
        || kw.ends_with("Numbers")
        || kw.ends_with("Identification")
        || kw.ends_with("Locator")
        || kw.ends_with("Identifier")
    {
        Some(Category::Id)
    } else if has("Name") && (has("Physician") || has("Operator") || has("Person")) {
        // names stored as LO in older objects
        Some(Category::Name)
    } else {
        None
    }
}

fn person_name(v: &str, out: &mut Vec<Token>) {
    for group in v.split('=') {
        let comps: Vec<&str> = group.split('^').map(str::trim).collect();
        // family, given, middle: prefixes and suffixes say little
        for c in comps.iter().take(3) {
            if c.chars().filter(|ch| ch.is_alphabetic()).count() >= 3 {
                push(out, Category::Name, c.to_string());
                code_string(c, Category::Name, out);
            }
            // multi-word components: each longer word on its own
            if c.contains(' ') {
                for w in c.split(' ').filter(|w| w.chars().count() >= 4) {
                    push(out, Category::Name, w.to_string());
                }
            }
        }
        let family = comps.first().copied().unwrap_or("");
        let given = comps.get(1).copied().unwrap_or("");
        if !family.is_empty() && !given.is_empty() {
            // short names are only distinctive together
            push(out, Category::Name, format!("{given} {family}"));
            push(out, Category::Name, format!("{family} {given}"));
            push(out, Category::Name, format!("{family}, {given}"));
            push(out, Category::Name, format!("{family}^{given}"));
        }
    }
}

fn date(v: &str, out: &mut Vec<Token>) {
    let d: Vec<u8> = v.bytes().collect();
    if d.len() != 8 || !d.iter().all(u8::is_ascii_digit) {
        return;
    }
    let (y, m, dd) = (&v[0..4], &v[4..6], &v[6..8]);
    let (yn, mn, dn): (u32, usize, u32) = match (y.parse(), m.parse(), dd.parse()) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => return,
    };
    // placeholder dates (19000101, 00000000) identify no one
    if !(1901..=2200).contains(&yn) || !(1..=12).contains(&mn) || !(1..=31).contains(&dn) {
        return;
    }
    let mon = MONTHS[mn - 1];
    let month = MONTH_NAMES[mn - 1];
    // day and month without their leading zero, and the two-digit year:
    // how people type dates into descriptions and reports (`1/5/18`,
    // `5-JAN-18`, `January 5, 2018`)
    let (m1, d1, yy) = (mn.to_string(), dn.to_string(), &y[2..]);
    let mut spellings = Vec::new();
    spellings.extend([
        format!("{y}{m}{dd}"),
        format!("{y}-{m}-{dd}"),
        format!("{y}/{m}/{dd}"),
        format!("{y}.{m}.{dd}"),
    ]);
    for (m, dd, y) in [
        (m, dd, y),
        (m1.as_str(), d1.as_str(), y),
        (m, dd, yy),
        (m1.as_str(), d1.as_str(), yy),
    ] {
        spellings.extend([
            format!("{m}/{dd}/{y}"),
            format!("{dd}/{m}/{y}"),
            format!("{dd}.{m}.{y}"),
            format!("{m}-{dd}-{y}"),
            format!("{dd}-{m}-{y}"),
        ]);
    }
    for dd in [dd, d1.as_str()] {
        for mon in [mon, month] {
            for y in [y, yy] {
                spellings.extend([
                    format!("{dd}-{mon}-{y}"),
                    format!("{dd} {mon} {y}"),
                    format!("{mon} {dd} {y}"),
                    format!("{mon} {dd}, {y}"),
                ]);
            }
        }
    }
    // the shortest spellings (`1/5/18`, 6 characters) are distinctive only
    // standing alone, which the matcher's boundary rule checks
    spellings.sort();
    spellings.dedup();
    for s in spellings {
        push(out, Category::Date, s);
    }
}

/// A value as a code string spells it, when that differs: a CS holds upper
/// case letters, digits, space and `_` only (PS3.5 6.2), so a tool that
/// writes an ID or a name into one spells `CQ500-CT-310` as `CQ500_CT_310`
/// and `O'BRIEN` as `O_BRIEN`.
fn code_string(v: &str, category: Category, out: &mut Vec<Token>) {
    let cs: String = normalize(v)
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cs != normalize(v) {
        push(out, category, cs);
    }
}

/// Whether a value is shaped like a UID: digits and dots, at least three
/// components, under one of the two roots UIDs are registered below (ISO
/// `1`, joint ISO-ITU `2`; PS3.5 9.1). An ID such as `2008.3` is not.
fn uid_like(v: &str) -> bool {
    (v.starts_with("1.") || v.starts_with("2."))
        && v.split('.').count() >= 3
        && v.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// The runs of 6 or more digits inside an ID that is more than them.
fn digit_runs(v: &str, out: &mut Vec<Token>) {
    for run in v.split(|c: char| !c.is_ascii_digit()) {
        if run.len() >= crate::matcher::SHORT && run.len() < v.len() {
            push(out, Category::Id, run.to_string());
        }
    }
}

fn time(v: &str, out: &mut Vec<Token>) {
    let t: String = v.chars().take_while(|c| *c != '.').collect();
    if t.len() < 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    let (h, m, s) = (&t[0..2], &t[2..4], &t[4..6]);
    // round times (midnight, on the hour) are too common to single anyone out
    if m == "00" && s == "00" {
        return;
    }
    push(out, Category::Time, format!("{h}{m}{s}"));
    push(out, Category::Time, format!("{h}:{m}:{s}"));
}

/// Whether a UID attribute names a kind of thing (SOP class, transfer
/// syntax, coding scheme, implementation) rather than an instance: its
/// values identify no one, wherever they come from.
pub(crate) fn names_a_kind(kw: &str) -> bool {
    [
        "Class",
        "TransferSyntax",
        "CodingScheme",
        "Implementation",
        "MappingResource",
    ]
    .iter()
    .any(|s| kw.contains(s))
}

fn uid(kw: &str, v: &str, out: &mut Vec<Token>) {
    // well-known UIDs (SOP classes, transfer syntaxes, coding schemes,
    // implementations) name kinds of things, not people
    let generic = v.starts_with("1.2.840.10008.") || names_a_kind(kw);
    if generic || v.len() < 10 {
        return;
    }
    push(out, Category::Uid, v.to_string());
    for run in v.split('.') {
        if run.len() >= 8 && run.bytes().all(|b| b.is_ascii_digit()) {
            push(out, Category::Uid, run.to_string());
        }
    }
}

/// A grouping key for a source object's patient: Patient ID with its
/// issuer, or nothing. Sources of one patient share their tokens, so a
/// value that leaks from one of the patient's objects into another's output
/// is still found.
pub fn patient_key(file: &DicomFile) -> Option<Phi<String>> {
    let id = file.dataset.ascii(Tag(0x0010, 0x0020))?;
    if id.is_empty() {
        return None;
    }
    let issuer = file.dataset.ascii(Tag(0x0010, 0x0021)).unwrap_or_default();
    Some(Phi::new(format!("{issuer}\u{1}{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_io::Element;

    fn tokens(elements: Vec<veil_io::Element>) -> Vec<(Category, String)> {
        let f = DicomFile::in_memory(DataSet::of(elements));
        harvest(&f)
            .into_iter()
            .map(|t| (t.category, t.value.into_inner()))
            .collect()
    }

    #[test]
    fn names_dates_ids_and_uids() {
        let t = tokens(vec![
            Element::text(Tag(0x0010, 0x0010), VR::PN, "Doe^Jo^Q"),
            Element::text(Tag(0x0010, 0x0020), VR::LO, "MRN0042"),
            Element::text(Tag(0x0008, 0x0050), VR::SH, "ACC-12345678"),
            Element::text(Tag(0x0010, 0x0030), VR::DA, "19610203"),
            Element::text(Tag(0x0020, 0x0010), VR::SH, "1"),
            Element::text(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            Element::text(Tag(0x0020, 0x000D), VR::UI, "1.2.3.4.1234567890.7"),
            Element::text(Tag(0x0008, 0x0080), VR::LO, "General Hospital"),
            Element::text(
                Tag(0x0040, 0x0009),
                VR::SH,
                "1.2.826.0.1.3680043.8.498.5549034812",
            ),
        ]);
        let has = |c: Category, v: &str| t.contains(&(c, v.to_string()));
        assert!(has(Category::Name, "DOE^JO"));
        assert!(has(Category::Name, "JO DOE"));
        assert!(
            !has(Category::Name, "JO"),
            "two letters alone match too much"
        );
        assert!(has(Category::Id, "MRN0042"));
        assert!(has(Category::Id, "12345678"), "an ID's digits");
        assert!(!has(Category::Id, "0042"), "too short on their own");
        assert!(
            !t.iter().any(|(_, v)| v == "1"),
            "StudyID 1 is not identifying"
        );
        assert!(has(Category::Date, "1961-02-03"));
        assert!(has(Category::Date, "03-FEB-1961"));
        assert!(has(Category::Date, "02/03/1961"));
        for spelling in [
            "2/3/61",
            "3.2.1961",
            "3-FEB-61",
            "FEBRUARY 3, 1961",
            "3 FEB 1961",
        ] {
            assert!(has(Category::Date, spelling), "{spelling}");
        }
        assert!(!t.iter().any(|(_, v)| v.starts_with("1.2.840.10008")));
        assert!(has(Category::Uid, "1.2.3.4.1234567890.7"));
        assert!(has(Category::Uid, "1234567890"));
        assert!(has(Category::Institution, "GENERAL HOSPITAL"));
        // code-string spellings
        assert!(has(Category::Id, "ACC_12345678"));
        // an ID holding a UID is a UID: its root's components are no one's
        assert!(has(Category::Uid, "1.2.826.0.1.3680043.8.498.5549034812"));
        assert!(!t.iter().any(|(_, v)| v == "3680043"));
    }

    #[test]
    fn placeholders_are_not_tokens() {
        let t = tokens(vec![
            Element::text(Tag(0x0010, 0x0010), VR::PN, "ANONYMOUS"),
            Element::text(Tag(0x0010, 0x0030), VR::DA, "19000101"),
            Element::text(Tag(0x0008, 0x0030), VR::TM, "120000"),
        ]);
        assert!(t.is_empty(), "{t:?}");
    }
}
