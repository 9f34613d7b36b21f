//! Decide and apply. See the crate docs.

use std::collections::{BTreeSet, HashMap};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use veil_core::{ProfileOption, QuarantineReason, Tag, TagPath};
use veil_io::{DataSet, DicomFile, Element, Value};
use veil_rules::{
    e1_1_row, generated::review_triggers::REVIEW_TRIGGERS, option_code, safe_private, strict_safe,
    AttributeOverride, OverrideAction, Recipe, RecipeError, SafeSource, Selector, TriggerKind,
};

use crate::clean::{Cleaner, Harvest};
use crate::key::Key;
use crate::pseudonym;

/// A recipe, the options in force and the key, ready to run.
pub struct Policy {
    recipe: Recipe,
    options: BTreeSet<ProfileOption>,
    overrides: Vec<(Selector, AttributeOverride)>,
    safe_sources: Vec<SafeSource>,
    key: Key,
}

/// Errors while building a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The recipe is invalid.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
}

fn keyword_tag(k: &str) -> Option<Tag> {
    StandardDataDictionary
        .by_name(k)
        .map(|e| e.tag_range().inner())
        .map(|t| Tag(t.0, t.1))
}

fn keyword_of(tag: Tag) -> Option<&'static str> {
    StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.alias)
}

impl Policy {
    /// Combines a recipe with options given on the command line.
    pub fn new(recipe: Recipe, extra: &[ProfileOption], key: Key) -> Result<Policy, PolicyError> {
        let mut options: BTreeSet<ProfileOption> = recipe.options.iter().copied().collect();
        options.extend(extra.iter().copied());
        if options.contains(&ProfileOption::RetainLongFullDates)
            && options.contains(&ProfileOption::RetainLongModifiedDates)
        {
            return Err(RecipeError::Invalid(
                "retain-long-full-dates and retain-long-modified-dates exclude each other".into(),
            )
            .into());
        }
        let overrides = recipe
            .selectors(keyword_tag)?
            .into_iter()
            .map(|(s, a)| (s, a.clone()))
            .collect();
        let safe_sources = recipe.safe_sources();
        Ok(Policy {
            recipe,
            options,
            overrides,
            safe_sources,
            key,
        })
    }

    /// The options in force.
    pub fn options(&self) -> &BTreeSet<ProfileOption> {
        &self.options
    }

    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// The key id.
    pub fn key_id(&self) -> String {
        self.key.id()
    }

    /// The key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    fn has(&self, o: ProfileOption) -> bool {
        self.options.contains(&o)
    }
}

/// What happens to one attribute.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    /// Kept unchanged.
    Keep,
    /// Removed.
    Remove,
    /// Replaced by a zero-length value (or an empty sequence).
    Empty,
    /// Replaced by a dummy value valid for its VR.
    Dummy,
    /// Replaced by a keyed pseudonym of the given kind.
    Pseudonym(&'static str),
    /// Replaced by a keyed UID (each value of the list).
    Uid,
    /// Free text cleaned of identifying values.
    Clean,
    /// Dates moved by the patient's offset.
    ShiftDate,
    /// Age over 89 capped at 090Y (HIPAA); otherwise kept.
    CapAge,
    /// Replaced by a value from the recipe.
    Replace,
    /// A sequence kept, its items processed with the same rules; the
    /// string names how text inside is treated (`rules`, `dummy`, `clean`).
    Recurse(&'static str),
}

/// One decision, for `veil explain` and the report. No values.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// Where the attribute is.
    pub path: TagPath,
    /// Its keyword, when standard.
    pub keyword: String,
    /// Its VR.
    pub vr: String,
    /// What happens.
    pub action: Act,
    /// Why: the rule.
    pub why: String,
}

/// The result for one object.
#[derive(Debug)]
pub struct Deidentified {
    /// The de-identified data set.
    pub dataset: DataSet,
    /// New SOP Class UID (unchanged) for the File Meta.
    pub sop_class: String,
    /// New SOP Instance UID for the File Meta.
    pub sop_instance: String,
    /// Pseudonymous path components: patient, study, series, instance.
    pub path: [String; 4],
    /// Set when the object must go to review, with the reason.
    pub review: Option<String>,
    /// Every decision taken.
    pub decisions: Vec<Decision>,
}

/// How text inside a sequence is treated when no row governs it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rules,
    Dummy,
    Clean,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Rules => "rules",
            Mode::Dummy => "dummy",
            Mode::Clean => "clean",
        }
    }
}

/// Per-object state.
struct Ctx<'p> {
    policy: &'p Policy,
    charset: Option<SpecificCharacterSet>,
    date_offset: i32,
    patient_pseudo: String,
    harvest: Harvest,
    cleaner: Option<Cleaner>,
}

/// Attributes of code sequence items: kept inside dummied/cleaned content
/// because they are controlled terminology, not free text.
fn is_code_attribute(tag: Tag) -> bool {
    matches!(
        (tag.0, tag.1),
        (0x0008, 0x0100..=0x0106)
            | (0x0008, 0x0119)
            | (0x0008, 0x0120)
            | (0x0040, 0xA040)
            | (0x0040, 0xA010)
            | (0x0040, 0xA050)
    )
}

/// UI attributes that name a class or a scheme, not an instance.
fn is_class_uid(tag: Tag) -> bool {
    match keyword_of(tag) {
        Some(k) => {
            k.ends_with("ClassUID")
                || k.ends_with("SyntaxUID")
                || k.ends_with("CodingSchemeUID")
                || k == "ContextGroupExtensionCreatorUID"
                || k == "PrivateInformationCreatorUID"
        }
        None => false,
    }
}

fn is_text(vr: VR) -> bool {
    matches!(
        vr,
        VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC | VR::PN
    )
}

/// A dummy value valid for the VR (PS3.15: "a non-zero length value that
/// may be a dummy value and consistent with the VR").
fn dummy_bytes(vr: VR, old: &[u8]) -> Vec<u8> {
    let s: &[u8] = match vr {
        VR::PN => b"ANONYMOUS",
        VR::DA => b"19000101",
        VR::DT => b"19000101000000",
        VR::TM => b"000000",
        VR::DS | VR::IS => b"0",
        VR::AS => b"000Y",
        VR::CS | VR::AE | VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC => b"ANONYMIZED",
        VR::UR => b"",
        VR::US | VR::SS => return vec![0; 2.max(old.len() / 2 * 2)],
        VR::UL | VR::SL | VR::FL | VR::AT => return vec![0; 4.max(old.len() / 4 * 4)],
        VR::FD | VR::SV | VR::UV => return vec![0; 8.max(old.len() / 8 * 8)],
        _ => return vec![0; old.len() & !1],
    };
    s.to_vec()
}

/// The pseudonym kind for identifiers the recipe gives formats for.
fn pseudonym_kind(tag: Tag) -> Option<&'static str> {
    match (tag.0, tag.1) {
        (0x0010, 0x0020) => Some("patient-id"),
        (0x0010, 0x0010) => Some("patient-name"),
        (0x0008, 0x0050) => Some("accession-number"),
        (0x0020, 0x0010) => Some("study-id"),
        _ => None,
    }
}

const UNKNOWN_CHARSET: &str = "character set not decodable";

impl Policy {
    /// Resolves the action code of a Table E.1-1 row under the options in
    /// force. Option columns override the Basic Profile; when several
    /// options fill a row, keeping beats cleaning beats the rest.
    fn row_code(&self, row: &veil_rules::E11Row) -> (&'static str, String) {
        let mut best: Option<(ProfileOption, &'static str)> = None;
        for &(o, c) in row.options {
            if !self.has(o) {
                continue;
            }
            let rank = |c: &str| match c {
                "K" => 0,
                "C" => 1,
                _ => 2,
            };
            if best.is_none_or(|(_, b)| rank(c) < rank(b)) {
                best = Some((o, c));
            }
        }
        match best {
            Some((o, c)) => (
                c,
                format!("E.1-1 {} {}: {c} under {o}", row.tag_text, row.name),
            ),
            None => (
                row.basic,
                format!(
                    "E.1-1 {} {}: {} (Basic Profile)",
                    row.tag_text, row.name, row.basic
                ),
            ),
        }
    }

    /// Maps an (already option-resolved) action code to an action for this
    /// element. Compound codes resolve so the output stays valid without IOD
    /// tables: X/Z -> Z, X/D and X/Z/D -> D, Z/D -> D, X/Z/U* -> U.
    fn code_act(&self, code: &str, tag: Tag, vr: VR) -> Act {
        // A sequence that may be X or Z keeps its items, processed by the
        // same rules: an empty sequence violates VM 1-n where the IOD
        // makes it Type 3, and nothing inside escapes the table.
        if code == "X/Z" && vr == VR::SQ {
            return Act::Recurse(Mode::Rules.name());
        }
        let code = match code {
            "X/Z" => "Z",
            "X/D" | "X/Z/D" | "Z/D" => "D",
            "X/Z/U*" => "U",
            c => c,
        };
        let pseudo = pseudonym_kind(tag).filter(|k| !self.format_for(k).is_empty());
        match (code, vr) {
            ("X", _) => Act::Remove,
            ("Z", VR::SQ) => Act::Empty,
            ("Z" | "D", _) if pseudo.is_some() => Act::Pseudonym(pseudo.unwrap_or_default()),
            ("Z", _) => Act::Empty,
            ("D", VR::SQ) => Act::Recurse(Mode::Dummy.name()),
            ("D", VR::UI) | ("U", VR::UI) => Act::Uid,
            ("D", VR::DA | VR::DT) if self.has(ProfileOption::RetainLongModifiedDates) => {
                Act::ShiftDate
            }
            ("D", VR::LO | VR::SH) => Act::Pseudonym("other-id"),
            ("D", _) => Act::Dummy,
            ("U", VR::SQ) => Act::Recurse(Mode::Rules.name()),
            ("U", _) => Act::Dummy,
            ("K", VR::SQ) => Act::Recurse(Mode::Rules.name()),
            ("K", _) => self.keep_act(vr),
            ("C", VR::SQ) => Act::Recurse(Mode::Clean.name()),
            ("C", VR::DA | VR::DT) => {
                if self.has(ProfileOption::RetainLongModifiedDates) {
                    Act::ShiftDate
                } else if self.has(ProfileOption::RetainLongFullDates) {
                    Act::Keep
                } else {
                    Act::Remove
                }
            }
            ("C", VR::UI) => Act::Uid,
            ("C", v) if is_text(v) => Act::Clean,
            ("C", _) => self.keep_act(vr),
            _ => Act::Remove,
        }
    }

    /// What "keep" means for a VR: dates are still shifted under Modified
    /// Dates (every DA and DT, everywhere), ages are capped.
    fn keep_act(&self, vr: VR) -> Act {
        match vr {
            VR::DA | VR::DT if self.has(ProfileOption::RetainLongModifiedDates) => Act::ShiftDate,
            VR::AS => Act::CapAge,
            _ => Act::Keep,
        }
    }

    fn format_for(&self, kind: &str) -> &str {
        let p = &self.recipe.pseudonyms;
        match kind {
            "patient-id" => &p.patient_id,
            "patient-name" => &p.patient_name,
            "accession-number" => &p.accession_number,
            "study-id" => &p.study_id,
            _ => &p.other_id,
        }
    }

    fn override_for(
        &self,
        path: &TagPath,
        tag: Tag,
        creator: Option<&str>,
    ) -> Option<&AttributeOverride> {
        self.overrides.iter().rev().find_map(|(s, a)| {
            let hit = match s {
                Selector::Tag(t) => *t == tag,
                Selector::Private {
                    group,
                    creator: c,
                    element,
                } => {
                    tag.0 == *group
                        && (tag.1 & 0xFF) as u8 == *element
                        && tag.1 >= 0x1000
                        && creator.is_some_and(|x| x.trim() == c)
                }
                Selector::Path(tags) => {
                    tags.len() == path.0.len() && tags.iter().zip(&path.0).all(|(a, b)| *a == b.0)
                }
            };
            hit.then_some(a)
        })
    }

    /// Does a recipe path select something below this sequence?
    fn path_goes_through(&self, path: &TagPath) -> bool {
        self.overrides.iter().any(|(s, _)| match s {
            Selector::Path(tags) => {
                tags.len() > path.0.len() && tags.iter().zip(&path.0).all(|(a, b)| *a == b.0)
            }
            _ => false,
        })
    }

    /// Decides what happens to one element. Pure: no value is changed.
    fn decide(
        &self,
        path: &TagPath,
        e: &Element,
        creator: Option<&str>,
        mode: Mode,
    ) -> (Act, String) {
        let tag = e.tag;
        if let Some(o) = self.override_for(path, tag, creator) {
            let act = match o.action {
                OverrideAction::Keep if e.vr == VR::SQ => Act::Recurse(Mode::Rules.name()),
                OverrideAction::Keep => Act::Keep,
                OverrideAction::Remove => Act::Remove,
                OverrideAction::Empty => Act::Empty,
                OverrideAction::Replace => Act::Replace,
                OverrideAction::Pseudonymize if e.vr == VR::UI => Act::Uid,
                OverrideAction::Pseudonymize => {
                    Act::Pseudonym(pseudonym_kind(tag).unwrap_or("other-id"))
                }
                OverrideAction::Clean if e.vr == VR::SQ => Act::Recurse(Mode::Clean.name()),
                OverrideAction::Clean => Act::Clean,
            };
            return (act, format!("recipe '{}' override", self.recipe.name));
        }
        // A sequence that a recipe path goes through is kept and entered,
        // so the override below it can apply.
        if e.vr == VR::SQ && self.path_goes_through(path) {
            return (
                Act::Recurse(Mode::Rules.name()),
                format!(
                    "recipe '{}' override inside this sequence",
                    self.recipe.name
                ),
            );
        }
        if tag.is_private() {
            if tag.is_private_creator() {
                return (
                    Act::Keep,
                    "private creator: kept while its block keeps an attribute".into(),
                );
            }
            if self.has(ProfileOption::RetainSafePrivate) {
                if let Some(c) = creator {
                    if let Some(s) =
                        safe_private(tag.0, c, (tag.1 & 0xFF) as u8, &self.safe_sources)
                    {
                        let act = if e.vr == VR::SQ {
                            Act::Recurse(Mode::Rules.name())
                        } else {
                            self.keep_act(e.vr)
                        };
                        return (
                            act,
                            format!(
                                "retain-safe-private: on the {} safe list (creator + xx{:02X})",
                                s.source.name(),
                                tag.1 & 0xFF
                            ),
                        );
                    }
                }
            }
            let row = e1_1_row(tag).expect("the odd-group row covers every private tag");
            let why = if self.has(ProfileOption::RetainSafePrivate) {
                format!("E.1-1 {} {}: not on a safe list", row.tag_text, row.name)
            } else {
                format!("E.1-1 {} {}: X (Basic Profile)", row.tag_text, row.name)
            };
            return (Act::Remove, why);
        }
        // Overlay planes are removed whole with their data: leaving the
        // plane's attributes without (60xx,3000) would make it invalid.
        // Cleaning an overlay bitmap needs the pixel stage.
        if tag.0 & 0xFF01 == 0x6000 && tag.0 <= 0x601E {
            return (
                Act::Remove,
                "E.1-1 (60XX,3000) Overlay Data: the overlay plane is removed as a whole (clean-graphics needs the pixel stage)".into(),
            );
        }
        if tag.0 & 0xFF01 == 0x5000 && tag.0 <= 0x501E {
            return (Act::Remove, "E.1-1 (50XX,XXXX) Curve Data: X".into());
        }
        if let Some(row) = e1_1_row(tag) {
            let (code, why) = self.row_code(row);
            // Without IOD tables Veil cannot know whether a removed attribute
            // is Type 2 or 2C where it stands; an empty value is never PHI
            // and keeps such an attribute present. So X on a row that the
            // table marks as used in a standard composite IOD empties the
            // value instead (sequences are still removed: an empty one can
            // break VM 1-n).
            if code == "X" && row.in_std_comp_iod == "Y" && e.vr != VR::SQ {
                return (
                    Act::Empty,
                    format!(
                        "{why}; emptied rather than removed (in a standard IOD, may be Type 2)"
                    ),
                );
            }
            return (self.code_act(code, tag, e.vr), why);
        }
        // Not in Table E.1-1.
        if e.vr == VR::UI && !is_class_uid(tag) {
            if self.has(ProfileOption::RetainUids) {
                return (Act::Keep, "retain-uids: instance UID kept".into());
            }
            return (
                Act::Uid,
                "instance UID not in E.1-1: remapped so references stay consistent".into(),
            );
        }
        let keyword = keyword_of(tag).unwrap_or("");
        if self.recipe.strict && !strict_safe(keyword) && !is_code_attribute(tag) {
            return (
                Act::Remove,
                "strict recipe: not on the strict safe list".into(),
            );
        }
        match mode {
            Mode::Dummy if is_text(e.vr) && !is_code_attribute(tag) => {
                return (Act::Dummy, "inside a D sequence: free text replaced".into())
            }
            Mode::Clean if is_text(e.vr) && !is_code_attribute(tag) => {
                return (Act::Clean, "inside a C sequence: free text cleaned".into())
            }
            Mode::Dummy | Mode::Clean if matches!(e.vr, VR::DA | VR::DT) => {
                let act = if self.has(ProfileOption::RetainLongModifiedDates) {
                    Act::ShiftDate
                } else if self.has(ProfileOption::RetainLongFullDates) {
                    Act::Keep
                } else {
                    Act::Dummy
                };
                return (act, "date inside structured content".into());
            }
            _ => {}
        }
        if e.vr == VR::SQ {
            return (
                Act::Recurse(mode.name()),
                "not in E.1-1: kept, items processed".into(),
            );
        }
        (
            self.keep_act(e.vr),
            "not in E.1-1: kept (PS3.15 E.1.1)".into(),
        )
    }
}

/// Reads the first value of the Specific Character Set; multi-valued sets
/// (ISO 2022 code extensions) are not decoded, so their text is removed
/// rather than cleaned.
fn charset_of(ds: &DataSet) -> Option<SpecificCharacterSet> {
    match ds.ascii(Tag(0x0008, 0x0005)) {
        None => Some(SpecificCharacterSet::default()),
        Some(s) if s.is_empty() => Some(SpecificCharacterSet::default()),
        Some(s) if s.contains('\\') => None,
        Some(s) => SpecificCharacterSet::from_code(&s),
    }
}

impl Ctx<'_> {
    fn decode(&self, b: &[u8]) -> Option<String> {
        let cs = self.charset.as_ref()?;
        cs.decode(b)
            .ok()
            .map(|s| s.trim_matches(|c| c == ' ' || c == '\0').to_string())
    }

    fn encode(&self, s: &str) -> Option<Vec<u8>> {
        match &self.charset {
            Some(cs) => cs.encode(s).ok(),
            None if s.is_ascii() => Some(s.as_bytes().to_vec()),
            None => None,
        }
    }

    fn cleaner(&mut self) -> &Cleaner {
        if self.cleaner.is_none() {
            self.cleaner = Some(self.harvest.cleaner());
        }
        self.cleaner.as_ref().expect("just built")
    }
}

/// Collects the identifying values of an object before anything changes:
/// every person name and date, and the values of attributes that the Basic
/// Profile removes or replaces and that are not descriptions (rows without
/// a Clean Descriptors column), so that free text can be cleaned of them.
fn harvest(ds: &DataSet, ctx: &mut Ctx) {
    for e in &ds.elements {
        match &e.value {
            Value::Sequence(items) => items.iter().for_each(|i| harvest(i, ctx)),
            Value::Bytes(b) if !b.is_empty() => {
                let Some(text) = ctx.decode(b) else { continue };
                let vr = e.vr.to_string();
                match e.vr {
                    VR::PN | VR::DA => ctx.harvest.add(vr, &text),
                    VR::LO | VR::SH | VR::LT | VR::ST | VR::UT | VR::UC | VR::DT | VR::AE => {
                        let identifying = e1_1_row(e.tag).is_some_and(|r| {
                            !r.tag.matches(Tag(1, 0))
                                && r.basic != "K"
                                && r.option_code(ProfileOption::CleanDescriptors).is_none()
                                && r.option_code(ProfileOption::CleanStructuredContent)
                                    .is_none()
                        }) && !e.tag.is_private();
                        if identifying {
                            ctx.harvest.add(vr, &text);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Runs the policy over objects.
pub struct Deidentifier<'p> {
    policy: &'p Policy,
}

impl<'p> Deidentifier<'p> {
    /// A de-identifier for a policy.
    pub fn new(policy: &'p Policy) -> Self {
        Deidentifier { policy }
    }

    /// Decides and applies the policy to one parsed file.
    pub fn run(&self, file: &DicomFile) -> Result<Deidentified, QuarantineReason> {
        let p = self.policy;
        let ds = &file.dataset;
        let sop_class = file.sop_class().ok_or(QuarantineReason::MissingAttribute {
            tag: "(0008,0016)".into(),
        })?;
        let old_sop = ds
            .ascii(Tag(0x0008, 0x0018))
            .or_else(|| file.meta.as_ref()?.elements.ascii(Tag(0x0002, 0x0003)))
            .filter(|s| !s.is_empty())
            .ok_or(QuarantineReason::MissingAttribute {
                tag: "(0008,0018)".into(),
            })?;
        let review = self.review_reason(file, &sop_class);
        let charset = charset_of(ds);
        let mut ctx = Ctx {
            policy: p,
            charset,
            date_offset: 0,
            patient_pseudo: String::new(),
            harvest: Harvest::default(),
            cleaner: None,
        };
        let pid = ds
            .bytes(Tag(0x0010, 0x0020))
            .and_then(|b| ctx.decode(b))
            .unwrap_or_default();
        let issuer = ds
            .bytes(Tag(0x0010, 0x0021))
            .and_then(|b| ctx.decode(b))
            .unwrap_or_default();
        let qualified = format!("{issuer}\u{1}{pid}");
        ctx.patient_pseudo = pseudonym::format_id(
            &p.key,
            &p.recipe.pseudonyms.patient_id,
            "patient-id",
            &qualified,
            None,
        );
        ctx.date_offset = pseudonym::date_offset(
            &p.key,
            &issuer,
            &pid,
            p.recipe.dates.shift_min_days,
            p.recipe.dates.shift_max_days,
        );
        harvest(ds, &mut ctx);

        let mut decisions = Vec::new();
        let mut out = ds.clone();
        process(
            &mut ctx,
            &mut out,
            &TagPath::default(),
            Mode::Rules,
            &mut decisions,
        );
        self.write_markers(&mut out);

        let sop_instance = out
            .ascii(Tag(0x0008, 0x0018))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                if p.has(ProfileOption::RetainUids) {
                    old_sop.clone()
                } else {
                    pseudonym::uid(&p.key, &old_sop)
                }
            });
        // SOP Class and Instance UID are Type 1: an input that carried them
        // only in its File Meta gets them in the data set.
        if out.ascii(Tag(0x0008, 0x0018)).is_none_or(|s| s.is_empty()) {
            out.put(Element::bytes(
                Tag(0x0008, 0x0018),
                VR::UI,
                sop_instance.clone().into_bytes(),
            ));
        }
        if out.ascii(Tag(0x0008, 0x0016)).is_none_or(|s| s.is_empty()) {
            out.put(Element::bytes(
                Tag(0x0008, 0x0016),
                VR::UI,
                sop_class.clone().into_bytes(),
            ));
        }
        let comp = |tag: Tag, fallback: &str| {
            out.ascii(tag)
                .filter(|s| !s.is_empty())
                .map(|s| pseudonym::format_id(&p.key, "{hash:16}", "path", &s, None))
                .unwrap_or_else(|| fallback.to_string())
        };
        let path = [
            safe_component(&ctx.patient_pseudo),
            comp(Tag(0x0020, 0x000D), "NOSTUDY"),
            comp(Tag(0x0020, 0x000E), "NOSERIES"),
            pseudonym::format_id(&p.key, "{hash:20}", "path", &sop_instance, None),
        ];
        Ok(Deidentified {
            dataset: out,
            sop_class,
            sop_instance,
            path,
            review,
            decisions,
        })
    }

    /// Why an object must go to review rather than the output, if it must.
    fn review_reason(&self, file: &DicomFile, sop_class: &str) -> Option<String> {
        let p = self.policy;
        let ds = &file.dataset;
        let modality = ds.ascii(Tag(0x0008, 0x0060)).unwrap_or_default();
        let burned = ds
            .ascii(Tag(0x0028, 0x0301))
            .is_some_and(|v| v.eq_ignore_ascii_case("YES"));
        for t in REVIEW_TRIGGERS {
            let hit = match t.kind {
                TriggerKind::Modality => modality == t.value,
                TriggerKind::SopClassPrefix => sop_class.starts_with(t.value),
            };
            if hit && (t.always || p.recipe.review_burned_in) {
                return Some(format!(
                    "may carry burned-in text or a document: {}",
                    t.reason
                ));
            }
        }
        if p.recipe.review_burned_in {
            if burned {
                return Some(
                    "Burned In Annotation is YES; the pixel stage is not available".into(),
                );
            }
            if ds
                .elements
                .iter()
                .any(|e| e.tag.0 & 0xFF01 == 0x6000 && e.tag.0 <= 0x601E)
            {
                return Some(
                    "has an overlay plane, which may hold text or be embedded in pixel data".into(),
                );
            }
        }
        if p.has(ProfileOption::CleanRecognizableVisualFeatures)
            && matches!(modality.as_str(), "CT" | "MR" | "PT")
        {
            return Some(
                "clean-recognizable-visual-features was requested; the defacing stage is not available".into(),
            );
        }
        None
    }

    /// PatientIdentityRemoved, DeidentificationMethod (+ code sequence) and
    /// LongitudinalTemporalInformationModified.
    fn write_markers(&self, ds: &mut DataSet) {
        let p = self.policy;
        ds.put(Element::bytes(Tag(0x0012, 0x0062), VR::CS, b"YES".to_vec()));
        let recipe = match &p.recipe.version {
            Some(v) => format!("RECIPE {} {v}", p.recipe.name),
            None => format!("RECIPE {}", p.recipe.name),
        };
        let mut method = vec![
            format!("VEIL {}", env!("CARGO_PKG_VERSION")),
            "PS3.15 E.1-1 2024B BASIC PROFILE".to_string(),
        ];
        method.push(recipe.chars().take(64).collect());
        ds.put(Element::bytes(
            Tag(0x0012, 0x0063),
            VR::LO,
            method.join("\\").into_bytes(),
        ));
        let mut items = vec![code_item(
            veil_rules::generated::options::PROFILE_CODE.code,
            veil_rules::generated::options::PROFILE_CODE.meaning,
        )];
        for o in p.options.iter().filter(|o| !o.is_pixel_stage()) {
            let c = option_code(*o);
            items.push(code_item(c.code, c.meaning));
        }
        ds.put(Element {
            tag: Tag(0x0012, 0x0064),
            vr: VR::SQ,
            value: Value::Sequence(items),
        });
        let ltm: &[u8] = if p.has(ProfileOption::RetainLongModifiedDates) {
            b"MODIFIED"
        } else if p.has(ProfileOption::RetainLongFullDates) {
            b"UNMODIFIED"
        } else {
            b"REMOVED"
        };
        ds.put(Element::bytes(Tag(0x0028, 0x0303), VR::CS, ltm.to_vec()));
    }
}

fn code_item(code: &str, meaning: &str) -> DataSet {
    let mut d = DataSet::default();
    d.put(Element::bytes(
        Tag(0x0008, 0x0100),
        VR::SH,
        code.as_bytes().to_vec(),
    ));
    d.put(Element::bytes(Tag(0x0008, 0x0102), VR::SH, b"DCM".to_vec()));
    d.put(Element::bytes(
        Tag(0x0008, 0x0104),
        VR::LO,
        meaning.as_bytes().to_vec(),
    ));
    d
}

/// Keeps a path component to safe characters.
fn safe_component(s: &str) -> String {
    let c: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if c.is_empty() {
        "NOPATIENT".into()
    } else {
        c
    }
}

/// Walks one data set: decides every element, applies, recurses.
fn process(ctx: &mut Ctx, ds: &mut DataSet, path: &TagPath, mode: Mode, log: &mut Vec<Decision>) {
    let p = ctx.policy;
    // private creators of this data set: (group, block) -> creator
    let creators: HashMap<(u16, u8), String> = ds
        .elements
        .iter()
        .filter(|e| e.tag.is_private_creator())
        .filter_map(|e| match &e.value {
            Value::Bytes(b) => Some((
                (e.tag.0, e.tag.1 as u8),
                String::from_utf8_lossy(b)
                    .trim_matches([' ', '\0'])
                    .to_string(),
            )),
            _ => None,
        })
        .collect();
    let mut kept_blocks: BTreeSet<(u16, u8)> = BTreeSet::new();
    let mut out = Vec::with_capacity(ds.elements.len());
    for mut e in std::mem::take(&mut ds.elements) {
        let epath = path.child(e.tag, None);
        let creator = if e.tag.is_private() && e.tag.1 >= 0x1000 {
            creators
                .get(&(e.tag.0, (e.tag.1 >> 8) as u8))
                .map(String::as_str)
        } else {
            None
        };
        let (mut act, mut why) = p.decide(&epath, &e, creator, mode);
        // apply
        let keep = apply(ctx, &mut e, &mut act, &mut why, &epath, log);
        log.push(Decision {
            path: epath,
            keyword: keyword_of(e.tag).unwrap_or("").to_string(),
            vr: e.vr.to_string().to_string(),
            action: act,
            why,
        });
        if keep {
            if e.tag.is_private() && !e.tag.is_private_creator() {
                kept_blocks.insert((e.tag.0, (e.tag.1 >> 8) as u8));
            }
            out.push(e);
        }
    }
    // A private creator stays only while its block keeps something.
    out.retain(|e| !e.tag.is_private_creator() || kept_blocks.contains(&(e.tag.0, e.tag.1 as u8)));
    ds.elements = out;
}

/// Applies one decision. Returns whether the element stays. May downgrade
/// the action (e.g. text that cannot be decoded is removed, not cleaned).
fn apply(
    ctx: &mut Ctx,
    e: &mut Element,
    act: &mut Act,
    why: &mut String,
    epath: &TagPath,
    log: &mut Vec<Decision>,
) -> bool {
    let p = ctx.policy;
    let bytes = match &e.value {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    };
    let set = |e: &mut Element, v: Vec<u8>| e.value = Value::Bytes(v);
    match act.clone() {
        Act::Keep => true,
        Act::Remove => false,
        Act::Empty => {
            e.value = if e.vr == VR::SQ {
                Value::Sequence(Vec::new())
            } else {
                Value::Bytes(Vec::new())
            };
            true
        }
        Act::Dummy => {
            let old = bytes.unwrap_or_default();
            set(e, dummy_bytes(e.vr, &old));
            true
        }
        Act::Replace => {
            let v = p
                .override_for(epath, e.tag, None)
                .and_then(|o| o.value.clone())
                .unwrap_or_default();
            match ctx.encode(&v) {
                Some(b) => {
                    set(e, b);
                    true
                }
                None => {
                    *act = Act::Empty;
                    *why = format!("{why}; replacement not encodable, emptied");
                    set(e, Vec::new());
                    true
                }
            }
        }
        Act::Pseudonym(kind) => {
            let old = bytes
                .as_deref()
                .and_then(|b| ctx.decode(b))
                .unwrap_or_default();
            let v = match kind {
                "patient-id" => ctx.patient_pseudo.clone(),
                "patient-name" => pseudonym::format_id(
                    &p.key,
                    p.format_for(kind),
                    kind,
                    &old,
                    Some(&ctx.patient_pseudo),
                ),
                _ => pseudonym::format_id(&p.key, p.format_for(kind), kind, &old, None),
            };
            let max = match e.vr {
                VR::SH | VR::AE | VR::CS => 16,
                _ => 64,
            };
            let v: String = v.chars().take(max).collect();
            set(e, v.into_bytes());
            true
        }
        Act::Uid => {
            if let Some(b) = bytes {
                let s = String::from_utf8_lossy(&b);
                set(e, pseudonym::uid_list(&p.key, &s).into_bytes());
            }
            true
        }
        Act::ShiftDate => {
            let Some(b) = bytes else { return true };
            let s = String::from_utf8_lossy(&b)
                .trim_matches([' ', '\0'])
                .to_string();
            if s.is_empty() {
                return true;
            }
            let shifted = match e.vr {
                VR::DA => pseudonym::shift_da_value(&s, ctx.date_offset),
                _ => pseudonym::shift_dt_value(&s, ctx.date_offset),
            };
            match shifted {
                Some(v) => set(e, v.into_bytes()),
                None => {
                    *act = Act::Remove;
                    *why = format!("{why}; not a valid date, removed");
                    return false;
                }
            }
            true
        }
        Act::CapAge => {
            if let Some(b) = bytes {
                set(
                    e,
                    pseudonym::cap_age(&String::from_utf8_lossy(&b)).into_bytes(),
                );
            }
            true
        }
        Act::Clean => {
            let Some(b) = bytes else {
                *act = Act::Remove;
                return false;
            };
            let cleaned = ctx
                .decode(&b)
                .and_then(|t| ctx.cleaner().clean(&t))
                .and_then(|t| ctx.encode(&t));
            match cleaned {
                Some(v) => {
                    set(e, v);
                    true
                }
                None => {
                    *act = Act::Remove;
                    *why = format!("{why}; {UNKNOWN_CHARSET}, removed");
                    false
                }
            }
        }
        Act::Recurse(m) => {
            let mode = match m {
                "dummy" => Mode::Dummy,
                "clean" => Mode::Clean,
                _ => Mode::Rules,
            };
            if let Value::Sequence(items) = &mut e.value {
                for (n, item) in items.iter_mut().enumerate() {
                    let ipath = TagPath(
                        epath.0[..epath.0.len() - 1]
                            .iter()
                            .cloned()
                            .chain([(e.tag, Some(n))])
                            .collect(),
                    );
                    process(ctx, item, &ipath, mode, log);
                }
            }
            true
        }
    }
}
