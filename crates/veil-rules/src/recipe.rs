//! The TOML recipe: which options to apply for a recipient, and per-attribute
//! overrides. Documented with examples in `docs/recipes.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use veil_core::{ProfileOption, Tag};

use crate::regions::{RegionRules, RuleError};
use crate::SafeSource;

/// Errors while loading a recipe. They name the recipe's own keys, never
/// DICOM values.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file could not be read.
    #[error("cannot read recipe: {0}")]
    Io(#[from] std::io::Error),
    /// TOML syntax or schema error.
    #[error("invalid recipe: {0}")]
    Toml(#[from] toml::de::Error),
    /// A semantic error (unknown keyword, bad selector, ...).
    #[error("invalid recipe: {0}")]
    Invalid(String),
    /// A region rule file (or inline region) that does not parse.
    #[error("invalid region rules: {0}")]
    Regions(#[from] RuleError),
}

/// A de-identification recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Free name, recorded in reports and DeidentificationMethod.
    #[serde(default = "default_name")]
    pub name: String,
    /// Recipe version, recorded with the name.
    #[serde(default)]
    pub version: Option<String>,
    /// Profile options to apply.
    #[serde(default)]
    pub options: Vec<ProfileOption>,
    /// Remove every standard attribute that is neither in Table E.1-1 (with a
    /// keeping action) nor on the strict safe list.
    #[serde(default)]
    pub strict: bool,
    /// Route objects that may carry burned-in text to review (default true).
    #[serde(default = "yes")]
    pub review_burned_in: bool,
    /// Which safe-private lists Retain Safe Private uses.
    #[serde(default = "default_sources")]
    pub safe_private_sources: Vec<String>,
    /// Pseudonym formats.
    #[serde(default)]
    pub pseudonyms: PseudonymFormats,
    /// Date shifting.
    #[serde(default)]
    pub dates: DateSettings,
    /// Per-attribute overrides, applied before the table.
    #[serde(default, rename = "attribute")]
    pub attributes: Vec<AttributeOverride>,
    /// Generalization of quasi-identifiers, applied after every other action.
    #[serde(default)]
    pub generalize: Generalize,
    /// The pixel stage (`[pixels]`): region rules and text redaction.
    /// Clean Pixel Data and Clean Graphics themselves are chosen in
    /// `options` like every other PS3.15 option.
    #[serde(default)]
    pub pixels: PixelSettings,
}

/// The `[pixels]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PixelSettings {
    /// Use the built-in CTP and deid region libraries (default true).
    pub builtin_region_rules: bool,
    /// Rule files, CTP scripts or deid recipes (format from the name or the
    /// text), relative to the recipe file.
    pub region_rules: Vec<String>,
    /// Inline rules, `[[pixels.region]]`.
    #[serde(rename = "region")]
    pub regions: Vec<InlineRegion>,
    /// When every word OCR finds is blanked, not only identifying ones.
    pub redact_all_text: RedactAllText,
    /// Whether a lossy syntax may be re-encoded lossily after cleaning
    /// (otherwise the output is transcoded to a lossless syntax).
    pub allow_lossy_recompression: bool,
    /// The rules the recipe adds (files, then inline), parsed when the
    /// recipe is loaded so that a bad rule stops the run before it starts.
    #[serde(skip)]
    pub rules: RegionRules,
}

impl Default for PixelSettings {
    fn default() -> Self {
        PixelSettings {
            builtin_region_rules: true,
            region_rules: Vec::new(),
            regions: Vec::new(),
            redact_all_text: RedactAllText::Auto,
            allow_lossy_recompression: false,
            rules: RegionRules::default(),
        }
    }
}

/// `redact_all_text`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedactAllText {
    /// For screen-capture-like objects (US, SC, XA, ...), the pixel stage's
    /// default.
    #[default]
    Auto,
    /// For every object.
    Always,
    /// Never: only words matching identifying values or patterns.
    Never,
}

/// An inline region rule: every `when` entry must hold, then the `rects`
/// are blanked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineRegion {
    /// Shown in reports (default `region N`).
    #[serde(default)]
    pub label: Option<String>,
    /// Keyword or tag -> `"text"` (equals), `"~text"` (contains, ignoring
    /// case), `"re:regex"` (the whole value matches) or a number (equals).
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    /// `[x, y, w, h]` rectangles; negative x/y count from the right/bottom.
    pub rects: Vec<[i64; 4]>,
}

fn default_name() -> String {
    "veil-default".into()
}
fn yes() -> bool {
    true
}
fn default_sources() -> Vec<String> {
    vec!["dicom-e.3.10-1".into(), "ctp-k".into()]
}

impl Default for Recipe {
    fn default() -> Self {
        toml::from_str("").expect("empty recipe is valid")
    }
}

/// Formats of identifier pseudonyms. `{hash:N}` is N characters of the keyed
/// hash in upper-case base 32 (digits 2-7, letters A-Z); other text is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PseudonymFormats {
    /// PatientID and other patient identifiers.
    pub patient_id: String,
    /// PatientName; `{patient_id}` inserts the PatientID pseudonym.
    pub patient_name: String,
    /// AccessionNumber.
    pub accession_number: String,
    /// StudyID.
    pub study_id: String,
    /// Any other identifier that gets a dummy value of VR LO/SH.
    pub other_id: String,
}

impl Default for PseudonymFormats {
    fn default() -> Self {
        PseudonymFormats {
            patient_id: "VP{hash:12}".into(),
            patient_name: "ANON^{patient_id}".into(),
            accession_number: "VA{hash:12}".into(),
            study_id: "VS{hash:8}".into(),
            other_id: "VI{hash:10}".into(),
        }
    }
}

/// Date shifting for Retain Longitudinal Temporal Information with Modified
/// Dates: one offset per patient, drawn from the key and the patient.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DateSettings {
    /// Smallest shift in days (inclusive).
    pub shift_min_days: i32,
    /// Largest shift in days (inclusive).
    pub shift_max_days: i32,
    /// Keep times of day (TM, and the time part of DT) unchanged under
    /// Retain Longitudinal Temporal Information with Modified Dates; the
    /// offset is then whole days. Off by default: an exact time of day,
    /// joined with a scheduling system, re-identifies as well as a date, so
    /// the offset normally has a time-of-day component too.
    pub keep_times: bool,
}

impl Default for DateSettings {
    fn default() -> Self {
        DateSettings {
            shift_min_days: -3650,
            shift_max_days: -365,
            keep_times: false,
        }
    }
}

/// The `[generalize]` section: coarsens quasi-identifiers (what `veil risk`
/// suggests) after the table, the options and the overrides have acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Generalize {
    /// Every AS value (PatientAge) becomes the lower bound of its band of
    /// this many years: `045Y` with 10 gives `040Y` (40 to 49). A retained
    /// PatientBirthDate is emptied, since it would give the age back.
    pub age_band_years: Option<u16>,
    /// Every DA and DT value is truncated to the first day of its month or
    /// year, after any shift.
    pub dates: Option<DatePrecision>,
    /// Attributes (keywords or tags) emptied wherever they remain, at any
    /// depth (a sequence is removed).
    pub drop: Vec<String>,
}

impl Generalize {
    /// Whether the section asks for anything.
    pub fn is_empty(&self) -> bool {
        self.age_band_years.is_none() && self.dates.is_none() && self.drop.is_empty()
    }

    /// Resolves `drop` to tags, with `keyword` mapping a standard keyword to
    /// its tag.
    pub fn drop_tags(
        &self,
        keyword: impl Fn(&str) -> Option<Tag>,
    ) -> Result<Vec<Tag>, RecipeError> {
        self.drop
            .iter()
            .map(|s| {
                let s = s.trim();
                Tag::parse(s).or_else(|| keyword(s)).ok_or_else(|| {
                    RecipeError::Invalid(format!("unknown attribute '{s}' in generalize.drop"))
                })
            })
            .collect()
    }
}

/// How far `[generalize] dates` truncates dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatePrecision {
    /// `YYYYMM01`.
    Month,
    /// `YYYY0101`.
    Year,
}

impl DatePrecision {
    /// The name used in recipes.
    pub fn name(self) -> &'static str {
        match self {
            DatePrecision::Month => "month",
            DatePrecision::Year => "year",
        }
    }
}

/// What an override does to the attributes it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverrideAction {
    /// Keep as is.
    Keep,
    /// Remove.
    Remove,
    /// Replace with a zero-length value.
    Empty,
    /// Replace with `value`.
    Replace,
    /// Replace with a keyed pseudonym (UIDs get a keyed UID).
    Pseudonymize,
    /// Clean free text.
    Clean,
    /// Set to `value`, creating the attribute at the top level when the
    /// object lacks it (CTP's `@always()`, deid's `ADD`): a migrated
    /// recipe that stamps a project name must stamp every object.
    Add,
    /// Move a date, time or date-time by the patient's keyed offset (CTP's
    /// `@incrementdate`, deid's `JITTER`), even where the table would
    /// remove it. Needs `retain-long-modified-dates`, which gives the
    /// offset.
    Shift,
}

impl OverrideAction {
    /// The name used in recipes.
    pub fn name(self) -> &'static str {
        match self {
            OverrideAction::Keep => "keep",
            OverrideAction::Remove => "remove",
            OverrideAction::Empty => "empty",
            OverrideAction::Replace => "replace",
            OverrideAction::Pseudonymize => "pseudonymize",
            OverrideAction::Clean => "clean",
            OverrideAction::Add => "add",
            OverrideAction::Shift => "shift",
        }
    }
}

/// An override as written in the recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeOverride {
    /// Standard keyword, e.g. `StudyDescription`.
    pub keyword: Option<String>,
    /// Tag, `(0008,1030)` or `00081030`.
    pub tag: Option<String>,
    /// Private creator (with `group` and `element`).
    pub creator: Option<String>,
    /// Odd group of a private attribute, hex.
    pub group: Option<String>,
    /// Block-relative element of a private attribute, hex (`xx10` or `10`).
    pub element: Option<String>,
    /// Path through sequences: `(0040,0275)/(0040,0007)` or keywords
    /// `RequestAttributesSequence/ScheduledProcedureStepDescription`.
    pub path: Option<String>,
    /// A regular expression that the whole standard keyword must match, at
    /// any depth: deid's `endswith:Date` is `keyword_regex = ".*Date"`.
    /// Imported recipes need it because deid expands such patterns over
    /// the attributes each object has, not over a fixed list.
    pub keyword_regex: Option<String>,
    /// The action.
    pub action: OverrideAction,
    /// The value for `replace`.
    pub value: Option<String>,
}

/// A resolved selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// This tag at any depth.
    Tag(Tag),
    /// A private attribute by creator and block-relative element.
    Private {
        /// odd group
        group: u16,
        /// creator string
        creator: String,
        /// low byte of the element
        element: u8,
    },
    /// Exactly this chain of tags from the top level.
    Path(Vec<Tag>),
    /// Every standard attribute whose keyword matches, at any depth.
    KeywordRegex(KeywordRegex),
}

/// A compiled `keyword_regex`, anchored to the whole keyword. Compared by
/// its source text.
#[derive(Debug, Clone)]
pub struct KeywordRegex {
    source: String,
    re: regex::Regex,
}

impl KeywordRegex {
    /// Compiles `source` so that it must match the whole keyword.
    pub fn new(source: &str) -> Result<KeywordRegex, RecipeError> {
        let re = regex::Regex::new(&format!("^(?:{source})$"))
            .map_err(|e| RecipeError::Invalid(format!("invalid keyword_regex '{source}': {e}")))?;
        Ok(KeywordRegex {
            source: source.to_string(),
            re,
        })
    }

    /// Whether a keyword matches.
    pub fn is_match(&self, keyword: &str) -> bool {
        self.re.is_match(keyword)
    }

    /// The expression as written in the recipe.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for KeywordRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for KeywordRegex {}

impl Recipe {
    /// Loads a recipe file. `keyword` resolves names to tags (so this crate
    /// needs no DICOM dictionary).
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path)?;
        Self::parse_in(&text, path.parent())
    }

    /// Parses recipe text; region rule files are relative to the current
    /// directory.
    pub fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Self::parse_in(text, None)
    }

    /// Parses recipe text whose region rule files are relative to `base`.
    pub fn parse_in(text: &str, base: Option<&Path>) -> Result<Recipe, RecipeError> {
        let mut r: Recipe = toml::from_str(text)?;
        r.pixels.rules = r.pixels.load_rules(&r.name, base)?;
        for s in &r.safe_private_sources {
            if SafeSource::from_name(s).is_none() {
                return Err(RecipeError::Invalid(format!(
                    "unknown safe_private_sources entry '{s}' (known: dicom-e.3.10-1, ctp-k)"
                )));
            }
        }
        if r.dates.shift_min_days > r.dates.shift_max_days {
            return Err(RecipeError::Invalid(
                "dates.shift_min_days is larger than dates.shift_max_days".into(),
            ));
        }
        if r.options.contains(&ProfileOption::RetainLongFullDates)
            && r.options.contains(&ProfileOption::RetainLongModifiedDates)
        {
            return Err(RecipeError::Invalid(
                "retain-long-full-dates and retain-long-modified-dates exclude each other".into(),
            ));
        }
        if let Some(b) = r.generalize.age_band_years {
            if !(2..=100).contains(&b) {
                return Err(RecipeError::Invalid(
                    "generalize.age_band_years must be between 2 and 100".into(),
                ));
            }
        }
        for a in &r.attributes {
            if matches!(a.action, OverrideAction::Replace | OverrideAction::Add)
                && a.value.is_none()
            {
                return Err(RecipeError::Invalid(
                    "an attribute with action 'replace' or 'add' needs a 'value'".into(),
                ));
            }
            // Only a standard attribute named at the top level can be
            // created: its VR comes from the dictionary, and a private one
            // would need its creator's block.
            if a.action == OverrideAction::Add && (a.keyword.is_none() && a.tag.is_none()) {
                return Err(RecipeError::Invalid(
                    "an attribute with action 'add' is named by 'keyword' or 'tag'".into(),
                ));
            }
        }
        Ok(r)
    }

    /// Every region rule in force: the built-in libraries (unless turned
    /// off), then the recipe's files and inline rules.
    pub fn region_rules(&self) -> RegionRules {
        let mut all = if self.pixels.builtin_region_rules {
            RegionRules::builtin().clone()
        } else {
            RegionRules::default()
        };
        all.extend(self.pixels.rules.clone());
        all
    }

    /// The safe-private sources as types.
    pub fn safe_sources(&self) -> Vec<SafeSource> {
        self.safe_private_sources
            .iter()
            .filter_map(|s| SafeSource::from_name(s))
            .collect()
    }

    /// Resolves every override's selector, with `keyword` mapping a standard
    /// keyword to its tag.
    pub fn selectors(
        &self,
        keyword: impl Fn(&str) -> Option<Tag>,
    ) -> Result<Vec<(Selector, &AttributeOverride)>, RecipeError> {
        self.attributes
            .iter()
            .map(|a| a.selector(&keyword).map(|s| (s, a)))
            .collect()
    }
}

impl PixelSettings {
    fn load_rules(&self, recipe: &str, base: Option<&Path>) -> Result<RegionRules, RecipeError> {
        let mut rules = RegionRules::default();
        for f in &self.region_rules {
            let path = match base {
                Some(b) => b.join(f),
                None => Path::new(f).to_path_buf(),
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                RecipeError::Invalid(format!("cannot read region rule file '{f}': {e}"))
            })?;
            rules.extend(RegionRules::parse_file_text(&text, f)?);
        }
        let source = format!("recipe '{recipe}' [[pixels.region]]");
        for (i, r) in self.regions.iter().enumerate() {
            let n = i as u32 + 1;
            let label = r.label.clone().unwrap_or_else(|| format!("region {n}"));
            let when: Vec<(&str, String)> = r
                .when
                .iter()
                .map(|(k, v)| match v {
                    toml::Value::String(s) => Ok((k.as_str(), s.clone())),
                    toml::Value::Integer(i) => Ok((k.as_str(), i.to_string())),
                    toml::Value::Float(x) => Ok((k.as_str(), x.to_string())),
                    _ => Err(RecipeError::Invalid(format!(
                        "pixels.region {n}: '{k}' must be a string or a number"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            rules.extend(RegionRules::inline(&source, n, &label, &when, &r.rects)?);
        }
        Ok(rules)
    }
}

impl SafeSource {
    /// Parses a recipe name.
    pub fn from_name(s: &str) -> Option<SafeSource> {
        [SafeSource::DicomE3101, SafeSource::CtpK]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

fn hex16(s: &str) -> Option<u16> {
    u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

impl AttributeOverride {
    /// The override as the recipe writes it, without its value, for
    /// `veil explain`: which of several overrides decided (an imported
    /// recipe has hundreds, some by pattern).
    pub fn describe(&self) -> String {
        let sel = match (
            &self.keyword,
            &self.tag,
            &self.creator,
            &self.path,
            &self.keyword_regex,
        ) {
            (Some(k), ..) => format!("keyword {k}"),
            (_, Some(t), ..) => format!("tag {t}"),
            (_, _, Some(c), ..) => format!(
                "creator '{c}' {} {}",
                self.group.as_deref().unwrap_or(""),
                self.element.as_deref().unwrap_or("")
            ),
            (_, _, _, Some(p), _) => format!("path {p}"),
            (_, _, _, _, Some(r)) => format!("keyword_regex '{r}'"),
            _ => String::new(),
        };
        format!("{sel}: {}", self.action.name())
    }

    fn selector(&self, keyword: &impl Fn(&str) -> Option<Tag>) -> Result<Selector, RecipeError> {
        let bad = |m: &str| RecipeError::Invalid(m.to_string());
        let step = |s: &str| -> Result<Tag, RecipeError> {
            let s = s.trim();
            let s = s.split('[').next().unwrap_or(s);
            Tag::parse(s)
                .or_else(|| keyword(s))
                .ok_or_else(|| RecipeError::Invalid(format!("unknown attribute '{s}' in recipe")))
        };
        if let Some(r) = &self.keyword_regex {
            if self.keyword.is_some()
                || self.tag.is_some()
                || self.creator.is_some()
                || self.path.is_some()
            {
                return Err(bad(
                    "each [[attribute]] needs exactly one of keyword, tag, creator, path or keyword_regex",
                ));
            }
            return Ok(Selector::KeywordRegex(KeywordRegex::new(r)?));
        }
        match (&self.keyword, &self.tag, &self.creator, &self.path) {
            (Some(k), None, None, None) => Ok(Selector::Tag(step(k)?)),
            (None, Some(t), None, None) => {
                let t = Tag::parse(t).ok_or_else(|| bad("tag must look like (GGGG,EEEE)"))?;
                if self.action == OverrideAction::Add && t.is_private() {
                    return Err(bad("action 'add' cannot create a private attribute"));
                }
                Ok(Selector::Tag(t))
            }
            (None, None, Some(c), None) => {
                let group = self
                    .group
                    .as_deref()
                    .and_then(hex16)
                    .filter(|g| g % 2 == 1)
                    .ok_or_else(|| bad("a private selector needs an odd hex 'group'"))?;
                let element = self
                    .element
                    .as_deref()
                    .map(|e| e.trim().trim_start_matches("xx").trim_start_matches("0x"))
                    .and_then(|e| u8::from_str_radix(e, 16).ok())
                    .ok_or_else(|| bad("a private selector needs a hex 'element' like xx10"))?;
                Ok(Selector::Private {
                    group,
                    creator: c.trim().to_string(),
                    element,
                })
            }
            (None, None, None, Some(p)) => Ok(Selector::Path(
                p.split('/').map(step).collect::<Result<_, _>>()?,
            )),
            _ => Err(bad(
                "each [[attribute]] needs exactly one of keyword, tag, creator, path or keyword_regex",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_recipe() {
        let r = Recipe::parse(
            r#"
            name = "vendor-x"
            options = ["retain-long-modified-dates", "clean-descriptors"]
            strict = true
            [dates]
            shift_min_days = -100
            shift_max_days = -10
            keep_times = true
            [[attribute]]
            keyword = "StudyDescription"
            action = "keep"
            [[attribute]]
            creator = "SIEMENS CSA HEADER"
            group = "0029"
            element = "xx10"
            action = "remove"
            [[attribute]]
            path = "(0040,0275)/(0040,0007)"
            action = "replace"
            value = "RESEARCH"
            "#,
        )
        .unwrap();
        assert_eq!(r.options.len(), 2);
        assert!(r.dates.keep_times);
        assert!(!Recipe::default().dates.keep_times);
        let kw = |k: &str| (k == "StudyDescription").then_some(Tag(0x0008, 0x1030));
        let s = r.selectors(kw).unwrap();
        assert_eq!(s[0].0, Selector::Tag(Tag(0x0008, 0x1030)));
        assert_eq!(
            s[1].0,
            Selector::Private {
                group: 0x29,
                creator: "SIEMENS CSA HEADER".into(),
                element: 0x10
            }
        );
        assert_eq!(
            s[2].0,
            Selector::Path(vec![Tag(0x0040, 0x0275), Tag(0x0040, 0x0007)])
        );
    }

    #[test]
    fn rejects_bad_recipes() {
        assert!(Recipe::parse("options = [\"retain-all\"]").is_err());
        assert!(Recipe::parse("colour = 1").is_err());
        assert!(Recipe::parse(
            "options=[\"retain-long-full-dates\",\"retain-long-modified-dates\"]"
        )
        .is_err());
        assert!(Recipe::parse("[[attribute]]\nkeyword=\"X\"\naction=\"replace\"").is_err());
    }

    #[test]
    fn parses_and_validates_generalize() {
        let r = Recipe::parse(
            "[generalize]\nage_band_years = 10\ndates = \"month\"\ndrop = [\"PatientSize\", \"(0010,1030)\"]",
        )
        .unwrap();
        assert_eq!(r.generalize.age_band_years, Some(10));
        assert_eq!(r.generalize.dates, Some(DatePrecision::Month));
        let kw = |k: &str| (k == "PatientSize").then_some(Tag(0x0010, 0x1020));
        assert_eq!(
            r.generalize.drop_tags(kw).unwrap(),
            vec![Tag(0x0010, 0x1020), Tag(0x0010, 0x1030)]
        );
        assert!(Recipe::default().generalize.is_empty());
        // unknown keys, precisions and attributes, and silly bands, are errors
        assert!(Recipe::parse("[generalize]\nage_bands = 10").is_err());
        assert!(Recipe::parse("[generalize]\ndates = \"day\"").is_err());
        assert!(Recipe::parse("[generalize]\nage_band_years = 1").is_err());
        assert!(Recipe::parse("[generalize]\nage_band_years = -5").is_err());
        let r = Recipe::parse("[generalize]\ndrop = [\"PatientSise\"]").unwrap();
        assert!(r.generalize.drop_tags(|_| None).is_err());
    }
}
