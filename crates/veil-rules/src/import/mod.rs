//! `veil recipe import`: a site's existing rules, a CTP DicomAnonymizer
//! script ([`ctp`]) or the `%header` section of a pydicom/deid recipe
//! ([`deid`]), turned into a Veil recipe (TOML) and a report.
//!
//! A migration must not quietly change what a site releases, so every rule
//! is either translated, listed as *not expressed* (the import then fails
//! unless the caller accepts a partial recipe), or translated with a
//! *difference* that the report explains (UID roots, date offsets, hash
//! formats). The generated recipe is parsed back with [`Recipe::parse`]
//! before it is returned, so an import never produces a recipe that
//! `veil deid` would refuse.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use veil_core::Tag;

use crate::regions::keyword_tag;
use crate::Recipe;

pub mod ctp;
pub mod deid;

/// The format of the file being imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A CTP DicomAnonymizer script (XML).
    Ctp,
    /// A pydicom/deid recipe; only its `%header` section.
    Deid,
}

impl Format {
    /// Parses the `--from` name.
    pub fn from_name(s: &str) -> Option<Format> {
        match s {
            "ctp" => Some(Format::Ctp),
            "deid" => Some(Format::Deid),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Ctp => "CTP DicomAnonymizer script",
            Format::Deid => "pydicom/deid recipe (%header section)",
        }
    }
}

/// An import that could not be done at all (the file is not of the
/// format). Messages quote the rule file, never DICOM data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

/// A finding of the import, with the lines of the source it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// Line numbers in the source file (1-based; empty for the file as a
    /// whole).
    pub lines: Vec<usize>,
    /// What: the rule or construct.
    pub subject: String,
    /// Why it is not expressed, or how Veil's behaviour differs.
    pub why: String,
}

/// What the import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    /// The source format, in words.
    pub format: String,
    /// Rules read (enabled rules for CTP, action lines for deid).
    pub rules: usize,
    /// Rules translated (faithfully or with a listed difference).
    pub translated: usize,
    /// What the recipe cannot express. Non-empty: the import is partial.
    pub not_expressed: Vec<Note>,
    /// Translated with different semantics, and why.
    pub differences: Vec<Note>,
}

impl ImportReport {
    /// Whether every rule was expressed.
    pub fn is_complete(&self) -> bool {
        self.not_expressed.is_empty()
    }

    fn note(list: &mut Vec<Note>, line: Option<usize>, subject: &str, why: &str) {
        if let Some(n) = list
            .iter_mut()
            .find(|n| n.subject == subject && n.why == why)
        {
            n.lines.extend(line);
            return;
        }
        list.push(Note {
            lines: line.into_iter().collect(),
            subject: subject.to_string(),
            why: why.to_string(),
        });
    }

    /// Records a rule the recipe cannot express.
    pub(crate) fn missing(&mut self, line: Option<usize>, subject: &str, why: &str) {
        Self::note(&mut self.not_expressed, line, subject, why);
    }

    /// Records a translation whose semantics differ.
    pub(crate) fn differs(&mut self, line: Option<usize>, subject: &str, why: &str) {
        Self::note(&mut self.differences, line, subject, why);
    }

    /// The report for people: counts, what is not expressed, what differs.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Imported a {}: {} rules read, {} translated, {} not expressed.",
            self.format,
            self.rules,
            self.translated,
            self.not_expressed.len()
        );
        let lines = |n: &Note| match n.lines.len() {
            0 => String::new(),
            1 => format!("line {}: ", n.lines[0]),
            _ => {
                let shown: Vec<String> = n.lines.iter().take(8).map(|l| l.to_string()).collect();
                let more = if n.lines.len() > 8 { ", ..." } else { "" };
                format!("lines {}{more}: ", shown.join(", "))
            }
        };
        if !self.not_expressed.is_empty() {
            let _ = writeln!(s, "\nNot expressed ({}):", self.not_expressed.len());
            for n in &self.not_expressed {
                let _ = writeln!(s, "  - {}{}: {}", lines(n), n.subject, n.why);
            }
        }
        if !self.differences.is_empty() {
            let _ = writeln!(s, "\nDifferent semantics ({}):", self.differences.len());
            for n in &self.differences {
                let _ = writeln!(s, "  - {}{}: {}", lines(n), n.subject, n.why);
            }
        }
        let _ = writeln!(
            s,
            "\nVeil's own protections still run on top of the imported rules: attributes the \
             recipe does not name follow PS3.15 Table E.1-1, the safety net cleans identifying \
             values it finds in what is kept (except attributes the recipe keeps on purpose), \
             and `veil deid --verify` / `veil verify` check the output independently."
        );
        s
    }
}

/// The result: the recipe text and the report.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The Veil recipe, TOML, with a comment naming the source line of
    /// every override.
    pub toml: String,
    /// What was translated, what was not, and what differs.
    pub report: ImportReport,
}

/// Imports `text` (the content of `file_name`) as `format`.
pub fn import(format: Format, file_name: &str, text: &str) -> Result<Imported, ImportError> {
    let mut b = Builder::new(format, file_name);
    match format {
        Format::Ctp => ctp::translate(text, &mut b)?,
        Format::Deid => deid::translate(text, &mut b)?,
    }
    let toml = b.render();
    // The recipe must load exactly as `veil deid` will load it.
    let recipe = Recipe::parse(&toml)
        .map_err(|e| ImportError(format!("internal error: the generated recipe: {e}")))?;
    recipe
        .selectors(keyword_tag)
        .map_err(|e| ImportError(format!("internal error: the generated recipe: {e}")))?;
    Ok(Imported {
        toml,
        report: b.report,
    })
}

/// How an override names its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sel {
    /// A standard keyword.
    Keyword(&'static str),
    /// A tag without a dictionary keyword.
    Tag(Tag),
    /// `keyword_regex`.
    Regex(String),
}

impl Sel {
    /// The keyword for a tag when the dictionary has one, else the tag.
    pub(crate) fn of(tag: Tag) -> Sel {
        match keyword_of(tag) {
            Some(k) => Sel::Keyword(k),
            None => Sel::Tag(tag),
        }
    }

    /// Whether this selector picks the standard attribute `keyword`.
    fn selects(&self, keyword: &str) -> bool {
        match self {
            Sel::Keyword(k) => *k == keyword,
            Sel::Tag(t) => keyword_tag(keyword) == Some(*t),
            Sel::Regex(r) => crate::KeywordRegex::new(r).is_ok_and(|r| r.is_match(keyword)),
        }
    }
}

/// One `[[attribute]]` of the generated recipe.
#[derive(Debug, Clone)]
pub(crate) struct Ov {
    pub(crate) line: Option<usize>,
    pub(crate) source: String,
    pub(crate) sel: Sel,
    pub(crate) action: &'static str,
    pub(crate) value: Option<String>,
}

/// The recipe being built.
pub(crate) struct Builder {
    pub(crate) file_name: String,
    pub(crate) name: String,
    pub(crate) options: BTreeSet<&'static str>,
    pub(crate) safe_private_sources: Option<Vec<&'static str>>,
    pub(crate) strict: bool,
    pub(crate) keep_times: bool,
    pub(crate) pseudonyms: Vec<(&'static str, String)>,
    pub(crate) overrides: Vec<Ov>,
    pub(crate) report: ImportReport,
}

impl Builder {
    fn new(format: Format, file_name: &str) -> Builder {
        let stem: String = file_name
            .rsplit('/')
            .next()
            .unwrap_or(file_name)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let prefix = match format {
            Format::Ctp => "ctp",
            Format::Deid => "deid",
        };
        Builder {
            file_name: file_name.to_string(),
            name: format!("{prefix}-{stem}"),
            options: BTreeSet::new(),
            safe_private_sources: None,
            strict: false,
            keep_times: false,
            pseudonyms: Vec::new(),
            overrides: Vec::new(),
            report: ImportReport {
                format: format.describe().into(),
                ..Default::default()
            },
        }
    }

    pub(crate) fn push(
        &mut self,
        line: Option<usize>,
        source: &str,
        sel: Sel,
        action: &'static str,
        value: Option<String>,
    ) {
        self.overrides.push(Ov {
            line,
            source: source.trim().to_string(),
            sel,
            action,
            value,
        });
    }

    /// Sets a pseudonym format (the last rule wins, as in the sources).
    pub(crate) fn pseudonym(&mut self, kind: &'static str, format: String) {
        self.pseudonyms.retain(|(k, _)| *k != kind);
        self.pseudonyms.push((kind, format));
    }

    /// The override that would decide `keyword`, if any (the last one that
    /// selects it, as in `veil deid`).
    pub(crate) fn last_for(&self, keyword: &str) -> Option<&Ov> {
        self.overrides.iter().rev().find(|o| o.sel.selects(keyword))
    }

    fn render(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Imported by `veil recipe import` from {} ({}).\n\
             # Read the import report before using it: it lists what was not expressed\n\
             # and where Veil's semantics differ. Attributes not named here follow\n\
             # PS3.15 Table E.1-1; see docs/recipes.md and docs/migration.md.",
            self.file_name.replace('\n', " "),
            self.report.format
        );
        let _ = writeln!(s, "name = {}", q(&self.name));
        let opts: Vec<String> = self.options.iter().map(|o| q(o)).collect();
        let _ = writeln!(s, "options = [{}]", opts.join(", "));
        if self.strict {
            let _ = writeln!(s, "strict = true");
        }
        if let Some(src) = &self.safe_private_sources {
            let v: Vec<String> = src.iter().map(|o| q(o)).collect();
            let _ = writeln!(s, "safe_private_sources = [{}]", v.join(", "));
        }
        if !self.pseudonyms.is_empty() {
            let _ = writeln!(s, "\n[pseudonyms]");
            for (k, v) in &self.pseudonyms {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
        if self.keep_times {
            let _ = writeln!(s, "\n[dates]\nkeep_times = true");
        }
        for o in &self.overrides {
            let at = o.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            let src = o.source.replace(['\n', '\r'], " ");
            let _ = writeln!(s, "\n[[attribute]]  # {at}{src}");
            match &o.sel {
                Sel::Keyword(k) => {
                    let _ = writeln!(s, "keyword = {}", q(k));
                }
                Sel::Tag(t) => {
                    let _ = writeln!(s, "tag = {}", q(&t.to_string()));
                }
                Sel::Regex(r) => {
                    let _ = writeln!(s, "keyword_regex = {}", q(r));
                }
            }
            let _ = writeln!(s, "action = {}", q(o.action));
            if let Some(v) = &o.value {
                let _ = writeln!(s, "value = {}", q(v));
            }
        }
        s
    }
}

/// A tag's standard keyword.
pub(crate) fn keyword_of(tag: Tag) -> Option<&'static str> {
    use dicom_core::dictionary::DataDictionary;
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| e.alias)
}

/// A tag's VR from the dictionary, when it has exactly one.
pub(crate) fn vr_of(tag: Tag) -> Option<dicom_core::VR> {
    use dicom_core::dictionary::{DataDictionary, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .and_then(|e| match e.vr {
            VirtualVr::Exact(vr) => Some(vr),
            _ => None,
        })
}

/// Attributes Veil writes itself on every output (PatientIdentityRemoved,
/// DeidentificationMethod and its code sequence,
/// LongitudinalTemporalInformationModified): a rule for them would be
/// overwritten, so an import explains instead of translating.
pub(crate) fn veil_marker(tag: Tag) -> bool {
    matches!(
        (tag.0, tag.1),
        (0x0012, 0x0062) | (0x0012, 0x0063) | (0x0012, 0x0064) | (0x0028, 0x0303)
    )
}

/// The identifying UIDs and class UID every output needs to be a valid,
/// addressable object. An imported rule that would remove or blank them is
/// followed by an override that remaps (or keeps, for the class) instead.
pub(crate) const STRUCTURAL: &[(&str, &str)] = &[
    ("SOPClassUID", "keep"),
    ("SOPInstanceUID", "pseudonymize"),
    ("StudyInstanceUID", "pseudonymize"),
    ("SeriesInstanceUID", "pseudonymize"),
];

/// Appends the structural overrides where an imported rule would remove,
/// blank or overwrite one of [`STRUCTURAL`].
pub(crate) fn guard_structural(b: &mut Builder) {
    for (kw, act) in STRUCTURAL {
        let Some(o) = b.last_for(kw) else { continue };
        if o.action == *act || o.action == "pseudonymize" || o.action == "keep" {
            continue;
        }
        let line = o.line;
        let what = format!("{} {kw}", o.action);
        b.report.differs(
            line,
            &what,
            "Veil never writes an object without its SOP Class, SOP Instance, Study or Series \
             Instance UID (the object would be invalid and unaddressable): instance UIDs are \
             remapped to keyed 2.25 UIDs, the class UID (not identifying) is kept",
        );
        let src = format!("kept valid: {kw} ({what} in the source)");
        b.push(line, &src, Sel::Keyword(kw), act, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_recipe_quotes_values_and_parses() {
        let mut b = Builder::new(Format::Ctp, "x\"y.script");
        b.push(
            Some(3),
            "@always()a \"quoted\" value",
            Sel::Keyword("BodyPartExamined"),
            "add",
            Some("a \"quoted\" \\ value".into()),
        );
        b.push(None, "x", Sel::Regex("(?i).*Time".into()), "remove", None);
        b.push(None, "y", Sel::Tag(Tag(0x0009, 0x0010)), "remove", None);
        let r = Recipe::parse(&b.render()).unwrap();
        assert_eq!(r.attributes.len(), 3);
        assert_eq!(
            r.attributes[0].value.as_deref(),
            Some("a \"quoted\" \\ value")
        );
        assert_eq!(r.attributes[1].keyword_regex.as_deref(), Some("(?i).*Time"));
    }

    #[test]
    fn notes_merge_by_subject_and_reason() {
        let mut r = ImportReport::default();
        r.differs(Some(1), "@hashuid", "root");
        r.differs(Some(5), "@hashuid", "root");
        r.missing(Some(2), "@lookup", "table");
        assert_eq!(r.differences.len(), 1);
        assert_eq!(r.differences[0].lines, vec![1, 5]);
        assert!(!r.is_complete());
        let t = r.to_text();
        assert!(t.contains("lines 1, 5: @hashuid: root"), "{t}");
        assert!(t.contains("safety net"), "{t}");
    }
}
