//! Plant-everywhere mode: the object's own patient name, ID and birth date
//! in every string element it already has.
//!
//! Why: the first planter put fake values in places this team chose, and
//! both the engine and the verifier passed it at 100% while a new user's
//! values, typed into places nobody here chose (a code meaning, an RT plan
//! label, an AE title in File Meta), survived. A person can type PHI into
//! any attribute of a text VR at any depth, so this mode leaves the choice
//! of place to the object: every element of a string VR (and every UN
//! value that reads as text) gets one plant, in a form its VR allows, at
//! every depth, File Meta and private blocks included. The values are the
//! object's own (what a de-identifier harvests from it), so a miss is a
//! place the tool never looked, not a value it could not have known.
//!
//! Elements whose value decides how the object is read or what it is
//! (transfer syntax, character set, class UIDs, pixel and payload
//! description, private creators, SR value types) are not planted: each
//! such element is counted in the manifest under an exclusion kind with
//! its reason. Times of day and age strings cannot hold a name, an ID or a
//! date, and are counted the same way.
//!
//! The manifest holds the planted values. They come from public test data
//! or from the fake [`Identity`] generator, never from a site's files, and
//! the manifest is a test artefact that stays with the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use serde::{Deserialize, Serialize};
use veil_core::{Tag, TagPath};
use veil_io::{DataSet, Element, Value, WriteMeta};

use crate::{Identity, Rng};

/// Which of the object's own values a plant carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Which {
    /// Patient's Name (its family name is what is searched for).
    Name,
    /// Patient ID (or its digits, in numeric VRs and UIDs).
    Id,
    /// Patient's Birth Date (in the spelling written).
    Birth,
}

/// One planted value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plant {
    /// The planted file, relative to the planted root.
    pub file: String,
    /// The element, in the verifier's notation (`(0040,A730)[0]/(0040,A160)`,
    /// `meta/(0002,0016)`).
    pub place: String,
    /// The attribute's keyword (`private` or `unknown` when the standard
    /// dictionary has none).
    pub keyword: String,
    /// The element's VR as stored (UN for private values read as text).
    pub vr: String,
    /// Which own value.
    pub which: Which,
    /// The whole value written (one value of a multi-valued element).
    pub text: String,
    /// The identifying part of `text` that must not survive, in the
    /// spelling written: the family name, the ID (or its digits), the
    /// birth date as spelled.
    pub needle: String,
}

/// Elements left alone, by kind, with the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exclusion {
    /// Short name of the kind.
    pub kind: String,
    /// Why no value is planted there.
    pub reason: String,
    /// Elements of this kind over the whole set.
    pub count: usize,
}

/// The manifest of a plant-everywhere set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The seed that picked values and forms.
    pub seed: u64,
    /// Planted files, relative to the planted root.
    pub files: Vec<String>,
    /// Inputs not planted, by reason (unreadable, DICOMDIR, ...).
    pub skipped: BTreeMap<String, usize>,
    /// Files whose own name, ID or birth date was missing or too generic
    /// to search for, so a fake one was set first (by attribute).
    pub fake_values: BTreeMap<String, usize>,
    /// Elements left alone, by kind.
    pub excluded: Vec<Exclusion>,
    /// Every plant.
    pub plants: Vec<Plant>,
}

/// Why an element is not planted: (kind, reason).
type Excluded = (&'static str, &'static str);

const TRANSFER_SYNTAX: Excluded = (
    "transfer-syntax",
    "names the encoding the data set is parsed with; any other value makes the object unreadable",
);
const CHARACTER_SET: Excluded = (
    "character-set",
    "names how every text value is decoded; a name there makes the text undecodable",
);
const CLASS_UID: Excluded = (
    "class-uid",
    "a SOP or other class UID says what kind of object (or referenced object) this is; readers and the de-identifier select the IOD by it",
);
const META_INSTANCE: Excluded = (
    "meta-instance-uid",
    "Media Storage SOP Instance UID must equal SOP Instance UID; it follows the plant there",
);
const PAYLOAD: Excluded = (
    "payload-description",
    "describes how pixel, waveform or document bytes are decoded (photometric interpretation, number of frames, sample interpretation, MIME type)",
);
const SR_VALUE_TYPE: Excluded = (
    "sr-value-type",
    "an SR content item's Value Type says which attribute holds its value; readers walk the tree by it",
);
const PRIVATE_CREATOR: Excluded = (
    "private-creator",
    "a private creator names its block; the block's elements are identified (and in implicit VR, typed) by it",
);
const TIME: Excluded = (
    "time-of-day",
    "a TM value (HHMMSS.FFFFFF) cannot hold a name, an ID or a date; times are measured by the times test",
);
const AGE: Excluded = (
    "age-string",
    "an AS value (nnnD/W/M/Y) cannot hold a name, an ID or a date",
);
const SOURCE: Excluded = (
    "own-value-source",
    "Patient's Name, Patient ID and Patient's Birth Date at the top level hold the values planted everywhere else; they keep them",
);
const NO_FORM: Excluded = (
    "no-valid-form",
    "none of the three values fits this VR's length and character rules for this object",
);

/// Keywords whose value decides how the payload is read.
const PAYLOAD_KEYWORDS: &[&str] = &[
    "PhotometricInterpretation",
    "NumberOfFrames",
    "WaveformSampleInterpretation",
    "MIMETypeOfEncapsulatedDocument",
];

/// Placeholders that test data uses for a patient's name: they are words a
/// de-identified object may hold for other reasons, so a search for them
/// would count noise. A fake name is planted instead.
const PLACEHOLDER_NAMES: &[&str] = &[
    "ANON",
    "ANONYMOUS",
    "ANONYMIZED",
    "ANONYMISED",
    "DEMO",
    "NONE",
    "PATIENT",
    "PHANTOM",
    "SAMPLE",
    "TEST",
    "UNKNOWN",
];

fn keyword(tag: Tag) -> Option<&'static str> {
    StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.alias())
}

/// The standard's string VRs (values DICOM encodes as characters).
fn string_vr(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS | CS | DA | DS | DT | IS | LO | LT | PN | SH | ST | TM | UC | UI | UR | UT
    )
}

/// VRs that hold exactly one value (backslash is a character there).
fn single_valued(vr: VR) -> bool {
    matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR)
}

/// A UN value that a reader would take for text: printable ASCII after
/// its padding.
fn un_text(b: &[u8]) -> bool {
    let t = trim(b);
    t.len() >= 2 && t.iter().all(|c| (0x20..0x7F).contains(c))
}

fn trim(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| *c != 0 && *c != b' ')
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// The own values planted, with the spellings the planter may use.
#[derive(Debug, Clone)]
struct Own {
    family: String,
    given: String,
    id: String,
    /// YYYYMMDD.
    birth: String,
}

impl Own {
    /// The longest run of digits of the ID, if long enough to be told
    /// from chance digits in a random UID (7 or more).
    fn id_digits(&self) -> Option<&str> {
        let mut best = "";
        for run in self.id.split(|c: char| !c.is_ascii_digit()) {
            if run.len() > best.len() {
                best = run;
            }
        }
        (best.len() >= 7).then_some(best)
    }

    /// The birth date in the spellings free text uses.
    fn birth_spellings(&self) -> Vec<String> {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (y, m, d) = (&self.birth[0..4], &self.birth[4..6], &self.birth[6..8]);
        let mon = MONTHS[m.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
        vec![
            self.birth.clone(),
            format!("{y}-{m}-{d}"),
            format!("{m}/{d}/{y}"),
            format!("{d}.{m}.{y}"),
            format!("{d}-{}-{y}", mon.to_uppercase()),
            format!("{d} {mon} {y}"),
            format!("{mon} {d}, {y}"),
        ]
    }
}

fn title(s: &str) -> String {
    crate::title(&s.to_lowercase())
}

/// Candidate (text, needle) pairs for one VR and one value; empty when the
/// VR cannot hold that value. `uid_tail` makes planted UIDs unique.
fn forms(vr: VR, which: Which, own: &Own, uid_tail: &str) -> Vec<(String, String)> {
    use VR::*;
    let fam = &own.family;
    let (given, fam_t) = (title(&own.given), title(fam));
    let id = &own.id;
    let max = match vr {
        AE | CS | SH | DS => 16,
        IS => 12,
        LO | PN | UI => 64,
        ST => 1024,
        _ => 10240,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    match which {
        Which::Name => match vr {
            PN => {
                out.push((format!("{fam}^{}", own.given), fam.clone()));
                out.push((format!("{fam_t}^{given}"), fam_t.clone()));
            }
            CS => out.push((fam.to_uppercase(), fam.to_uppercase())),
            AE | SH => {
                out.push((fam.clone(), fam.clone()));
                out.push((fam_t.clone(), fam_t.clone()));
            }
            LO | UC | UN => {
                out.push((format!("{given} {fam_t}"), fam_t.clone()));
                out.push((format!("{fam}^{}", own.given), fam.clone()));
                out.push((format!("{fam_t}, {given}"), fam_t.clone()));
            }
            ST | LT | UT => {
                out.push((
                    format!("Patient {given} {fam_t} seen today."),
                    fam_t.clone(),
                ));
                out.push((
                    format!("Discussed with Mr {fam_t} by phone."),
                    fam_t.clone(),
                ));
            }
            UR => out.push((
                format!("https://ris.example/viewer?patient={fam}"),
                fam.clone(),
            )),
            _ => {}
        },
        Which::Id => {
            let url_safe = id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            match vr {
                CS => {
                    let cs: String = id
                        .to_uppercase()
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == ' ' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    out.push((cs.clone(), cs));
                }
                AE | SH => out.push((id.clone(), id.clone())),
                LO | UC | UN => {
                    out.push((id.clone(), id.clone()));
                    out.push((format!("MRN {id}"), id.clone()));
                }
                ST | LT | UT => out.push((format!("Record number {id} on file."), id.clone())),
                UR if url_safe => out.push((
                    format!("https://ris.example/order?mrn={id}&view=full"),
                    id.clone(),
                )),
                IS => {
                    if let Some(d) = own.id_digits().filter(|d| d.len() <= 9) {
                        out.push((d.to_string(), d.to_string()));
                    }
                }
                DS => {
                    if let Some(d) = own.id_digits() {
                        out.push((d.to_string(), d.to_string()));
                    }
                }
                UI => {
                    if let Some(d) = own.id_digits() {
                        out.push((
                            format!("1.2.826.0.1.3680043.10.1234.1{d}.{uid_tail}"),
                            d.to_string(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Which::Birth => {
            let b = &own.birth;
            let spell = own.birth_spellings();
            match vr {
                DA | CS | AE | IS | DS => out.push((b.clone(), b.clone())),
                DT => out.push((format!("{b}093000"), b.clone())),
                SH => {
                    for s in &spell[..4] {
                        out.push((s.clone(), s.clone()));
                    }
                }
                LO | UC | UN => {
                    for s in &spell {
                        out.push((s.clone(), s.clone()));
                    }
                }
                ST | LT | UT => {
                    for s in &spell {
                        out.push((format!("Born {s}, seen for follow-up."), s.clone()));
                    }
                }
                UR => out.push((format!("https://ris.example/dob/{b}/record"), b.clone())),
                UI => out.push((
                    format!("1.2.826.0.1.3680043.10.1234.{b}.{uid_tail}"),
                    b.clone(),
                )),
                _ => {}
            }
        }
    }
    out.retain(|(t, _)| t.len() <= max && !t.contains('\\') && !t.is_empty());
    out
}

/// Whether an element is left alone, and why.
fn excluded(tag: Tag, vr: VR, kw: Option<&str>, in_meta: bool) -> Option<Excluded> {
    let kw = kw.unwrap_or("");
    if kw.contains("TransferSyntaxUID") {
        return Some(TRANSFER_SYNTAX);
    }
    if tag == Tag(0x0008, 0x0005) {
        return Some(CHARACTER_SET);
    }
    if kw.ends_with("ClassUID") {
        return Some(CLASS_UID);
    }
    if in_meta && tag == Tag(0x0002, 0x0003) {
        return Some(META_INSTANCE);
    }
    if PAYLOAD_KEYWORDS.contains(&kw) {
        return Some(PAYLOAD);
    }
    if tag == Tag(0x0040, 0xA040) {
        return Some(SR_VALUE_TYPE);
    }
    if tag.is_private_creator() {
        return Some(PRIVATE_CREATOR);
    }
    match vr {
        VR::TM => Some(TIME),
        VR::AS => Some(AGE),
        _ => None,
    }
}

/// What one file's walk collects.
struct Walk<'a> {
    own: &'a Own,
    rng: Rng,
    rel: &'a str,
    file_index: usize,
    /// Elements left alone, by kind.
    excluded: BTreeMap<Excluded, usize>,
    plants: Vec<Plant>,
    /// Single-byte or UTF-8 text, where a backslash always separates
    /// values; other character sets (ISO 2022, GB18030) may use 0x5C
    /// inside a character, so their values are replaced whole.
    split_values: bool,
}

impl Walk<'_> {
    fn dataset(&mut self, ds: &mut DataSet, path: &TagPath, prefix: &str) {
        for e in &mut ds.elements {
            if e.tag.is_group_length() {
                continue;
            }
            match &mut e.value {
                Value::Sequence(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.dataset(item, &path.child(e.tag, Some(i)), prefix);
                    }
                }
                Value::Bytes(b) => {
                    let text_un = e.vr == VR::UN && un_text(b);
                    if !string_vr(e.vr) && !text_un {
                        continue;
                    }
                    let kw = keyword(e.tag);
                    if let Some(x) = excluded(e.tag, e.vr, kw, prefix == "meta/") {
                        *self.excluded.entry(x).or_default() += 1;
                        continue;
                    }
                    let place = format!("{prefix}{}", path.child(e.tag, None));
                    let kw = kw.map(str::to_string).unwrap_or_else(|| {
                        if e.tag.is_private() {
                            "private".into()
                        } else {
                            "unknown".into()
                        }
                    });
                    self.element(e.vr, b, place, kw);
                }
                _ => {}
            }
        }
    }

    fn element(&mut self, vr: VR, b: &mut Vec<u8>, place: String, kw: String) {
        // the three sources themselves keep their values: the engine and
        // the verifier learn what the patient's own values are from them,
        // and a planted form there ("MRN 123") would change what they learn
        if matches!(
            place.as_str(),
            "(0010,0010)" | "(0010,0020)" | "(0010,0030)"
        ) {
            *self.excluded.entry(SOURCE).or_default() += 1;
            return;
        }
        let tail = format!("{}.{}", self.file_index, self.plants.len() + 1);
        let mut options: Vec<(Which, Vec<(String, String)>)> =
            [Which::Name, Which::Id, Which::Birth]
                .into_iter()
                .map(|w| (w, forms(vr, w, self.own, &tail)))
                .filter(|(_, f)| !f.is_empty())
                .collect();
        if options.is_empty() {
            *self.excluded.entry(NO_FORM).or_default() += 1;
            return;
        }
        let (which, mut fs) = options.swap_remove(self.rng.below(options.len() as u64) as usize);
        let (text, needle) = fs.swap_remove(self.rng.below(fs.len() as u64) as usize);
        let old = String::from_utf8_lossy(trim(b)).into_owned();
        let new = if single_valued(vr) || !self.split_values || old.is_empty() {
            text.clone()
        } else {
            let mut vals: Vec<&str> = old.split('\\').collect();
            let k = self.rng.below(vals.len() as u64) as usize;
            vals[k] = &text;
            vals.join("\\")
        };
        *b = new.into_bytes();
        if b.len() % 2 == 1 {
            b.push(if vr == VR::UI { 0 } else { b' ' });
        }
        self.plants.push(Plant {
            file: self.rel.to_string(),
            place,
            keyword: kw,
            vr: vr.to_string().to_string(),
            which,
            text,
            needle,
        });
    }
}

/// A FNV-1a hash: per-file and per-patient seeds that do not depend on
/// the order files are listed in.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for b in *p {
            h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xFF).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn ascii(ds: &DataSet, tag: Tag) -> String {
    ds.bytes(tag)
        .map(|b| String::from_utf8_lossy(trim(b)).into_owned())
        .unwrap_or_default()
}

/// The object's own values, or fake ones where its own are missing or
/// too generic to search for (named in `fake`).
fn own_values(ds: &DataSet, seed: u64, fake: &mut Vec<&'static str>) -> Own {
    let name = ascii(ds, Tag(0x0010, 0x0010));
    let id = ascii(ds, Tag(0x0010, 0x0020));
    let birth = ascii(ds, Tag(0x0010, 0x0030));
    // one fake identity per patient: seeded from what the object says
    // (its study, where it says nothing of the patient)
    let study = ascii(ds, Tag(0x0020, 0x000D));
    let anonymous = name.is_empty() && id.is_empty() && birth.is_empty();
    let mut r = Rng::new(
        seed ^ fnv(&[
            name.as_bytes(),
            id.as_bytes(),
            birth.as_bytes(),
            if anonymous { study.as_bytes() } else { b"" },
        ]),
    );
    // A value that the object also holds outside the Patient group is a
    // word of the object (a body part, a dummy date, an accession number
    // equal to the ID): a search for it would count values nobody
    // planted, so a fake one is planted instead.
    let mut elsewhere = Vec::new();
    text_outside_patient(ds, true, &mut elsewhere);
    let elsewhere = elsewhere.to_ascii_uppercase();
    let unique = |v: &str| {
        let v = v.to_ascii_uppercase();
        !elsewhere.windows(v.len()).any(|w| w == v.as_bytes())
    };
    let f = Identity::random(&mut r);
    let group = name.split('=').next().unwrap_or("");
    let mut comps = group.split('^').map(str::trim);
    let (family, given) = (comps.next().unwrap_or(""), comps.next().unwrap_or(""));
    let name_ok = family.len() >= 4
        && family.chars().all(|c| c.is_ascii_alphabetic())
        && family.chars().any(|c| !family.starts_with(c))
        && !PLACEHOLDER_NAMES.contains(&family.to_uppercase().as_str())
        && unique(family)
        && given.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ');
    let id_ok = (6..=16).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id.chars().any(|c| c.is_ascii_digit())
        && id.chars().any(|c| !id.starts_with(c))
        && unique(&id);
    let birth_ok = birth.len() == 8
        && birth.bytes().all(|c| c.is_ascii_digit())
        // 1900 is the dummy year of de-identified dates
        && (1901..=2030).contains(&birth[0..4].parse::<u32>().unwrap_or(0))
        && (1..=12).contains(&birth[4..6].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&birth[6..8].parse::<u32>().unwrap_or(0))
        && unique(&birth);
    let (family, given) = if name_ok {
        (family.to_string(), given.to_string())
    } else {
        fake.push("PatientName");
        (f.family.clone(), f.given.clone())
    };
    let id = if id_ok {
        id
    } else {
        fake.push("PatientID");
        f.mrn.clone()
    };
    let birth = if birth_ok {
        birth
    } else {
        fake.push("PatientBirthDate");
        f.birth.clone()
    };
    Own {
        family,
        given,
        id,
        birth,
    }
}

/// The string values of a data set (UN text included) outside the
/// top-level Patient group (0010,xxxx), separated by newlines.
fn text_outside_patient(ds: &DataSet, top: bool, out: &mut Vec<u8>) {
    for e in &ds.elements {
        if top && e.tag.0 == 0x0010 {
            continue;
        }
        match &e.value {
            Value::Bytes(b) if string_vr(e.vr) || (e.vr == VR::UN && un_text(b)) => {
                out.push(b'\n');
                out.extend_from_slice(b);
            }
            Value::Sequence(items) => {
                for i in items {
                    text_outside_patient(i, false, out);
                }
            }
            _ => {}
        }
    }
}

/// Why a file was not planted.
#[derive(Debug)]
pub struct Skipped(pub &'static str);

/// What planting one file gives.
pub struct FilePlants {
    /// The plants.
    pub plants: Vec<Plant>,
    /// Excluded elements by (kind, reason).
    excluded: BTreeMap<Excluded, usize>,
    /// Own values replaced by fake ones.
    pub fake: Vec<&'static str>,
}

/// Plants one file: reads `src`, writes `root/rel`. `file_index` keeps
/// planted UIDs unique across the set.
pub fn plant_file(
    src: &Path,
    root: &Path,
    rel: &str,
    file_index: usize,
    seed: u64,
) -> Result<FilePlants, Skipped> {
    let f = veil_io::read(src).map_err(|_| Skipped("unreadable"))?;
    if f.is_dicomdir() {
        return Err(Skipped("DICOMDIR (a directory, not an object)"));
    }
    let mut ds = f.dataset.clone();
    let mut fake = Vec::new();
    let own = own_values(&ds, seed, &mut fake);
    // the fake values go in first, so that they are the object's own
    if fake.contains(&"PatientName") {
        ds.put(Element::text(
            Tag(0x0010, 0x0010),
            VR::PN,
            &format!("{}^{}", own.family, own.given),
        ));
    }
    if fake.contains(&"PatientID") {
        ds.put(Element::text(Tag(0x0010, 0x0020), VR::LO, &own.id));
    }
    if fake.contains(&"PatientBirthDate") {
        ds.put(Element::text(Tag(0x0010, 0x0030), VR::DA, &own.birth));
    }
    let charset = ascii(&ds, Tag(0x0008, 0x0005));
    let split_values = charset
        .split('\\')
        .all(|c| c.is_empty() || c.starts_with("ISO_IR") || c == "ISO 2022 IR 6");
    let mut w = Walk {
        own: &own,
        rng: Rng::new(seed ^ fnv(&[rel.as_bytes()])),
        rel,
        file_index,
        excluded: BTreeMap::new(),
        plants: Vec::new(),
        split_values,
    };
    let mut meta = f.meta.as_ref().map(|m| m.elements.clone());
    if let Some(m) = meta.as_mut() {
        w.dataset(m, &TagPath::default(), "meta/");
    }
    w.dataset(&mut ds, &TagPath::default(), "");
    let dest = root.join(rel);
    let sop_instance = ds.ascii(Tag(0x0008, 0x0018)).unwrap_or_default();
    let written = match meta {
        Some(mut m) => {
            if !sop_instance.is_empty() {
                m.put(Element::text(Tag(0x0002, 0x0003), VR::UI, &sop_instance));
            }
            veil_io::write_file_with_meta(&dest, &m, &f.ts, &ds, &f.source)
        }
        None => {
            let meta = WriteMeta {
                sop_class: ds.ascii(Tag(0x0008, 0x0016)).unwrap_or_default(),
                sop_instance,
            };
            veil_io::write_file(&dest, &meta, &f.ts, &ds, &f.source)
        }
    };
    written.map_err(|_| Skipped("cannot be written back"))?;
    Ok(FilePlants {
        plants: w.plants,
        excluded: w.excluded,
        fake,
    })
}

/// Plants every readable file below `input` into `out` (same relative
/// paths). Unreadable inputs are skipped and counted by reason.
pub fn plant_dir(input: &Path, out: &Path, seed: u64) -> Result<Manifest, String> {
    let files = veil_io::walk(&[input.to_path_buf()])
        .map_err(|e| format!("cannot list the inputs: {:?}", e.kind()))?;
    plant_files(input, &files, out, seed)
}

/// Plants `files` (below `input`) into `out`.
pub fn plant_files(
    input: &Path,
    files: &[PathBuf],
    out: &Path,
    seed: u64,
) -> Result<Manifest, String> {
    let mut m = Manifest {
        seed,
        ..Manifest::default()
    };
    let mut excluded: BTreeMap<Excluded, usize> = BTreeMap::new();
    for (i, src) in files.iter().enumerate() {
        let rel = src
            .strip_prefix(input)
            .unwrap_or(src)
            .to_string_lossy()
            .into_owned();
        match plant_file(src, out, &rel, i + 1, seed) {
            Ok(p) => {
                m.files.push(rel);
                m.plants.extend(p.plants);
                for (k, n) in p.excluded {
                    *excluded.entry(k).or_default() += n;
                }
                for a in p.fake {
                    *m.fake_values.entry(a.to_string()).or_default() += 1;
                }
            }
            Err(Skipped(why)) => *m.skipped.entry(why.to_string()).or_default() += 1,
        }
    }
    m.excluded = excluded
        .into_iter()
        .map(|((kind, reason), count)| Exclusion {
            kind: kind.into(),
            reason: reason.into(),
            count,
        })
        .collect();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Own {
        Own {
            family: "HARRINGTON".into(),
            given: "MARGARET".into(),
            id: "MRN12345678".into(),
            birth: "19610315".into(),
        }
    }

    #[test]
    fn every_form_is_valid_for_its_vr() {
        let o = own();
        for vr in [
            VR::AE,
            VR::CS,
            VR::DA,
            VR::DS,
            VR::DT,
            VR::IS,
            VR::LO,
            VR::LT,
            VR::PN,
            VR::SH,
            VR::ST,
            VR::UC,
            VR::UI,
            VR::UR,
            VR::UT,
        ] {
            for w in [Which::Name, Which::Id, Which::Birth] {
                for (text, needle) in forms(vr, w, &o, "3.4") {
                    assert!(text.contains(&needle), "{vr:?} {w:?}");
                    match vr {
                        VR::CS => assert!(text
                            .bytes()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')),
                        VR::IS => assert!(text.parse::<i32>().is_ok(), "{text}"),
                        VR::DS => assert!(text.parse::<f64>().is_ok() && text.len() <= 16),
                        VR::DA => assert_eq!(text.len(), 8),
                        VR::UI => assert!(text
                            .split('.')
                            .all(|c| !c.is_empty() && (c == "0" || !c.starts_with('0')))),
                        VR::UR => assert!(!text.contains(' ')),
                        _ => {}
                    }
                }
            }
        }
        // a DA holds the date and nothing else; TM and AS hold none
        assert!(forms(VR::DA, Which::Name, &o, "1").is_empty());
        assert!(excluded(Tag(0x0008, 0x0030), VR::TM, Some("StudyTime"), false).is_some());
    }

    #[test]
    fn structure_is_left_alone() {
        let kw = |t| keyword(t);
        for t in [
            Tag(0x0002, 0x0010),
            Tag(0x0008, 0x0016),
            Tag(0x0002, 0x0002),
            Tag(0x0008, 0x1150),
            Tag(0x0008, 0x0005),
            Tag(0x0028, 0x0004),
            Tag(0x0040, 0xA040),
            Tag(0x0009, 0x0010),
        ] {
            assert!(excluded(t, VR::CS, kw(t), false).is_some(), "{t}");
        }
        // the instance UID, AE titles and code meanings are planted
        for t in [
            Tag(0x0008, 0x0018),
            Tag(0x0002, 0x0016),
            Tag(0x0008, 0x0104),
        ] {
            assert!(excluded(t, VR::LO, kw(t), false).is_none(), "{t}");
        }
    }

    #[test]
    fn generic_names_give_way_to_fake_ones() {
        let ds = DataSet::of([
            Element::text(Tag(0x0010, 0x0010), VR::PN, "Anonymized"),
            Element::text(Tag(0x0010, 0x0020), VR::LO, "0"),
        ]);
        let mut fake = Vec::new();
        let o = own_values(&ds, 1, &mut fake);
        assert_eq!(fake, ["PatientName", "PatientID", "PatientBirthDate"]);
        assert!(o.family.len() >= 4 && o.id.len() >= 7 && o.birth.len() == 8);
        // a word the object uses elsewhere is no name to search for
        let ds = DataSet::of([
            Element::text(Tag(0x0018, 0x0015), VR::CS, "ABDOMEN"),
            Element::text(Tag(0x0010, 0x0010), VR::PN, "Abdomen^CT"),
        ]);
        let mut fake = Vec::new();
        own_values(&ds, 1, &mut fake);
        assert!(fake.contains(&"PatientName"));
        let ds = DataSet::of([
            Element::text(Tag(0x0010, 0x0010), VR::PN, "Doenitz^Archibald"),
            Element::text(Tag(0x0010, 0x0020), VR::LO, "A-1234567"),
            Element::text(Tag(0x0010, 0x0030), VR::DA, "19500101"),
        ]);
        let mut fake = Vec::new();
        let o = own_values(&ds, 1, &mut fake);
        assert!(fake.is_empty());
        assert_eq!(o.id_digits(), Some("1234567"));
    }
}
