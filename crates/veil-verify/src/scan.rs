//! Searching one output file everywhere a value can hide.
//!
//! Three passes over one file, each cheap: (1) its relative path, component
//! by component; (2) every element value in the header tree at any depth —
//! File Meta, private elements, UN and OB bytes, PDF streams of encapsulated
//! documents inflated — for harvested tokens and, on text, the pattern
//! detectors; (3) the raw bytes of the whole file in chunks, which catches
//! the preamble, bulk values (pixel data, JPEG COM/APPn segments inside
//! encapsulated frames, overlays, waveforms) and anything the parser did not
//! see as an element. A token found by pass 2 is not reported again by pass
//! 3 in the header area.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use dicom_core::VR;
use veil_core::{Phi, Tag, TagPath};
use veil_io::{BulkSource, DataSet, DicomFile, Source, Value};

use crate::detect::{age_string_over_90, ages, detect, vocabulary_word, TextKind};
use crate::harvest::{decode, keyword, names_a_kind};
use crate::matcher::Matcher;
use crate::text::{Place, ReportText};
use crate::{Category, Finding};

/// What to scan and with what.
pub struct ScanInput<'a> {
    /// The output file.
    pub path: &'a Path,
    /// Its path relative to the output root (reported; pseudonymous).
    pub rel: &'a str,
    /// Tokens harvested from the file's source (its patient's objects), or
    /// none when the source is unknown.
    pub tokens: Option<&'a Matcher>,
    /// Run the source-free detectors.
    pub patterns: bool,
    /// Keep the masked text around each finding (`--site-local`).
    pub site_local: bool,
}

/// A scan's result: findings, and the parsed file for the set checks.
pub struct Scanned {
    /// Findings in this file.
    pub findings: Vec<Finding>,
    /// The path the findings name: the relative path, with each component
    /// in which a value was found replaced by its categories and length
    /// (`[name+id:16]/IMG00001.dcm`), unless the report is site-local.
    pub shown: String,
    /// The parsed output, or why it did not parse.
    pub file: Result<DicomFile, String>,
}

/// One raw hit before grouping.
struct Hit {
    place: Place,
    category: Category,
    detector: &'static str,
    /// the found value's length in characters
    chars: usize,
    /// site-local only: the masked text around it
    context: Option<Phi<String>>,
    /// Veil's own words on what was found (never text from the file)
    note: Option<&'static str>,
}

/// The masked context of a hit, computed only for a site-local report.
fn context(site_local: bool, f: impl FnOnce() -> String) -> Option<Phi<String>> {
    site_local.then(|| Phi::new(f()))
}

/// Scans one output file.
pub fn scan_file(input: &ScanInput<'_>) -> Scanned {
    let mut hits = Vec::new();
    let shown = filename(input, &mut hits);
    let file = match veil_io::read(input.path) {
        Ok(f) => f,
        Err(e) => {
            let reason = e.reason.to_string();
            let mut findings = group(&shown, hits);
            findings.push(Finding {
                file: shown.clone(),
                place: Place::fixed("file"),
                category: Category::Structure,
                detector: "structure:parse".into(),
                excerpt: ReportText::reason(&e.reason),
                context: None,
                frame: None,
                thumbnail: None,
            });
            return Scanned {
                findings,
                shown,
                file: Err(reason),
            };
        }
    };
    let mut w = Walker {
        input,
        hits: &mut hits,
        path: Vec::new(),
        bulk: Vec::new(),
        seen: HashSet::new(),
    };
    if let Some(meta) = &file.meta {
        w.dataset(&meta.elements, "meta/", &file.source);
    }
    w.dataset(&file.dataset, "", &file.source);
    let (bulk, seen) = (std::mem::take(&mut w.bulk), std::mem::take(&mut w.seen));
    if let Some(m) = input.tokens {
        raw_scan(
            input.path,
            &file,
            m,
            &bulk,
            &seen,
            input.site_local,
            &mut hits,
        );
    }
    Scanned {
        findings: group(&shown, hits),
        shown,
        file: Ok(file),
    }
}

/// Pass 1: the relative path, component by component. Returns the path as
/// a report may show it: a component that holds a found value is itself
/// the value's neighbourhood, so it is replaced as a whole (a travelling
/// report must not carry a patient's name because it is a folder's name).
fn filename(input: &ScanInput<'_>, hits: &mut Vec<Hit>) -> String {
    let mut shown = Vec::new();
    for comp in input.rel.split('/') {
        let before = hits.len();
        filename_component(input, comp, hits);
        let mut cats: Vec<&str> = hits[before..].iter().map(|h| h.category.name()).collect();
        cats.sort_unstable();
        cats.dedup();
        if cats.is_empty() || input.site_local {
            shown.push(comp.to_string());
        } else {
            shown.push(format!("[{}:{}]", cats.join("+"), comp.chars().count()));
        }
    }
    shown.join("/")
}

fn filename_component(input: &ScanInput<'_>, comp: &str, hits: &mut Vec<Hit>) {
    let name = comp.to_uppercase();
    if let Some(m) = input.tokens {
        let found = m.find(name.as_bytes());
        let ranges: Vec<_> = found
            .iter()
            .map(|h| (h.start, h.end, m.tokens()[h.token].category))
            .collect();
        for (h, &(s, e, category)) in found.iter().zip(&ranges) {
            hits.push(Hit {
                place: Place::fixed("filename"),
                category,
                detector: "source-value",
                chars: m.chars(h.token),
                context: context(input.site_local, || mask(&name, &ranges, s, e)),
                note: None,
            });
        }
    }
    if input.patterns {
        for p in detect(comp, TextKind::FileName) {
            hits.push(Hit {
                place: Place::fixed("filename"),
                category: p.category,
                detector: p.detector,
                chars: comp[p.start..p.end].chars().count(),
                context: context(input.site_local, || {
                    mask(comp, &[(p.start, p.end, p.category)], p.start, p.end)
                }),
                note: None,
            });
        }
    }
}

struct Walker<'a, 'b> {
    input: &'a ScanInput<'a>,
    hits: &'b mut Vec<Hit>,
    path: Vec<(Tag, Option<usize>)>,
    /// Bulk values: (offset, len, place) in the source stream.
    bulk: Vec<(u64, u64, Place)>,
    /// Tokens found by the element pass.
    seen: HashSet<usize>,
}

/// VRs whose values are binary numbers: tokens there are coincidences.
fn numeric_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::US
            | VR::SS
            | VR::UL
            | VR::SL
            | VR::FL
            | VR::FD
            | VR::OF
            | VR::OD
            | VR::OL
            | VR::AT
            | VR::UV
            | VR::SV
            | VR::OV
    )
}

/// VRs whose shape is expected in a release (shifted dates, numbers,
/// UIDs): the source-free detectors skip them.
fn shaped(vr: VR) -> bool {
    matches!(
        vr,
        VR::DA | VR::DT | VR::TM | VR::UI | VR::DS | VR::IS | VR::AS
    )
}

/// Elements that hold vocabulary, not data about a person (equipment and
/// vendor names, coding-scheme fields, ICC profiles, the method text): a
/// site often makes its own software and coding scheme (`99_OFFIS_DCMTK`),
/// so the source-free detectors do not run there. The list is data:
/// `data/vocabulary.tsv`. It silences patterns only: the source's own
/// identifiers count there like anywhere else ([`counts`]).
fn vocabulary(tag: Tag) -> bool {
    static TAGS: std::sync::OnceLock<Vec<Tag>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        include_str!("../data/vocabulary.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| Tag::parse(l.split('\t').next().unwrap_or("")))
            .collect()
    });
    tags.contains(&tag) || tag.is_private_creator()
}

/// Where in an element a token was found, for [`counts`].
#[derive(Clone, Copy)]
struct Spot {
    /// The hit is one whole value of the element ([`whole_value`]).
    whole: bool,
    /// The hit lies in a UID under the standard's root `1.2.840.10008`.
    standard_uid: bool,
}

/// Whether a token hit counts in this element. The source's own values
/// count everywhere: a RIS fills a code's meaning from free text, a tool
/// writes the patient ID into an AE title, so no keyword, VR or vocabulary
/// list says a value cannot be there (issue 16). What is left are rules
/// about chance, each for a value that is not the patient's:
/// - numbers (DS, IS) hold IDs, dates, UIDs and phone numbers only, and only
///   long ones ([`Matcher::is_short`]): an instance number equals a short
///   ID by chance;
/// - dates and times (DA, DT, TM) hold dates and times only;
/// - a UID under the standard's root (`1.2.840.10008`: SOP classes,
///   transfer syntaxes) is public and the same for everyone; a UID that
///   names a kind (class, coding scheme, implementation) shares the site's
///   root with its instance UIDs by design, so source UIDs and their digit
///   runs do not count there, but the patient's own IDs and dates do;
/// - binary values (OB, OW, UN) hold values under 5 characters by chance;
/// - a name word of 3 letters is distinctive only as a PN component or as
///   a whole value (`LEE` in a description's `SLEEP LEE` may be a word);
/// - in coded and vocabulary places and code strings, a single name word
///   counts unless it is a word of the DICOM vocabulary or an everyday or
///   imaging word ([`vocabulary_word`]): test, phantom and demo objects
///   name their patients `OBSERVER`, `TEXT`, `ABDOMEN`, `PERFUSION`, which
///   a clean output holds as an SR observer or value type, a body part or
///   an image type (full names, IDs and dates count there always); and a
///   station, serial number, institution or institution address is the
///   site's equipment and organization, which these places name by design
///   (a model name often is the station's name, a coding scheme's
///   responsible organization has the site's address); nor does a number
///   under 6 digits (code values are short numbers: a study ID `1111` is a
///   code's value `1111` by chance).
fn counts(m: &Matcher, token: usize, tag: Tag, vr: VR, spot: Spot) -> bool {
    let t = &m.tokens()[token];
    let len = m.chars(token);
    let coded = vocabulary(tag) || vr == VR::CS;
    if coded {
        let v = t.value.expose();
        let word = t.category == Category::Name && !v.contains([' ', '^', ',']);
        let short_number = m.is_short(token) && v.bytes().all(|b| b.is_ascii_digit());
        if word && vocabulary_word(v)
            || short_number
            || matches!(
                t.category,
                Category::Device | Category::Institution | Category::Address
            )
        {
            return false;
        }
    }
    match vr {
        VR::DS | VR::IS => {
            matches!(
                t.category,
                Category::Id | Category::Date | Category::Uid | Category::Phone
            ) && !m.is_short(token)
        }
        // dates and times hold dates and times: the digits of an accession
        // number built from a date and time (`ACC20181211-143000`) equal
        // a kept time of day by construction
        VR::DA | VR::DT | VR::TM => matches!(t.category, Category::Date | Category::Time),
        VR::UI => {
            !spot.standard_uid
                && (t.category != Category::Uid || keyword(tag).is_none_or(|kw| !names_a_kind(kw)))
        }
        VR::OB | VR::OW | VR::UN => len >= 5,
        VR::PN => true,
        _ => t.category != Category::Name || len >= 4 || spot.whole,
    }
}

/// The values of a multi-valued element: (start, end) of each between
/// backslashes, padding trimmed.
fn value_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let pad = |b: &u8| *b == b' ' || *b == 0;
    let mut out = Vec::new();
    let mut start = 0;
    for part in bytes.split(|&b| b == b'\\') {
        let lead = part.iter().take_while(|b| pad(b)).count();
        let trail = part[lead..].iter().rev().take_while(|b| pad(b)).count();
        out.push((start + lead, start + part.len() - trail));
        start += part.len() + 1;
    }
    out
}

/// The parts of an element's value that are searched on their own. A DT
/// value (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`) is a date followed by a time
/// without a separator, so its date part is a date and is matched as one
/// (a patient's birth date written as `{date}093000` is found), and so is
/// its time part; a value that does not start with 8 digits is searched
/// whole. Everything else is searched whole.
fn parts(vr: VR, bytes: &[u8]) -> Vec<(usize, usize)> {
    if vr != VR::DT {
        return vec![(0, bytes.len())];
    }
    let mut out = Vec::new();
    for (s, e) in value_ranges(bytes) {
        if e - s > 8 && bytes[s..s + 8].iter().all(u8::is_ascii_digit) {
            out.extend([(s, s + 8), (s + 8, e)]);
        } else {
            out.push((s, e));
        }
    }
    out
}

/// Whether the value holding `at` is a UID under the standard's root.
fn standard_uid(bytes: &[u8], at: usize) -> bool {
    value_ranges(bytes)
        .into_iter()
        .find(|&(s, e)| s <= at && at <= e)
        .is_some_and(|(s, _)| bytes[s..].starts_with(b"1.2.840.10008."))
}

/// Whether `bytes[start..end]` is one whole value of a multi-valued text
/// element (between backslashes, padding trimmed).
fn whole_value(bytes: &[u8], start: usize, end: usize) -> bool {
    value_ranges(bytes).contains(&(start, end))
}

fn binary(vr: VR) -> bool {
    matches!(vr, VR::OB | VR::OW | VR::UN)
}

impl Walker<'_, '_> {
    fn place(&self, prefix: &'static str) -> Place {
        Place::element(prefix, &TagPath(self.path.clone()))
    }

    fn dataset(&mut self, ds: &DataSet, prefix: &'static str, source: &Source) {
        for e in &ds.elements {
            self.path.push((e.tag, None));
            match &e.value {
                Value::Sequence(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(last) = self.path.last_mut() {
                            last.1 = Some(i);
                        }
                        self.dataset(item, prefix, source);
                    }
                }
                Value::Bytes(b) | Value::EncapsulatedBytes(b) => {
                    let place = self.place(prefix);
                    self.value(e.tag, e.vr, b, &place);
                }
                Value::Bulk { offset, len } | Value::Encapsulated { offset, len } => {
                    let place = self.place(prefix);
                    // encapsulated documents: PDF text is usually deflated
                    if e.tag == Tag(0x0042, 0x0011) {
                        if let Ok(bytes) =
                            BulkSource::open(source).and_then(|mut s| s.read_range(*offset, *len))
                        {
                            self.value(e.tag, e.vr, &bytes, &place);
                        }
                    }
                    self.bulk.push((*offset, *len, place));
                }
            }
            self.path.pop();
        }
    }

    fn value(&mut self, tag: Tag, vr: VR, bytes: &[u8], place: &Place) {
        if tag.is_group_length() {
            return;
        }
        let pdf =
            (tag == Tag(0x0042, 0x0011) && bytes.starts_with(b"%PDF")).then(|| pdf_streams(bytes));
        for why in pdf.iter().flat_map(|p| &p.unsearched) {
            self.hits.push(Hit {
                place: place.clone(),
                category: Category::Structure,
                detector: "structure:pdf-stream",
                chars: 0,
                context: None,
                note: Some(why),
            });
        }
        if let Some(m) = self.input.tokens {
            if !numeric_binary(vr) {
                self.tokens(m, tag, vr, bytes, place);
                for text in pdf.iter().flat_map(|p| &p.texts) {
                    self.tokens(m, tag, VR::LT, text, place);
                }
                // a URL's query (`?mrn=...`) is often percent-encoded
                if let Some(text) = percent_decoded(bytes) {
                    self.tokens(m, tag, VR::UR, &text, place);
                }
            }
        }
        self.ages(tag, vr, bytes, place);
        if !self.input.patterns || shaped(vr) || numeric_binary(vr) || vocabulary(tag) {
            return;
        }
        if vr == VR::PN {
            self.patterns(&decode(bytes), TextKind::PersonName, place);
        } else if binary(vr) {
            // standard binary values (pixel data, LUTs) are not text; private
            // blobs, UN and documents may be
            if !(tag.is_private() || vr == VR::UN || tag == Tag(0x0042, 0x0011)) {
                return;
            }
            let mut texts = printable_runs(bytes);
            for s in pdf.iter().flat_map(|p| &p.texts) {
                texts.extend(printable_runs(s));
            }
            for t in texts {
                self.patterns(&t, TextKind::Text, place);
            }
        } else {
            self.patterns(&decode(bytes), TextKind::Text, place);
        }
    }

    fn tokens(&mut self, m: &Matcher, tag: Tag, vr: VR, bytes: &[u8], place: &Place) {
        let shift = |hits: Vec<crate::matcher::Hit>, s: usize| {
            hits.into_iter().map(move |h| crate::matcher::Hit {
                start: h.start + s,
                end: h.end + s,
                ..h
            })
        };
        let mut found = Vec::new();
        for (s, e) in parts(vr, bytes) {
            found.extend(shift(m.find(&bytes[s..e]), s));
        }
        if vr == VR::UI {
            for (s, e) in value_ranges(bytes) {
                found.extend(shift(m.find_inside_uid(&bytes[s..e]), s));
            }
        }
        // the raw pass must not report what this element holds
        self.seen.extend(found.iter().map(|h| h.token));
        found.retain(|h| {
            let spot = Spot {
                whole: whole_value(bytes, h.start, h.end),
                standard_uid: vr == VR::UI && standard_uid(bytes, h.start),
            };
            counts(m, h.token, tag, vr, spot)
        });
        if found.is_empty() {
            return;
        }
        let text = self.input.site_local.then(|| display(bytes));
        let ranges: Vec<_> = found
            .iter()
            .map(|h| (h.start, h.end, m.tokens()[h.token].category))
            .collect();
        for h in &found {
            let category = m.tokens()[h.token].category;
            self.hits.push(Hit {
                place: place.clone(),
                category,
                detector: "source-value",
                chars: m.chars(h.token),
                context: text
                    .as_ref()
                    .map(|t| Phi::new(mask(t, &ranges, h.start, h.end))),
                note: None,
            });
        }
    }

    /// Ages over 89: an AS value above `090Y`, and ages in prose in any
    /// text value outside vocabulary places. They run with or without the
    /// other patterns and sources: no source value says a patient is 93.
    fn ages(&mut self, tag: Tag, vr: VR, bytes: &[u8], place: &Place) {
        if vr == VR::AS {
            let v = decode(bytes);
            if age_string_over_90(&v) {
                self.hits.push(Hit {
                    place: place.clone(),
                    category: Category::Age,
                    detector: "pattern:age",
                    chars: v.trim_matches([' ', '\0']).chars().count(),
                    context: context(self.input.site_local, || {
                        mask(&v, &[(0, v.len(), Category::Age)], 0, v.len())
                    }),
                    note: None,
                });
            }
            return;
        }
        if shaped(vr) || numeric_binary(vr) || binary(vr) || vocabulary(tag) {
            return;
        }
        let text = decode(bytes);
        let found = ages(&text);
        self.push_patterns(&text, found, place);
    }

    fn patterns(&mut self, text: &str, kind: TextKind, place: &Place) {
        let found = detect(text, kind);
        self.push_patterns(text, found, place);
    }

    fn push_patterns(&mut self, text: &str, found: Vec<crate::detect::PatternHit>, place: &Place) {
        let ranges: Vec<_> = found.iter().map(|p| (p.start, p.end, p.category)).collect();
        for p in &found {
            self.hits.push(Hit {
                place: place.clone(),
                category: p.category,
                detector: p.detector,
                chars: text[p.start..p.end].chars().count(),
                context: context(self.input.site_local, || {
                    mask(text, &ranges, p.start, p.end)
                }),
                note: None,
            });
        }
    }
}

/// A value with `%XX` escapes and `+` decoded, when it has any: an ID in a
/// URL's query string is often written so (`name=DOE%5EJOHN`).
fn percent_decoded(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let escaped = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some());
    if !escaped {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Bytes as one ASCII char per byte, so byte offsets are char offsets
/// (non-ASCII shows as `.`; the hit itself is masked anyway).
fn display(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// Printable ASCII runs (at least 4 characters) and UTF-16LE runs, the way
/// `strings` reads a binary value.
fn printable_runs(bytes: &[u8]) -> Vec<String> {
    let printable = |b: u8| b.is_ascii_graphic() || b == b' ';
    let mut out = Vec::new();
    // single bytes, then UTF-16LE units (a printable byte, then zero)
    let units: [Vec<Option<u8>>; 2] = [
        bytes.iter().map(|&b| printable(b).then_some(b)).collect(),
        bytes
            .chunks_exact(2)
            .map(|p| (p[1] == 0 && printable(p[0])).then_some(p[0]))
            .collect(),
    ];
    for seq in units {
        let mut cur = String::new();
        for u in seq.into_iter().chain([None]) {
            match u {
                Some(b) => cur.push(b as char),
                None => {
                    if cur.len() >= 4 {
                        out.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                }
            }
        }
    }
    out
}

/// What a PDF's streams hold as text: each FlateDecode stream inflated,
/// and why a stream could not be searched.
#[derive(Debug, Default)]
struct PdfStreams {
    texts: Vec<Vec<u8>>,
    /// One entry per stream that may hold text Veil did not see.
    unsearched: Vec<&'static str>,
}

/// Filters whose output is text Veil does not decode: a stream using one
/// is unsearched (image codecs are not, their content is pixels).
const TEXT_FILTERS: [&[u8]; 4] = [
    b"/ASCIIHexDecode",
    b"/ASCII85Decode",
    b"/LZWDecode",
    b"/RunLengthDecode",
];

/// Inflates a PDF's FlateDecode streams (where a document's text is),
/// within [`veil_core::limits::inflate_cap`] of the document's size in
/// all. Why fail closed: a stream that claims FlateDecode (or starts like
/// zlib) but does not inflate, inflates past the cap, or uses a text
/// filter Veil does not decode may still show text in a reader, so it is
/// reported as unsearched rather than skipped (it was skipped on main).
/// Streams that are neither are searched as raw bytes with the document.
fn pdf_streams(pdf: &[u8]) -> PdfStreams {
    let mut out = PdfStreams::default();
    let mut budget = veil_core::limits::inflate_cap(pdf.len() as u64);
    let mut i = 0;
    while let Some(p) = find(&pdf[i..], b"stream") {
        // the stream's dictionary: from the object's start to `stream`
        let dict = &pdf[i..i + p];
        let dict = &dict[rfind(dict, b"obj").map_or(0, |o| o + 3)..];
        let mut s = i + p + 6;
        if pdf.get(s) == Some(&b'\r') {
            s += 1;
        }
        if pdf.get(s) == Some(&b'\n') {
            s += 1;
        }
        let e = find(&pdf[s..], b"endstream").unwrap_or(pdf.len() - s);
        let data = &pdf[s..s + e];
        i = (s + e + 9).min(pdf.len());
        let zlib = data.len() >= 2
            && data[0] & 0x0F == 8
            && u16::from_be_bytes([data[0], data[1]]) % 31 == 0;
        let flate = find(dict, b"/FlateDecode").is_some() || find(dict, b"/Fl ").is_some();
        if TEXT_FILTERS.iter().any(|f| find(dict, f).is_some()) {
            out.unsearched
                .push("a PDF stream uses a filter Veil does not decode");
            continue;
        }
        if !(flate || zlib) {
            continue;
        }
        // what inflates before an error or the cap is searched too
        let mut text = Vec::new();
        let z = flate2::read::ZlibDecoder::new(data);
        let res = z.take(budget.saturating_add(1)).read_to_end(&mut text);
        if text.len() as u64 > budget {
            text.truncate(budget as usize);
            out.unsearched
                .push("a PDF stream inflates past the inflated size limit");
        }
        if res.is_err() {
            out.unsearched.push("a PDF stream does not inflate");
        }
        budget -= text.len() as u64;
        if !text.is_empty() {
            out.texts.push(text);
        }
    }
    out
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Context around a hit with every hit in the window masked as
/// `[category:length]`, for a site-local report only (see [`crate::text`]
/// for why the words around a value stay out of one that travels).
pub(crate) fn mask(
    text: &str,
    ranges: &[(usize, usize, Category)],
    start: usize,
    end: usize,
) -> String {
    const CTX: usize = 24;
    let lo = floor(text, start.saturating_sub(CTX));
    let hi = ceil(text, (end + CTX).min(text.len()));
    let mut out = String::new();
    if lo > 0 {
        out.push('…');
    }
    let mut i = lo;
    let mut sorted: Vec<_> = ranges
        .iter()
        .filter(|(s, e, _)| *e > lo && *s < hi)
        .copied()
        .collect();
    sorted.sort_by_key(|r| (r.0, std::cmp::Reverse(r.1)));
    for (s, e, c) in sorted {
        let (s, e) = (floor(text, s.max(lo)), ceil(text, e.min(hi)));
        if s < i {
            // overlapping: extend the mask
            if e > i {
                i = e;
            }
            continue;
        }
        out.push_str(&clean(&text[i..s]));
        out.push_str(&format!("[{}:{}]", c.name(), text[s..e].chars().count()));
        i = e;
    }
    if i < hi {
        out.push_str(&clean(&text[i..hi]));
    }
    if hi < text.len() {
        out.push('…');
    }
    out
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect()
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Bytes kept around a raw hit: wider than the site-local context (24
/// characters each side) so that a value cut by the context's edge is
/// still found, and masked.
const WINDOW: usize = 64;

/// Pass 3: the whole file's bytes (for a deflated file: the preamble and
/// meta from disk, the data set inflated).
fn raw_scan(
    path: &Path,
    file: &DicomFile,
    m: &Matcher,
    bulk: &[(u64, u64, Place)],
    seen: &HashSet<usize>,
    site_local: bool,
    hits: &mut Vec<Hit>,
) {
    let meta_end = file.meta.as_ref().map(|mm| mm.end).unwrap_or(0);
    let has_preamble = file.meta.is_some() && meta_end >= 132;
    let region = |off: u64, in_dataset_stream: bool| -> Option<Place> {
        if !in_dataset_stream {
            if has_preamble && off < 128 {
                return Some(Place::fixed("preamble"));
            }
            if off < meta_end {
                return None; // meta elements were searched one by one
            }
        }
        bulk.iter()
            .find(|(o, l, _)| off >= *o && off < o + l)
            .map(|(_, _, p)| p.clone())
    };
    let mut report = |token: usize, window: &[u8], s: usize, e: usize, place: Option<Place>| {
        let category = m.tokens()[token].category;
        // binary data matches short values by chance
        if m.is_short(token) {
            return;
        }
        let place = match place {
            Some(p) => p,
            // header area: only what the element pass missed
            None if seen.contains(&token) => return,
            None => Place::fixed("bytes"),
        };
        hits.push(Hit {
            place,
            category,
            detector: "raw-bytes",
            chars: m.chars(token),
            context: context(site_local, || {
                // every value in the window is masked, not only this one
                let mut ranges: Vec<_> = m
                    .find(window)
                    .iter()
                    .map(|h| (h.start, h.end, m.tokens()[h.token].category))
                    .collect();
                ranges.push((s, e, category));
                mask(&display(window), &ranges, s, e)
            }),
            note: None,
        });
    };
    // the preamble: 128 bytes any tool may fill, searched in every
    // spelling (UTF-16 too)
    if has_preamble {
        let mut pre = [0u8; 128];
        if std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut pre))
            .is_ok()
        {
            for h in m.find(&pre) {
                let (w, s, e) = window(&pre, &h);
                report(h.token, w, s, e, Some(Place::fixed("preamble")));
            }
        }
    }
    match &file.source {
        Source::File(_) => {
            let _ = chunks(path, m, |off, token, w, s, e| {
                let place = region(off, false);
                // the preamble was searched above; the meta region is
                // handled element by element
                if place.as_ref().map(Place::as_str) == Some("preamble")
                    || (place.is_none() && off < meta_end)
                {
                    return;
                }
                report(token, w, s, e, place);
            });
        }
        Source::Memory(buf) => {
            for h in m.find_raw(buf) {
                let (w, s, e) = window(buf, &h);
                report(h.token, w, s, e, region(h.start as u64, true));
            }
        }
    }
}

/// The bytes around a hit ([`WINDOW`] each side, within `buf`) and the
/// hit's range in them.
fn window<'a>(buf: &'a [u8], h: &crate::matcher::Hit) -> (&'a [u8], usize, usize) {
    let lo = h.start.saturating_sub(WINDOW);
    let hi = (h.end + WINDOW).min(buf.len());
    (&buf[lo..hi], h.start - lo, h.end - lo)
}

/// Streams a file through the matcher's raw search in overlapping 8 MiB
/// chunks; calls back with (absolute offset, token, context window, hit
/// range in window).
fn chunks(
    path: &Path,
    m: &Matcher,
    mut f: impl FnMut(u64, usize, &[u8], usize, usize),
) -> std::io::Result<()> {
    const CHUNK: usize = 8 << 20;
    let overlap = m.longest().max(1) + 1;
    let mut file = std::fs::File::open(path)?;
    // a small file gets a buffer of its own size, not a zeroed 8 MiB one
    let len = file.metadata().map(|md| md.len()).unwrap_or(CHUNK as u64);
    let mut buf = vec![0u8; CHUNK.min(len as usize + 1) + overlap];
    let mut base: u64 = 0; // file offset of buf[0]
    let mut have = 0usize;
    // a hit is new unless it lay wholly inside the previous buffer (the
    // kept tail is scanned twice)
    let mut seen_until: u64 = 0;
    loop {
        let n = file.read(&mut buf[have..])?;
        let eof = n == 0;
        have += n;
        if !eof && have < buf.len() {
            continue;
        }
        for h in m.find_raw(&buf[..have]) {
            let off = base + h.start as u64;
            if base + (h.end as u64) <= seen_until {
                continue;
            }
            let (w, s, e) = window(&buf[..have], &h);
            f(off, h.token, w, s, e);
        }
        if eof {
            return Ok(());
        }
        seen_until = base + have as u64;
        // keep the tail so a value split across chunks is still found
        let keep = overlap.min(have);
        buf.copy_within(have - keep..have, 0);
        base += (have - keep) as u64;
        have = keep;
    }
}

/// Groups hits: one finding per (place, category, detector), so a value
/// repeated in one element is one finding.
fn group(rel: &str, hits: Vec<Hit>) -> Vec<Finding> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for h in hits {
        if !seen.insert((h.place.clone(), h.category, h.detector)) {
            continue;
        }
        out.push(Finding {
            file: rel.to_string(),
            excerpt: match h.note {
                Some(words) => ReportText::fixed(words),
                None => ReportText::found(h.category, h.chars, &h.place),
            },
            place: h.place,
            category: h.category,
            detector: h.detector.to_string(),
            context: h.context,
            frame: None,
            thumbnail: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_vocabulary_row_parses() {
        let rows = include_str!("../data/vocabulary.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty());
        for r in rows {
            let tag = Tag::parse(r.split('\t').next().unwrap()).expect(r);
            assert!(vocabulary(tag), "{r}");
        }
        assert!(vocabulary(Tag(0x0008, 0x0070)) && !vocabulary(Tag(0x0010, 0x0010)));
    }

    /// Issue 16: the source's own values count in code items, File Meta
    /// and code strings; what is left out there is chance (an everyday
    /// word that is also a name, the site's equipment, short numbers).
    #[test]
    fn own_values_count_in_vocabulary_places() {
        let tok = |c: Category, v: &str| crate::Token {
            value: veil_core::Phi::new(v.to_string()),
            category: c,
        };
        let m = Matcher::new(vec![
            tok(Category::Name, "JOHN DOE"),
            tok(Category::Name, "HEAD"),
            tok(Category::Name, "SMITH"),
            tok(Category::Name, "OBSERVER"),
            tok(Category::Name, "LEE"),
            tok(Category::Device, "CT01"),
            tok(Category::Id, "MRN0042"),
            tok(Category::Id, "1234"),
            tok(Category::Date, "19610203"),
            tok(Category::Name, "OKONKWO"),
            tok(Category::Name, "TEXT"),
            tok(Category::Id, "5063071"),
            tok(Category::Uid, "1.2.3.4.5678901234"),
        ]);
        let i = |v: &str| {
            m.tokens()
                .iter()
                .position(|t| t.value.expose() == v)
                .unwrap()
        };
        let (meaning, descr) = (Tag(0x0008, 0x0104), Tag(0x0008, 0x1030));
        const W: Spot = Spot {
            whole: true,
            standard_uid: false,
        };
        const P: Spot = Spot {
            whole: false,
            standard_uid: false,
        };
        assert!(counts(&m, i("JOHN DOE"), meaning, VR::LO, P));
        assert!(counts(&m, i("MRN0042"), Tag(0x0002, 0x0016), VR::AE, W));
        assert!(counts(&m, i("JOHN DOE"), Tag(0x0008, 0x0060), VR::CS, W));
        assert!(counts(&m, i("LEE"), meaning, VR::LO, W));
        assert!(counts(&m, i("SMITH"), Tag(0x0008, 0x0060), VR::CS, W));
        assert!(!counts(&m, i("OBSERVER"), Tag(0x0040, 0xA040), VR::CS, W));
        assert!(counts(&m, i("OBSERVER"), descr, VR::LO, P));
        assert!(!counts(&m, i("LEE"), descr, VR::LO, P));
        assert!(!counts(&m, i("HEAD"), meaning, VR::LO, W));
        assert!(!counts(&m, i("HEAD"), Tag(0x0018, 0x0015), VR::CS, W));
        assert!(counts(&m, i("HEAD"), descr, VR::LO, P));
        assert!(!counts(&m, i("CT01"), Tag(0x0008, 0x1090), VR::LO, W));
        assert!(counts(&m, i("CT01"), descr, VR::LO, P));
        assert!(counts(&m, i("19610203"), Tag(0x0018, 0x1050), VR::DS, W));
        assert!(counts(&m, i("MRN0042"), Tag(0x0020, 0x0013), VR::IS, W));
        assert!(!counts(&m, i("1234"), Tag(0x0020, 0x0013), VR::IS, W));
        assert!(!counts(&m, i("1234"), Tag(0x0008, 0x0100), VR::SH, W));
        assert!(counts(&m, i("1234"), descr, VR::LO, W));
        assert!(counts(&m, i("19610203"), Tag(0x0008, 0x0020), VR::DA, W));
        assert!(!counts(&m, i("MRN0042"), Tag(0x0008, 0x0030), VR::TM, W));
        // a name word that is no DICOM or everyday word counts in a code
        // string (census list or not); one that is does not
        assert!(counts(&m, i("OKONKWO"), Tag(0x0008, 0x0060), VR::CS, W));
        assert!(counts(&m, i("OKONKWO"), meaning, VR::LO, W));
        assert!(!counts(&m, i("TEXT"), Tag(0x0040, 0xA040), VR::CS, W));
        // kinds of UIDs: the patient's own ID and dates count, the site's
        // UIDs do not, nor anything under the standard's root
        let scheme = Tag(0x0008, 0x010C);
        assert!(counts(&m, i("5063071"), scheme, VR::UI, P));
        assert!(counts(&m, i("19610203"), scheme, VR::UI, P));
        assert!(!counts(&m, i("1.2.3.4.5678901234"), scheme, VR::UI, P));
        assert!(counts(
            &m,
            i("1.2.3.4.5678901234"),
            Tag(0x0008, 0x1155),
            VR::UI,
            P
        ));
        let std_root = Spot {
            whole: false,
            standard_uid: true,
        };
        assert!(!counts(&m, i("5063071"), scheme, VR::UI, std_root));
        assert!(whole_value(b"AB\\LEE \\CD", 3, 6));
        assert!(!whole_value(b"DR LEE", 3, 6));
    }

    /// A DT is searched as its date and its time (a birth date written
    /// as the date of a DT is found); other VRs whole.
    #[test]
    fn a_date_time_is_a_date_and_a_time() {
        assert_eq!(
            parts(VR::DT, b"19610203093000.5\\20200101 "),
            [(0, 8), (8, 16), (17, 25)]
        );
        assert_eq!(parts(VR::LO, b"19610203093000"), [(0, 14)]);
        let m = Matcher::new(vec![crate::Token {
            value: veil_core::Phi::new("19610203".to_string()),
            category: Category::Date,
        }]);
        assert!(m.find(b"19610203093000").is_empty());
        let (s, e) = parts(VR::DT, b"19610203093000")[0];
        assert_eq!(m.find(&b"19610203093000"[s..e]).len(), 1);
        assert!(standard_uid(b"1.2.3\\1.2.840.10008.5.1.4.1.1.2", 8));
        assert!(!standard_uid(b"1.2.3\\1.2.840.10008.5.1.4.1.1.2", 2));
    }

    #[test]
    fn url_escapes_are_decoded() {
        assert_eq!(
            percent_decoded(b"http://x/v?name=DOE%5EJOHN&n=1+2").as_deref(),
            Some(&b"http://x/v?name=DOE^JOHN&n=1 2"[..])
        );
        assert_eq!(percent_decoded(b"http://x/v?id=12345"), None);
    }

    #[test]
    fn masks_every_hit_in_the_window() {
        let t = "seen by JOHN DOE on 2020-01-02 in clinic";
        let r = [
            (8, 16, Category::Name),
            (8, 12, Category::Name),
            (20, 30, Category::Date),
        ];
        let m = mask(t, &r, 8, 16);
        assert!(
            !m.contains("JOHN") && !m.contains("DOE") && !m.contains("2020"),
            "{m}"
        );
        assert!(m.contains("[name:8]") && m.contains("[date:10]"), "{m}");
    }

    #[test]
    fn pdf_text_is_inflated() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"BT (Patient: Jane Roe) Tj ET").unwrap();
        let mut pdf = b"%PDF-1.4\n1 0 obj << /Filter /FlateDecode >> stream\n".to_vec();
        pdf.extend(z.finish().unwrap());
        pdf.extend(b"\nendstream endobj");
        let s = pdf_streams(&pdf);
        assert_eq!(s.texts.len(), 1);
        assert!(s.unsearched.is_empty());
        assert!(String::from_utf8_lossy(&s.texts[0]).contains("Jane Roe"));
    }

    /// The raw pass: a UTF-16 name in the preamble, and a date and a UID
    /// written as text into 16-bit pixel data, are found; the same name
    /// in UTF-16 inside the pixel data is not (numeric data matches UTF-16
    /// by chance), nor a short value.
    #[test]
    fn raw_pass_finds_preamble_and_binary_text() {
        fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
            out.extend(g.to_le_bytes());
            out.extend(e.to_le_bytes());
            out.extend(vr);
            if vr == b"OW" || vr == b"OB" {
                out.extend([0, 0]);
                out.extend((v.len() as u32).to_le_bytes());
            } else {
                out.extend((v.len() as u16).to_le_bytes());
            }
            out.extend(v);
        }
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let mut f = vec![0u8; 128];
        let name = utf16("JOHN DOE");
        f[10..10 + name.len()].copy_from_slice(&name);
        f.extend(b"DICM");
        let mut meta = Vec::new();
        el(&mut meta, 2, 0x10, b"UI", b"1.2.840.10008.1.2.1\0");
        el(&mut f, 2, 0, b"UL", &(meta.len() as u32).to_le_bytes());
        f.extend(meta);
        el(&mut f, 8, 0x60, b"CS", b"CT");
        let mut px: Vec<u8> = (0..4096u16)
            .flat_map(|v| (v % 3000).to_le_bytes())
            .collect();
        for (at, text) in [
            (1000, b"20110304".to_vec()),
            (3000, b"x1.2.3.44444.5555555.6y".to_vec()),
            (5000, utf16("JOHN DOE")),
            (7000, b" ANN ".to_vec()),
        ] {
            px[at..at + text.len()].copy_from_slice(&text);
        }
        el(&mut f, 0x7FE0, 0x10, b"OW", &px);
        let dir = std::env::temp_dir().join(format!("veil-raw-pass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.dcm");
        veil_io::atomic::write_all(&path, &f).unwrap();
        let tok = |c: Category, v: &str| crate::Token {
            value: veil_core::Phi::new(v.to_string()),
            category: c,
        };
        let m = Matcher::new(vec![
            tok(Category::Name, "JOHN DOE"),
            tok(Category::Name, "ANN"),
            tok(Category::Date, "20110304"),
            tok(Category::Uid, "1.2.3.44444.5555555.6"),
        ]);
        let s = scan_file(&ScanInput {
            path: &path,
            rel: "x.dcm",
            tokens: Some(&m),
            patterns: false,
            site_local: false,
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(s.file.is_ok());
        let got: BTreeSet<(String, Category)> = s
            .findings
            .iter()
            .map(|f| (f.place.to_string(), f.category))
            .collect();
        let pixels = "(7FE0,0010)".to_string();
        let want: BTreeSet<(String, Category)> = [
            ("preamble".to_string(), Category::Name),
            (pixels.clone(), Category::Date),
            (pixels, Category::Uid),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, want);
    }
}
