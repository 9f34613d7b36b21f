//! Decide and apply. See the crate docs.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use veil_core::{Phi, ProfileOption, QuarantineReason, Tag, TagPath};
use veil_io::{DataSet, DicomFile, Element, Value};
use veil_rules::iod::{AttrType, Iod};
use veil_rules::{
    e1_1_row, generated::review_triggers::REVIEW_TRIGGERS, option_code, safe_private, strict_safe,
    AttributeOverride, DatePrecision, E11Row, OverrideAction, Recipe, RecipeError, SafeSource,
    Selector, TriggerKind,
};

use crate::clean::{sanitize_url, Cleaner, Harvest, NetHit, Patterns};
use crate::key::Key;
use crate::pseudonym;

/// A recipe, the options in force and the key, ready to run.
pub struct Policy {
    recipe: Recipe,
    options: BTreeSet<ProfileOption>,
    overrides: Vec<(Selector, AttributeOverride)>,
    safe_sources: Vec<SafeSource>,
    /// `[generalize] drop`, resolved.
    drops: Vec<Tag>,
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
        let overrides: Vec<(Selector, AttributeOverride)> = recipe
            .selectors(keyword_tag)?
            .into_iter()
            .map(|(s, a)| (s, a.clone()))
            .collect();
        // `shift` moves by the patient's offset, which only this option
        // draws; without it the override would silently keep real dates.
        if overrides
            .iter()
            .any(|(_, a)| a.action == OverrideAction::Shift)
            && !options.contains(&ProfileOption::RetainLongModifiedDates)
        {
            return Err(RecipeError::Invalid(
                "an attribute with action 'shift' needs the option retain-long-modified-dates"
                    .into(),
            )
            .into());
        }
        let safe_sources = recipe.safe_sources();
        let drops = recipe.generalize.drop_tags(keyword_tag)?;
        Ok(Policy {
            recipe,
            options,
            overrides,
            safe_sources,
            drops,
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

    /// Do times of day move with the dates? Under Modified Dates, unless
    /// the recipe says `[dates] keep_times`.
    fn times_move(&self) -> bool {
        self.has(ProfileOption::RetainLongModifiedDates) && !self.recipe.dates.keep_times
    }

    /// Does an option or the recipe keep this attribute on purpose? Its
    /// value is then not an identifying value to look for elsewhere, and
    /// the safety net does not scan it with patterns: the net never undoes
    /// an option (a retained device serial has the shape of an MRN).
    fn kept_on_purpose(&self, tag: Tag) -> bool {
        let by_option = e1_1_row(tag).is_some_and(|r| {
            let (code, why) = self.row_code(r);
            code == "K"
                && matches!(
                    why,
                    Why::Row {
                        option: Some(_),
                        ..
                    }
                )
        });
        by_option
            || self
                .overrides
                .iter()
                .any(|(s, a)| *s == Selector::Tag(tag) && a.action == OverrideAction::Keep)
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
    /// Coarsened by the recipe's `[generalize]` section (age band, date
    /// truncated to month or year) after the other actions.
    Generalize,
    /// A sequence kept, its items processed with the same rules; the mode
    /// says how free text inside that no row governs is treated.
    Recurse(Mode),
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

/// Review reason of CT, MR and PT objects when Clean Recognizable Visual
/// Features is requested: this crate cannot remove faces, so it fails
/// closed; the batch's defacing stage (veil-pipeline) replaces this reason
/// with its own outcome for the series it defaced.
pub const DEFACE_PENDING: &str =
    "clean-recognizable-visual-features was requested; the defacing stage is not available";

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
    /// The object's identifying values as read (names, IDs, dates, ...),
    /// for the pixel stage to look for in burned-in text; empty unless a
    /// pixel-stage option is in force.
    pub identifiers: Vec<Phi<String>>,
}

/// How text inside a sequence is treated when no row governs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// By the table, like the top level.
    Rules,
    /// Free text replaced (inside a sequence whose action is D).
    Dummy,
    /// Free text cleaned (inside a sequence whose action is C).
    Clean,
}

/// The rule behind a decision. Kept as data while de-identifying, so the
/// hot path formats nothing; `veil explain` turns it into words.
#[derive(Clone, Copy)]
enum Why<'p> {
    Override(&'p AttributeOverride),
    OverrideInside,
    PrivateCreator,
    SafePrivate(SafeSource, u8),
    NotSafePrivate(&'static E11Row),
    Row {
        row: &'static E11Row,
        code: &'static str,
        option: Option<ProfileOption>,
        fit: Fit,
    },
    Overlay,
    Curve,
    RetainedUid,
    RemappedUid,
    Strict,
    InDummy,
    InClean,
    ContentDate,
    KeptSequence,
    Kept,
}

/// How a removing or emptying E.1-1 code was fitted to the object's IOD.
#[derive(Clone, Copy)]
enum Fit {
    /// The code applied as the table gives it.
    AsIs,
    /// The IOD tables say the attribute's Type at this path; the code was
    /// resolved to `code` (D, Z or X) by it.
    Iod {
        iod: Iod,
        ty: AttrType,
        code: &'static str,
    },
    /// The Type is unknown (SOP class or path not in the IOD tables); X on
    /// a row marked "in Std. Comp. IOD" emptied instead.
    Emptied,
}

impl Why<'_> {
    fn describe(&self, p: &Policy) -> String {
        let row_text = |r: &E11Row| format!("E.1-1 {} {}", r.tag_text, r.name);
        match *self {
            Why::Override(o) => format!("recipe '{}' override ({})", p.recipe.name, o.describe()),
            Why::OverrideInside => {
                format!("recipe '{}' override inside this sequence", p.recipe.name)
            }
            Why::PrivateCreator => "private creator: kept while its block keeps an attribute".into(),
            Why::SafePrivate(src, el) => format!(
                "retain-safe-private: on the {} safe list (creator + xx{el:02X})",
                src.name()
            ),
            Why::NotSafePrivate(r) if p.has(ProfileOption::RetainSafePrivate) => {
                format!("{}: not on a safe list", row_text(r))
            }
            Why::NotSafePrivate(r) => format!("{}: X (Basic Profile)", row_text(r)),
            Why::Row {
                row,
                code,
                option,
                fit,
            } => {
                let base = match option {
                    Some(o) => format!("{}: {code} under {o}", row_text(row)),
                    None => format!("{}: {code} (Basic Profile)", row_text(row)),
                };
                match fit {
                    Fit::AsIs => base,
                    Fit::Emptied => format!(
                        "{base}; emptied rather than removed (Type unknown here; in a standard IOD, may be Type 2)"
                    ),
                    Fit::Iod { iod, ty, code } => {
                        let what = match code {
                            "D" => "dummy value",
                            "Z" => "emptied",
                            _ => "removed",
                        };
                        format!(
                            "{base}; Type {ty} in the {} IOD at this path: {code}, {what}",
                            iod.key()
                        )
                    }
                }
            }
            Why::Overlay => "E.1-1 (60XX,3000) Overlay Data: X; the overlay plane is removed as a whole (with its label and description)".into(),
            Why::Curve => "E.1-1 (50XX,XXXX) Curve Data: X".into(),
            Why::RetainedUid => "retain-uids: instance UID kept".into(),
            Why::RemappedUid => {
                "instance UID not in E.1-1: remapped so references stay consistent".into()
            }
            Why::Strict => "strict recipe: not on the strict safe list".into(),
            Why::InDummy => "inside a D sequence: free text replaced".into(),
            Why::InClean => "inside a C sequence: free text cleaned".into(),
            Why::ContentDate => "date inside structured content".into(),
            Why::KeptSequence => "not in E.1-1: kept, items processed".into(),
            Why::Kept => "not in E.1-1: kept (PS3.15 E.1.1)".into(),
        }
    }
}

/// Per-object state.
struct Ctx<'p> {
    policy: &'p Policy,
    /// The IOD of the object's SOP class, when the IOD tables know it.
    iod: Option<Iod>,
    charset: Option<SpecificCharacterSet>,
    date_offset: i32,
    /// The time-of-day part of the offset in minutes; 0 when times of day
    /// do not move (no Modified Dates, or `[dates] keep_times`).
    time_offset: i64,
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
        // not 0: a zero spacing, slope or width is itself invalid
        VR::DS | VR::IS => b"1",
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

/// The dummy for the values of a multi-valued number (IS, DS) that the
/// safety net replaces: the smallest positive integer that equals none of
/// the values it keeps. Pairs of numbers are often ratios or ranges
/// (Pixel Aspect Ratio `2\1`, a window, a minimum and maximum), and PS3.3
/// forbids some of them degenerate: a plain `1` next to a kept `1` would
/// make a 1:1 aspect ratio, which may not be encoded.
fn numeric_dummy(text: &str, hits: &[bool]) -> String {
    let kept: Vec<f64> = text
        .split('\\')
        .zip(hits)
        .filter(|(_, &h)| !h)
        .filter_map(|(v, _)| v.trim().parse().ok())
        .collect();
    (1u32..)
        .find(|&n| !kept.contains(&f64::from(n)))
        .map_or_else(|| "1".to_string(), |n| n.to_string())
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

impl Policy {
    /// Resolves the action code of a Table E.1-1 row under the options in
    /// force. Option columns override the Basic Profile; when several
    /// options fill a row, keeping beats cleaning beats the rest.
    fn row_code(&self, row: &'static E11Row) -> (&'static str, Why<'static>) {
        let rank = |c: &str| match c {
            "K" => 0,
            "C" => 1,
            _ => 2,
        };
        let best = row
            .options
            .iter()
            .filter(|(o, _)| self.has(*o))
            .min_by_key(|(_, c)| rank(c));
        let (code, option) = match best {
            Some(&(o, c)) => (c, Some(o)),
            None => (row.basic, None),
        };
        let why = Why::Row {
            row,
            code,
            option,
            fit: Fit::AsIs,
        };
        (code, why)
    }

    /// Maps an (already option-resolved) action code to an action for this
    /// element. `decide` has already fitted removing codes to the IOD where
    /// the Type is known; the compound codes that reach this point resolve
    /// so the output stays valid without the Type: X/Z -> Z, X/D and X/Z/D
    /// -> D, Z/D -> D, X/Z/U* -> U.
    fn code_act(&self, code: &str, tag: Tag, vr: VR) -> Act {
        // A sequence that may be X or Z keeps its items, processed by the
        // same rules: an empty sequence violates VM 1-n where the IOD
        // makes it Type 3, and nothing inside escapes the table.
        if code == "X/Z" && vr == VR::SQ {
            return Act::Recurse(Mode::Rules);
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
            ("D", VR::SQ) => Act::Recurse(Mode::Dummy),
            ("D", VR::UI) | ("U", VR::UI) => Act::Uid,
            ("D", VR::DA | VR::DT) if self.has(ProfileOption::RetainLongModifiedDates) => {
                Act::ShiftDate
            }
            ("D", VR::LO | VR::SH) => Act::Pseudonym("other-id"),
            ("D", _) => Act::Dummy,
            ("U", VR::SQ) => Act::Recurse(Mode::Rules),
            ("U", _) => Act::Dummy,
            ("K", VR::SQ) => Act::Recurse(Mode::Rules),
            ("K", _) => self.keep_act(vr),
            ("C", VR::SQ) => Act::Recurse(Mode::Clean),
            ("C", VR::DA | VR::DT) => self.date_act(Act::Remove),
            ("C", VR::UI) => Act::Uid,
            ("C", v) if is_text(v) => Act::Clean,
            ("C", _) => self.keep_act(vr),
            _ => Act::Remove,
        }
    }

    /// A date that the options may keep: shifted under Modified Dates,
    /// kept under Full Dates, otherwise `fallback`.
    fn date_act(&self, fallback: Act) -> Act {
        if self.has(ProfileOption::RetainLongModifiedDates) {
            Act::ShiftDate
        } else if self.has(ProfileOption::RetainLongFullDates) {
            Act::Keep
        } else {
            fallback
        }
    }

    /// What "keep" means for a VR: dates are still shifted under Modified
    /// Dates (every DA and DT, everywhere, and every TM unless the recipe
    /// keeps times of day), ages are capped.
    fn keep_act(&self, vr: VR) -> Act {
        match vr {
            VR::DA | VR::DT if self.has(ProfileOption::RetainLongModifiedDates) => Act::ShiftDate,
            VR::TM if self.times_move() => Act::ShiftDate,
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
                Selector::KeywordRegex(r) => keyword_of(tag).is_some_and(|k| r.is_match(k)),
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
    /// `iod` is the IOD of the object's SOP class, when known.
    fn decide(
        &self,
        path: &TagPath,
        e: &Element,
        creator: Option<&str>,
        mode: Mode,
        iod: Option<Iod>,
    ) -> (Act, Why<'_>) {
        let tag = e.tag;
        if let Some(o) = self.override_for(path, tag, creator) {
            let act = match o.action {
                OverrideAction::Keep if e.vr == VR::SQ => Act::Recurse(Mode::Rules),
                OverrideAction::Keep => Act::Keep,
                OverrideAction::Remove => Act::Remove,
                OverrideAction::Empty => Act::Empty,
                OverrideAction::Replace | OverrideAction::Add => Act::Replace,
                OverrideAction::Shift if matches!(e.vr, VR::DA | VR::DT | VR::TM) => Act::ShiftDate,
                OverrideAction::Shift => self.keep_act(e.vr),
                OverrideAction::Pseudonymize if e.vr == VR::UI => Act::Uid,
                OverrideAction::Pseudonymize => {
                    Act::Pseudonym(pseudonym_kind(tag).unwrap_or("other-id"))
                }
                OverrideAction::Clean if e.vr == VR::SQ => Act::Recurse(Mode::Clean),
                OverrideAction::Clean => Act::Clean,
            };
            return (act, Why::Override(o));
        }
        // A sequence that a recipe path goes through is kept and entered,
        // so the override below it can apply.
        if e.vr == VR::SQ && self.path_goes_through(path) {
            return (Act::Recurse(Mode::Rules), Why::OverrideInside);
        }
        if tag.is_private() {
            if tag.is_private_creator() {
                return (Act::Keep, Why::PrivateCreator);
            }
            let element = (tag.1 & 0xFF) as u8;
            let safe = creator
                .filter(|_| self.has(ProfileOption::RetainSafePrivate))
                .and_then(|c| safe_private(tag.0, c, element, &self.safe_sources));
            if let Some(s) = safe {
                let act = if e.vr == VR::SQ {
                    Act::Recurse(Mode::Rules)
                } else {
                    self.keep_act(e.vr)
                };
                return (act, Why::SafePrivate(s.source, element));
            }
            let row = e1_1_row(tag).expect("the odd-group row covers every private tag");
            return (Act::Remove, Why::NotSafePrivate(row));
        }
        // Overlay planes are removed whole with their data: leaving the
        // plane's attributes without (60xx,3000) would make it invalid.
        // Cleaning an overlay bitmap needs the pixel stage.
        if tag.0 & 0xFF01 == 0x6000 && tag.0 <= 0x601E {
            return (Act::Remove, Why::Overlay);
        }
        if tag.0 & 0xFF01 == 0x5000 && tag.0 <= 0x501E {
            return (Act::Remove, Why::Curve);
        }
        if let Some(row) = e1_1_row(tag) {
            let (code, why) = self.row_code(row);
            let Why::Row { option, .. } = why else {
                unreachable!("row_code gives a row reason")
            };
            // A removing or emptying code is fitted to the attribute's Type
            // at this path in the object's IOD (veil_rules::iod): a dummy
            // where a value is required, empty where it may be empty,
            // removed where it is optional.
            let fitted = iod
                .filter(|_| veil_rules::iod::removes(code))
                .and_then(|iod| {
                    let ty = iod.attribute_type(path.0.iter().map(|s| s.0))?;
                    Some((iod, ty, veil_rules::iod::resolve_code(code, ty)?))
                });
            if let Some((iod, ty, resolved)) = fitted {
                let fit = Fit::Iod {
                    iod,
                    ty,
                    code: resolved,
                };
                let why = Why::Row {
                    row,
                    code,
                    option,
                    fit,
                };
                return (self.code_act(resolved, tag, e.vr), why);
            }
            // Where the Type is unknown, Veil cannot know whether a removed
            // attribute is Type 2 or 2C where it stands; an empty value is
            // never PHI and keeps such an attribute present. So X on a row
            // that the table marks as used in a standard composite IOD
            // empties the value instead (sequences are still removed: an
            // empty one can break VM 1-n).
            if code == "X" && row.in_std_comp_iod == "Y" && e.vr != VR::SQ {
                let why = Why::Row {
                    row,
                    code,
                    option,
                    fit: Fit::Emptied,
                };
                return (Act::Empty, why);
            }
            return (self.code_act(code, tag, e.vr), why);
        }
        // Not in Table E.1-1.
        if e.vr == VR::UI && !is_class_uid(tag) {
            if self.has(ProfileOption::RetainUids) {
                return (Act::Keep, Why::RetainedUid);
            }
            return (Act::Uid, Why::RemappedUid);
        }
        let keyword = keyword_of(tag).unwrap_or("");
        if self.recipe.strict && !strict_safe(keyword) && !is_code_attribute(tag) {
            return (Act::Remove, Why::Strict);
        }
        match mode {
            Mode::Dummy if is_text(e.vr) && !is_code_attribute(tag) => {
                return (Act::Dummy, Why::InDummy)
            }
            Mode::Clean if is_text(e.vr) && !is_code_attribute(tag) => {
                return (Act::Clean, Why::InClean)
            }
            Mode::Dummy | Mode::Clean if matches!(e.vr, VR::DA | VR::DT) => {
                return (self.date_act(Act::Dummy), Why::ContentDate);
            }
            _ => {}
        }
        if e.vr == VR::SQ {
            return (Act::Recurse(mode), Why::KeptSequence);
        }
        (self.keep_act(e.vr), Why::Kept)
    }
}

/// What the recipe's `[generalize]` step did to an element (`veil explain`).
#[derive(Clone, Copy)]
enum Generalized {
    /// Age banded (or emptied when it is not a valid age).
    AgeBand(u16),
    /// A birth date emptied because ages are banded.
    BirthDate,
    /// Date truncated (or emptied when it is not a valid date).
    Dates(DatePrecision),
    /// Listed in `drop`: emptied, or removed when a sequence.
    Drop,
}

impl Generalized {
    fn describe(self, p: &Policy) -> String {
        let head = format!("recipe '{}' [generalize]", p.recipe.name);
        match self {
            Generalized::AgeBand(b) => {
                format!("{head} age_band_years = {b}: the lower bound of its {b}-year band (NNNY)")
            }
            Generalized::BirthDate => {
                format!("{head} age_band_years: birth date emptied, it would give the age back")
            }
            Generalized::Dates(d) => format!(
                "{head} dates = \"{}\": truncated to the first day of the {}",
                d.name(),
                d.name()
            ),
            Generalized::Drop => format!("{head} drop"),
        }
    }
}

impl Policy {
    /// The recipe's `[generalize]` step, on an element that stays after its
    /// normal action (so dates are already shifted). Updates `act` and says
    /// what it did; `None` when it leaves the element alone.
    fn generalize(&self, e: &mut Element, act: &mut Act) -> Option<Generalized> {
        let g = &self.recipe.generalize;
        if self.drops.contains(&e.tag) {
            if e.vr == VR::SQ {
                *act = Act::Remove;
            } else if !matches!(&e.value, Value::Bytes(b) if b.is_empty()) {
                e.value = Value::Bytes(Vec::new());
                *act = Act::Empty;
            } else {
                return None;
            }
            return Some(Generalized::Drop);
        }
        let Value::Bytes(bytes) = &e.value else {
            return None;
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_matches([' ', '\0']);
        if text.is_empty() {
            return None;
        }
        let (new, why) = match (e.vr, g.age_band_years, g.dates) {
            (VR::DA, Some(_), _) if e.tag == Tag(0x0010, 0x0030) => (None, Generalized::BirthDate),
            (VR::AS, Some(b), _) => (band_age(text, b), Generalized::AgeBand(b)),
            (VR::DA | VR::DT, _, Some(d)) => (
                truncate_dates(text, d, e.vr == VR::DT),
                Generalized::Dates(d),
            ),
            _ => return None,
        };
        // A value that cannot be read as an age or date is emptied: the
        // safe side of a generalization.
        *act = if new.is_some() {
            Act::Generalize
        } else {
            Act::Empty
        };
        e.value = Value::Bytes(new.unwrap_or_default().into_bytes());
        Some(why)
    }
}

/// `045Y` with a band of 10 gives `040Y`; ages in months, weeks or days
/// are under a year and give `000Y`. `None` if `v` is not an age string.
pub(crate) fn band_age(v: &str, band: u16) -> Option<String> {
    let v = v.trim();
    if v.len() != 4 || !v[..3].bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u16 = v[..3].parse().ok()?;
    let years = match &v[3..] {
        "Y" => n,
        "M" | "W" | "D" => 0,
        _ => return None,
    };
    let band = band.max(1);
    Some(format!("{:03}Y", years / band * band))
}

/// Truncates each value of a DA (or DT) to the first day of its month or
/// year: `20240517` gives `20240501` or `20240101`; a DT loses its time and
/// offset. A DT already coarser than the target is kept. `None` if a value
/// is not a date.
pub(crate) fn truncate_dates(v: &str, to: DatePrecision, dt: bool) -> Option<String> {
    let one = |x: &str| -> Option<String> {
        let x = x.trim();
        let digits = x.bytes().take_while(u8::is_ascii_digit).count();
        let need = if dt { 4 } else { 8 };
        if digits < need || (!dt && x.len() != 8) {
            return None;
        }
        Some(match to {
            DatePrecision::Month if digits >= 6 => format!("{}01", &x[..6]),
            DatePrecision::Month => x[..4].to_string(),
            DatePrecision::Year => format!("{}0101", &x[..4]),
        })
    };
    v.split('\\')
        .map(one)
        .collect::<Option<Vec<_>>>()
        .map(|vs| vs.join("\\"))
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
        self.text(b).map(Cow::into_owned)
    }

    /// A value as text, padding trimmed; `None` where this object's
    /// character set cannot decode it. Plain ASCII (no ISO 2022 escape) is
    /// the same text in every character set Veil decodes, so it is
    /// borrowed, not decoded: the safety net reads every value an object
    /// keeps, and most are short ASCII.
    fn text<'b>(&self, b: &'b [u8]) -> Option<Cow<'b, str>> {
        let cs = self.charset.as_ref()?;
        let pad = |c: char| c == ' ' || c == '\0';
        if b.iter().all(|&c| c.is_ascii() && c != 0x1B) {
            let s = std::str::from_utf8(b).ok()?;
            return Some(Cow::Borrowed(s.trim_matches(pad)));
        }
        let s = cs.decode(b).ok()?;
        Some(Cow::Owned(s.trim_matches(pad).to_string()))
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
/// every person name, the dates that the table does not keep, and the
/// values of attributes that the Basic Profile removes or replaces and that
/// are not descriptions (rows without a Clean Descriptors column), so that
/// free text can be cleaned of them and the safety net can find them
/// anywhere. A value that an option or the recipe keeps on purpose is not
/// harvested: the net must not undo the option elsewhere.
///
/// Nor is a site value (a row of the Retain Device or Institution Identity
/// option: an institution, a department, a station) that a `vendor` name
/// of the object (its Manufacturer or Manufacturer's Model Name, lower
/// case) contains: a vendor's demonstration or test site is named after
/// the vendor (institution `TOSHIBA`, manufacturer `TOSHIBA_MEC`), a
/// station after its model, and the vendor's name is public; as a token it
/// would take the equipment attributes with it.
fn harvest(ds: &DataSet, ctx: &mut Ctx, vendor: &[String]) {
    let p = ctx.policy;
    for e in &ds.elements {
        match &e.value {
            Value::Sequence(items) => items.iter().for_each(|i| harvest(i, ctx, vendor)),
            Value::Bytes(b) if !b.is_empty() => {
                if !matches!(
                    e.vr,
                    VR::PN
                        | VR::DA
                        | VR::LO
                        | VR::SH
                        | VR::LT
                        | VR::ST
                        | VR::UT
                        | VR::UC
                        | VR::DT
                        | VR::AE
                ) || e.tag.is_private()
                {
                    continue;
                }
                let row = e1_1_row(e.tag);
                let identifying = match e.vr {
                    VR::PN => true,
                    // a date the table keeps is no identifier of this
                    // object; the birth date always is
                    VR::DA => {
                        e.tag == Tag(0x0010, 0x0030) || row.is_some_and(|r| p.row_code(r).0 != "K")
                    }
                    _ => row.is_some_and(|r| {
                        r.basic != "K"
                            && p.row_code(r).0 != "K"
                            && r.option_code(ProfileOption::CleanDescriptors).is_none()
                            && r.option_code(ProfileOption::CleanStructuredContent)
                                .is_none()
                    }),
                };
                if !identifying || p.kept_on_purpose(e.tag) {
                    continue;
                }
                // text the character set cannot decode (ISO 2022 code
                // extensions) is harvested from its bytes: its ASCII parts
                // (IDs, dates, Latin names) are still found by the net
                let text = ctx.decode(b).unwrap_or_else(|| {
                    let raw: String = b.iter().map(|&c| c as char).collect();
                    raw.trim_matches([' ', '\0']).to_string()
                });
                // a site value: a row the Retain Device or Institution
                // Identity option keeps (station, institution, department)
                let site = row.is_some_and(|r| {
                    r.option_code(ProfileOption::RetainDeviceIdentity).is_some()
                        || r.option_code(ProfileOption::RetainInstitutionIdentity)
                            .is_some()
                });
                let lower = text.to_lowercase();
                if site
                    && e.vr != VR::PN
                    && !lower.is_empty()
                    && vendor.iter().any(|v| v.contains(&lower))
                {
                    continue;
                }
                ctx.harvest.add(e.vr.to_string(), &text);
            }
            _ => {}
        }
    }
}

/// For each DA of a data set whose paired TM (same keyword with "Time" for
/// "Date", from the data dictionary: StudyDate/StudyTime,
/// InstanceCreationDate/Time, ...) crosses midnight when shifted by
/// `minutes`: the extra days the date moves.
fn date_carries(ds: &DataSet, minutes: i64) -> Vec<(Tag, i32)> {
    let mut out = Vec::new();
    for e in ds.elements.iter().filter(|e| e.vr == VR::DA) {
        let Some(k) = keyword_of(e.tag).filter(|k| k.contains("Date")) else {
            continue;
        };
        let Some(pair) = keyword_tag(&k.replace("Date", "Time")) else {
            continue;
        };
        let Some(tm) = ds.get(pair).filter(|t| t.vr == VR::TM) else {
            continue;
        };
        if let Value::Bytes(b) = &tm.value {
            let c = pseudonym::tm_carry(&String::from_utf8_lossy(b), minutes);
            if c != 0 {
                out.push((e.tag, c));
            }
        }
    }
    out
}

/// Attributes whose value governs how the object is parsed or what it is:
/// any change makes it unreadable or another kind of object, so the safety
/// net leaves them alone (and the plant-everywhere test does not plant
/// there): Specific Character Set (how every text is decoded), an SR
/// content item's Value Type (which attribute holds its value), private
/// creators (which block an element belongs to), class UIDs (which IOD),
/// and the attributes that say how pixel, waveform or document bytes are
/// read.
fn is_structural(tag: Tag) -> bool {
    tag.is_private_creator()
        || keyword_of(tag).is_some_and(|k| k.ends_with("ClassUID") || k.ends_with("SyntaxUID"))
        || matches!(
            (tag.0, tag.1),
            (0x0008, 0x0005) // SpecificCharacterSet
                | (0x0040, 0xA040) // ValueType
                | (0x0028, 0x0004) // PhotometricInterpretation
                | (0x0028, 0x0008) // NumberOfFrames
                | (0x5400, 0x1006) // WaveformSampleInterpretation
                | (0x0042, 0x0012) // MIMETypeOfEncapsulatedDocument
        )
}

/// Free-text VRs: cleaned span by span.
fn is_net_text(vr: VR) -> bool {
    is_text(vr) || vr == VR::UR
}

/// Coded and numeric string VRs: cleaned value by value.
fn is_net_value(vr: VR) -> bool {
    matches!(
        vr,
        VR::CS | VR::AE | VR::IS | VR::DS | VR::AS | VR::DA | VR::TM | VR::DT | VR::UI
    )
}

/// How text inside an OB or UN value is encoded, when it is text.
#[derive(Clone, Copy)]
enum Embedded {
    Latin1,
    Utf16Le,
}

/// Reads an OB/UN value as text when it is mostly printable (at least 90%
/// of its characters), in one byte per character or in UTF-16LE; `None`
/// for binary data.
fn embedded_text(b: &[u8]) -> Option<(String, Embedded)> {
    let printable = |c: u8| (0x20..0x7F).contains(&c) || matches!(c, b'\t' | b'\r' | b'\n');
    let body = {
        let mut end = b.len();
        while end > 0 && matches!(b[end - 1], 0 | b' ') {
            end -= 1;
        }
        &b[..end]
    };
    if body.len() < 4 {
        return None;
    }
    let mostly = |n: usize, total: usize| n * 10 >= total * 9;
    if b.len() % 2 == 0 && b.chunks(2).all(|c| c[1] == 0) {
        let units: Vec<u16> = b
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let n = units
            .iter()
            .filter(|&&u| u < 0x80 && printable(u as u8))
            .count();
        if mostly(n, units.iter().filter(|&&u| u != 0).count().max(1)) {
            let s: String = char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect();
            return Some((s.trim_end_matches('\0').to_string(), Embedded::Utf16Le));
        }
    }
    if mostly(body.iter().filter(|&&c| printable(c)).count(), body.len()) {
        return Some((body.iter().map(|&c| c as char).collect(), Embedded::Latin1));
    }
    None
}

/// The maximum number of characters of a VR's value, where a cleaned value
/// could outgrow it (an age becomes `90+`).
fn max_chars(vr: VR) -> usize {
    match vr {
        VR::SH | VR::CS | VR::AE => 16,
        VR::LO | VR::PN => 64,
        _ => usize::MAX,
    }
}

/// The safety net, after the table: a value that stays as it was is
/// scanned for the object's own identifying values (always, whatever its
/// keyword: vocabulary never silences an own value) and, in free text that
/// is neither vocabulary (code attributes) nor kept on purpose by an option
/// or the recipe, for PHI patterns. A hit is cleaned where the VR can hold
/// the mask; a coded or numeric value is replaced by a dummy valid for its
/// VR; what cannot be read is removed. `veil explain` names the category.
fn net(
    ctx: &mut Ctx,
    e: &mut Element,
    act: &mut Act,
    note: &mut Option<&'static str>,
    why: Why,
) -> bool {
    let vr = e.vr;
    let Value::Bytes(bytes) = &e.value else {
        return true;
    };
    if bytes.is_empty() || is_structural(e.tag) {
        return true;
    }
    // Full Dates keeps every date and time on purpose: a study on the day
    // of birth (a newborn) must keep its date too
    if matches!(vr, VR::DA | VR::DT | VR::TM) && ctx.policy.has(ProfileOption::RetainLongFullDates)
    {
        return true;
    }
    let on_purpose = match why {
        Why::Row { code, option, .. } => code == "K" && option.is_some(),
        Why::SafePrivate(..) | Why::Override(_) => true,
        _ => false,
    };
    let patterns = if on_purpose || is_code_attribute(e.tag) {
        Patterns::None
    } else if matches!(vr, VR::LO | VR::SH | VR::PN | VR::UR) {
        Patterns::Distinct
    } else {
        Patterns::All
    };
    if is_net_text(vr) {
        let Some(text) = ctx.text(bytes) else {
            // text this object's character set cannot decode: its ASCII
            // bytes are still searched; a hit removes the value
            let raw: String = bytes.iter().map(|&c| c as char).collect();
            if let Some(f) = ctx.cleaner().net_text(&raw, Patterns::None) {
                // a dummy (ASCII, valid in every character set Veil
                // decodes) rather than removal: the attribute may be Type 1
                *act = Act::Dummy;
                *note = Some(f.hit.note());
                e.value = Value::Bytes(dummy_bytes(vr, &[]));
                return true;
            }
            return true;
        };
        let url = (vr == VR::UR).then(|| sanitize_url(&text));
        let scanned = url.as_deref().unwrap_or(&text);
        let fix = ctx.cleaner().net_text(scanned, patterns);
        let (new, hit) = match (fix, url) {
            (Some(f), _) => (f.text, f.hit),
            (None, Some(u)) if u != text => (Some(u), NetHit::Pattern(crate::clean::Pattern::Url)),
            _ => return true,
        };
        *note = Some(hit.note());
        let encoded = new
            .map(|t| t.chars().take(max_chars(vr)).collect::<String>())
            .and_then(|t| ctx.encode(&t));
        return match encoded {
            Some(v) => {
                *act = Act::Clean;
                e.value = Value::Bytes(v);
                true
            }
            None => {
                *act = Act::Dummy;
                e.value = Value::Bytes(dummy_bytes(vr, &[]));
                true
            }
        };
    }
    if is_net_value(vr) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_matches([' ', '\0']);
        let exact = !matches!(vr, VR::CS | VR::AE);
        let Some((hits, hit)) = ctx.cleaner().net_values(text, exact) else {
            return true;
        };
        let p = ctx.policy;
        let dummy = if matches!(vr, VR::IS | VR::DS) {
            numeric_dummy(text, &hits)
        } else {
            String::from_utf8(dummy_bytes(vr, &[])).unwrap_or_default()
        };
        let new: Vec<String> = text
            .split('\\')
            .zip(hits)
            .map(|(v, h)| match (h, vr) {
                (false, _) => v.to_string(),
                (true, VR::UI) => pseudonym::uid(&p.key, v.trim()),
                (true, _) => dummy.clone(),
            })
            .collect();
        *act = Act::Dummy;
        *note = Some(hit.note());
        e.value = Value::Bytes(new.join("\\").into_bytes());
        return true;
    }
    if matches!(vr, VR::OB | VR::UN) {
        let Some((text, enc)) = embedded_text(bytes) else {
            return true;
        };
        let Some(f) = ctx.cleaner().net_text(&text, patterns) else {
            return true;
        };
        *note = Some(f.hit.note());
        let Some(t) = f.text else {
            *act = Act::Remove;
            return false;
        };
        let mut v: Vec<u8> = match enc {
            Embedded::Latin1 => t.chars().map(|c| c as u32 as u8).collect(),
            Embedded::Utf16Le => t.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        };
        if v.len() % 2 == 1 {
            v.push(0);
        }
        *act = Act::Clean;
        e.value = Value::Bytes(v);
    }
    true
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
        self.deidentify(file, None)
    }

    /// Like [`Deidentifier::run`], and records every decision with its
    /// reason (`veil explain`).
    pub fn explain(&self, file: &DicomFile) -> Result<Deidentified, QuarantineReason> {
        self.deidentify(file, Some(Vec::new()))
    }

    fn deidentify(
        &self,
        file: &DicomFile,
        mut log: Option<Vec<Decision>>,
    ) -> Result<Deidentified, QuarantineReason> {
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
            iod: Iod::for_sop_class(&sop_class),
            charset,
            date_offset: 0,
            time_offset: 0,
            patient_pseudo: String::new(),
            harvest: Harvest::default(),
            cleaner: None,
        };
        // The patient's key must never collapse to "" for a value that
        // exists: text in a set dicom-rs cannot decode (ISO 2022 escapes)
        // is keyed by its bytes instead, or every such patient would share
        // one pseudonym and one date offset (found by `veil verify`).
        let key_text = |tag: Tag| {
            ds.bytes(tag)
                .map(|b| {
                    ctx.decode(b).unwrap_or_else(|| {
                        let raw: String = b.iter().map(|&c| c as char).collect();
                        raw.trim_matches(|c| c == ' ' || c == '\0').to_string()
                    })
                })
                .unwrap_or_default()
        };
        let pid = key_text(Tag(0x0010, 0x0020));
        let issuer = key_text(Tag(0x0010, 0x0021));
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
        if p.times_move() {
            ctx.time_offset = pseudonym::time_offset(&p.key, &issuer, &pid);
        }
        let vendor: Vec<String> = [Tag(0x0008, 0x0070), Tag(0x0008, 0x1090)]
            .into_iter()
            .filter_map(|t| ds.get(t))
            .filter_map(|e| match &e.value {
                Value::Bytes(b) => ctx.decode(b),
                _ => None,
            })
            .filter(|v| !v.is_empty())
            .map(|v| v.to_lowercase())
            .collect();
        harvest(ds, &mut ctx, &vendor);
        // AE titles of the File Meta name the sending and receiving
        // devices. The writer builds a new File Meta without them; the
        // same titles typed into the data set are found by the net.
        if let Some(meta) = &file.meta {
            for t in [0x0016, 0x0017, 0x0018] {
                if let Some(v) = meta
                    .elements
                    .bytes(Tag(0x0002, t))
                    .and_then(|b| ctx.decode(b))
                {
                    ctx.harvest.add("AE", &v);
                }
            }
        }

        let mut out = ds.clone();
        process(
            &mut ctx,
            &mut out,
            &mut TagPath::default(),
            Mode::Rules,
            log.as_mut(),
        );
        self.write_additions(&mut out, &ctx);
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
            decisions: log.unwrap_or_default(),
            identifiers: if p.has(ProfileOption::CleanPixelData) {
                ctx.harvest.values().to_vec()
            } else {
                Vec::new()
            },
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
            // with clean-pixel-data the pixel stage reads such images; it
            // sends them to review itself when it cannot clean them
            let cleaned = p.has(ProfileOption::CleanPixelData) && !t.always;
            if hit && !cleaned && (t.always || p.recipe.review_burned_in) {
                return Some(format!(
                    "may carry burned-in text or a document: {}",
                    t.reason
                ));
            }
        }
        if p.recipe.review_burned_in {
            if burned && !p.has(ProfileOption::CleanPixelData) {
                return Some(
                    "Burned In Annotation is YES; the pixel stage is not available".into(),
                );
            }
            if !p.has(ProfileOption::CleanGraphics)
                && ds
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
            return Some(DEFACE_PENDING.into());
        }
        None
    }

    /// Creates the top-level attributes that an `add` override names and
    /// the object lacks (present ones were replaced in place). The VR is
    /// the dictionary's; a value the character set cannot encode, or an
    /// attribute whose VR is not a string VR, is not created.
    fn write_additions(&self, ds: &mut DataSet, ctx: &Ctx) {
        for (s, a) in &self.policy.overrides {
            let (Selector::Tag(t), OverrideAction::Add) = (s, a.action) else {
                continue;
            };
            if ds.get(*t).is_some() {
                continue;
            }
            let Some(vr) = StandardDataDictionary
                .by_tag(dicom_core::Tag(t.0, t.1))
                .and_then(|e| match e.vr {
                    dicom_core::dictionary::VirtualVr::Exact(vr) => Some(vr),
                    _ => None,
                })
                .filter(|vr| {
                    is_text(*vr)
                        || matches!(
                            vr,
                            VR::AE
                                | VR::AS
                                | VR::CS
                                | VR::DA
                                | VR::DS
                                | VR::DT
                                | VR::IS
                                | VR::TM
                                | VR::UI
                                | VR::UR
                        )
                })
            else {
                continue;
            };
            if let Some(mut v) = ctx.encode(a.value.as_deref().unwrap_or("")) {
                if v.len() % 2 == 1 {
                    v.push(if vr == VR::UI { 0 } else { b' ' });
                }
                ds.put(Element::bytes(*t, vr, v));
            }
        }
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
        let g = &p.recipe.generalize;
        if !g.is_empty() {
            let mut parts = Vec::new();
            if let Some(b) = g.age_band_years {
                parts.push(format!("AGE {b}Y BANDS"));
            }
            if let Some(d) = g.dates {
                parts.push(format!("DATES TO {}", d.name().to_uppercase()));
            }
            if !g.drop.is_empty() {
                parts.push(format!("{} DROPPED", g.drop.len()));
            }
            method.push(format!("GENERALIZED {}", parts.join("; ")));
        }
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

/// Records that a pixel stage ran on an object: adds the option's code to
/// De-identification Method Code Sequence (0012,0064) and, for Clean Pixel
/// Data, sets Burned In Annotation (0028,0301) to NO, which is true only
/// now. Called by the pipeline after the stage, never before.
pub fn mark_pixel_stage(ds: &mut DataSet, option: ProfileOption) {
    let c = option_code(option);
    ds.add_code_item(Tag(0x0012, 0x0064), c.code, "DCM", c.meaning);
    if option == ProfileOption::CleanPixelData {
        ds.put(Element::bytes(Tag(0x0028, 0x0301), VR::CS, b"NO".to_vec()));
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

/// Walks one data set: decides every element, applies, recurses. `path`
/// is a stack of the enclosing sequences (pushed and popped, not copied);
/// decisions are recorded only when `log` is given.
fn process(
    ctx: &mut Ctx,
    ds: &mut DataSet,
    path: &mut TagPath,
    mode: Mode,
    mut log: Option<&mut Vec<Decision>>,
) {
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
    // A date whose paired time crosses midnight when shifted moves one
    // more day, so that the pair moves as one instant.
    let carries = if ctx.time_offset != 0 {
        date_carries(ds, ctx.time_offset)
    } else {
        Vec::new()
    };
    let mut kept_blocks: BTreeSet<(u16, u8)> = BTreeSet::new();
    let mut out = Vec::with_capacity(ds.elements.len());
    for mut e in std::mem::take(&mut ds.elements) {
        path.0.push((e.tag, None));
        let creator = if e.tag.is_private() && e.tag.1 >= 0x1000 {
            creators
                .get(&(e.tag.0, (e.tag.1 >> 8) as u8))
                .map(String::as_str)
        } else {
            None
        };
        let (mut act, why) = p.decide(path, &e, creator, mode, ctx.iod);
        let mut note = None;
        let mut keep = match act {
            Act::Recurse(inner) => {
                if let Value::Sequence(items) = &mut e.value {
                    for (n, item) in items.iter_mut().enumerate() {
                        if let Some(last) = path.0.last_mut() {
                            last.1 = Some(n);
                        }
                        process(ctx, item, path, inner, log.as_deref_mut());
                    }
                    if let Some(last) = path.0.last_mut() {
                        last.1 = None;
                    }
                }
                true
            }
            _ => {
                let carry = carries.iter().find(|(t, _)| *t == e.tag).map_or(0, |c| c.1);
                apply(ctx, &mut e, &mut act, &mut note, why, carry)
            }
        };
        // [generalize] acts last, on what the other actions kept.
        let mut generalized = None;
        if keep && !p.recipe.generalize.is_empty() {
            generalized = p.generalize(&mut e, &mut act);
            keep = act != Act::Remove;
        }
        if let Some(log) = log.as_deref_mut() {
            let mut why = why.describe(p);
            if let Some(n) = note {
                why = format!("{why}; {n}");
            }
            if let Some(g) = generalized {
                why = format!("{}; before that: {why}", g.describe(p));
            }
            log.push(Decision {
                path: path.clone(),
                keyword: keyword_of(e.tag).unwrap_or("").to_string(),
                vr: e.vr.to_string().to_string(),
                action: act,
                why,
            });
        }
        path.0.pop();
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

/// Applies one (non-sequence) decision in place. Returns whether the
/// element stays. May downgrade the action, saying why in `note` (text that
/// cannot be decoded is removed, not cleaned). A value kept as it was then
/// goes through the safety net ([`net`]). `carry` is the extra day a date
/// moves when its paired time crosses midnight.
fn apply(
    ctx: &mut Ctx,
    e: &mut Element,
    act: &mut Act,
    note: &mut Option<&'static str>,
    why: Why,
    carry: i32,
) -> bool {
    let p = ctx.policy;
    let vr = e.vr;
    let bytes: &[u8] = match &e.value {
        Value::Bytes(b) => b,
        _ => &[],
    };
    let new: Vec<u8> = match act.clone() {
        // Generalize comes only after apply, from the [generalize] step
        Act::Recurse(_) | Act::Generalize => return true,
        Act::Keep => {
            if vr == VR::TM
                && p.has(ProfileOption::RetainLongModifiedDates)
                && p.recipe.dates.keep_times
            {
                *note = Some("[dates] keep_times: time of day kept, dates move by whole days");
            }
            return net(ctx, e, act, note, why);
        }
        Act::Remove => return false,
        Act::Empty => {
            if vr == VR::SQ {
                e.value = Value::Sequence(Vec::new());
                return true;
            }
            Vec::new()
        }
        Act::Dummy => dummy_bytes(vr, bytes),
        Act::Replace => {
            let v = match why {
                Why::Override(o) => o.value.as_deref().unwrap_or(""),
                _ => "",
            };
            ctx.encode(v).unwrap_or_else(|| {
                *act = Act::Empty;
                *note = Some("replacement not encodable, emptied");
                Vec::new()
            })
        }
        Act::Pseudonym(kind) => {
            let old = ctx.decode(bytes).unwrap_or_default();
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
            let max = match vr {
                VR::SH | VR::AE | VR::CS => 16,
                _ => 64,
            };
            v.chars().take(max).collect::<String>().into_bytes()
        }
        Act::Uid => pseudonym::uid_list(&p.key, &String::from_utf8_lossy(bytes)).into_bytes(),
        Act::ShiftDate => {
            let s = String::from_utf8_lossy(bytes);
            let s = s.trim_matches([' ', '\0']);
            if s.is_empty() {
                return true;
            }
            let shifted = match vr {
                VR::DA => pseudonym::shift_da_value(s, ctx.date_offset + carry),
                VR::TM => pseudonym::shift_tm_value(s, ctx.time_offset),
                _ => pseudonym::shift_dt_value(s, ctx.date_offset, ctx.time_offset),
            };
            *note = Some(if ctx.time_offset != 0 {
                "dates and times of day move together by the patient's offset (days and minutes)"
            } else {
                "[dates] keep_times: whole-day offset, times of day kept"
            });
            match shifted {
                Some(v) => v.into_bytes(),
                None => {
                    *act = Act::Remove;
                    *note = Some("not a valid date, removed");
                    return false;
                }
            }
        }
        Act::CapAge => {
            e.value =
                Value::Bytes(pseudonym::cap_age(&String::from_utf8_lossy(bytes)).into_bytes());
            return net(ctx, e, act, note, why);
        }
        Act::Clean => {
            let cleaned = ctx
                .decode(bytes)
                .and_then(|t| ctx.cleaner().clean(&t))
                .and_then(|t| ctx.encode(&t));
            match cleaned {
                Some(v) => v,
                None => {
                    *act = Act::Remove;
                    *note = Some("character set not decodable, removed");
                    return false;
                }
            }
        }
    };
    e.value = Value::Bytes(new);
    true
}
