//! Quasi-identifiers: which header values an attacker may know, how they
//! are read from a de-identified object, and how each can be generalized.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::VR;
use dicom_dictionary_std::StandardDataDictionary;
use veil_core::Tag;
use veil_io::{DataSet, Value};

use crate::RiskError;

const PATIENT_AGE: Tag = Tag(0x0010, 0x1010);
const PATIENT_BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
const STUDY_DATE: Tag = Tag(0x0008, 0x0020);

/// A quasi-identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quasi {
    /// Its name in reports and population tables: a default's name (`age`,
    /// `study-date`, ...) or a DICOM keyword.
    pub name: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Age in whole years: PatientAge, else PatientBirthDate to StudyDate.
    Age,
    /// StudyDate as released (YYYYMMDD).
    StudyDate,
    /// One attribute's value as text. `droppable`: whether the lattice may
    /// suggest dropping it (sex and modality are kept: a release without
    /// them is rarely of use).
    Attr {
        tag: Tag,
        keyword: String,
        droppable: bool,
    },
}

/// The default quasi-identifiers, in report order.
pub const DEFAULT_NAMES: &[&str] = &[
    "age",
    "sex",
    "height",
    "weight",
    "ethnic-group",
    "study-date",
    "modality",
    "body-part",
    "manufacturer",
    "model",
    "station",
    "institution",
];

fn named(name: &str) -> Option<Kind> {
    let attr = |g, e, k: &str, droppable| Kind::Attr {
        tag: Tag(g, e),
        keyword: k.to_string(),
        droppable,
    };
    Some(match name {
        "age" => Kind::Age,
        "sex" => attr(0x0010, 0x0040, "PatientSex", false),
        "height" => attr(0x0010, 0x1020, "PatientSize", true),
        "weight" => attr(0x0010, 0x1030, "PatientWeight", true),
        "ethnic-group" => attr(0x0010, 0x2160, "EthnicGroup", true),
        "study-date" => Kind::StudyDate,
        "modality" => attr(0x0008, 0x0060, "Modality", false),
        "body-part" => attr(0x0018, 0x0015, "BodyPartExamined", true),
        "manufacturer" => attr(0x0008, 0x0070, "Manufacturer", true),
        "model" => attr(0x0008, 0x1090, "ManufacturerModelName", true),
        "station" => attr(0x0008, 0x1010, "StationName", true),
        "institution" => attr(0x0008, 0x0080, "InstitutionName", true),
        _ => return None,
    })
}

/// The default name a keyword stands for, if any (`PatientSize` is
/// `height`, `PatientAge` and `PatientBirthDate` are `age`).
fn default_for_keyword(keyword: &str) -> Option<&'static str> {
    match keyword {
        "PatientAge" | "PatientBirthDate" => return Some("age"),
        "StudyDate" => return Some("study-date"),
        _ => {}
    }
    DEFAULT_NAMES
        .iter()
        .copied()
        .find(|n| matches!(named(n), Some(Kind::Attr { keyword: k, .. }) if k == keyword))
}

impl Quasi {
    /// The defaults ([`DEFAULT_NAMES`]).
    pub fn defaults() -> Vec<Quasi> {
        DEFAULT_NAMES
            .iter()
            .map(|n| Quasi::parse(n).expect("defaults parse"))
            .collect()
    }

    /// A default's name, a DICOM keyword or a tag `(GGGG,EEEE)`. Keywords of
    /// the defaults' attributes give the default (`PatientSex` is `sex`).
    pub fn parse(s: &str) -> Result<Quasi, RiskError> {
        let s = s.trim();
        if let Some(kind) = named(s) {
            return Ok(Quasi {
                name: s.to_string(),
                kind,
            });
        }
        let dict = StandardDataDictionary;
        let entry = match Tag::parse(s) {
            Some(t) => dict.by_tag(dicom_core::Tag(t.0, t.1)),
            None => dict.by_name(s),
        };
        let Some(entry) = entry else {
            return Err(RiskError::Quasi(format!(
                "unknown quasi-identifier '{s}' (a DICOM keyword, a tag or one of: {})",
                DEFAULT_NAMES.join(", ")
            )));
        };
        let keyword = entry.alias.to_string();
        if let Some(d) = default_for_keyword(&keyword) {
            return Quasi::parse(d);
        }
        let t = entry.tag_range().inner();
        Ok(Quasi {
            name: keyword.clone(),
            kind: Kind::Attr {
                tag: Tag(t.0, t.1),
                keyword,
                droppable: true,
            },
        })
    }

    /// Parses a list, dropping repeats.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<Quasi>, RiskError> {
        let mut out: Vec<Quasi> = Vec::new();
        for i in items {
            let q = Quasi::parse(i.as_ref())?;
            if !out.contains(&q) {
                out.push(q);
            }
        }
        if out.is_empty() {
            return Err(RiskError::Quasi("no quasi-identifiers given".into()));
        }
        Ok(out)
    }

    /// The value in one object, normalized: ages as whole years (`45`),
    /// dates `YYYYMMDD`, numbers without trailing zeros (`1.8`), text
    /// trimmed. `None` when absent or empty.
    pub fn value(&self, ds: &DataSet) -> Option<String> {
        match &self.kind {
            Kind::Age => ds
                .ascii(PATIENT_AGE)
                .and_then(|a| age_years(&a))
                .or_else(|| {
                    let b = ds.ascii(PATIENT_BIRTH_DATE)?;
                    let s = ds.ascii(STUDY_DATE)?;
                    years_between(&b, &s)
                })
                .map(|y| y.to_string()),
            Kind::StudyDate => ds.ascii(STUDY_DATE).filter(|s| !s.is_empty()),
            Kind::Attr { tag, .. } => attr_text(ds, *tag),
        }
    }

    /// How many generalization steps there are above "as released".
    pub(crate) fn height(&self) -> u8 {
        match &self.kind {
            Kind::Age => 4,
            Kind::StudyDate => 2,
            Kind::Attr { droppable, .. } => u8::from(*droppable),
        }
    }

    /// One value generalized to `level` (0: as released). `None`: dropped.
    pub(crate) fn generalize(&self, v: &str, level: u8) -> Option<String> {
        if level == 0 {
            return Some(v.to_string());
        }
        match &self.kind {
            Kind::Age => {
                let band = *AGE_BANDS.get(level as usize - 1)?;
                Some(match v.parse::<u32>() {
                    Ok(y) => (y / band * band).to_string(),
                    Err(_) => v.to_string(),
                })
            }
            Kind::StudyDate => {
                let keep = if level == 1 { 6 } else { 4 };
                let digits = v.bytes().take_while(u8::is_ascii_digit).count();
                Some(if digits >= keep {
                    v[..keep].to_string()
                } else {
                    v.to_string()
                })
            }
            Kind::Attr { .. } => None,
        }
    }

    /// What a level means, in words (for reports).
    pub(crate) fn describe(&self, level: u8) -> String {
        match (&self.kind, level) {
            (_, 0) => format!("{}: as released", self.name),
            (Kind::Age, l) if (l as usize) <= AGE_BANDS.len() => {
                format!("{}: {}-year bands", self.name, AGE_BANDS[l as usize - 1])
            }
            (Kind::StudyDate, 1) => format!("{}: month", self.name),
            (Kind::StudyDate, _) => format!("{}: year", self.name),
            _ => format!("{}: dropped", self.name),
        }
    }

    /// The recipe's `[generalize]` settings that give `level`.
    pub(crate) fn recipe_effect(&self, level: u8) -> RecipeEffect {
        match (&self.kind, level) {
            (_, 0) => RecipeEffect::None,
            (Kind::Age, l) if (l as usize) <= AGE_BANDS.len() => {
                RecipeEffect::AgeBand(AGE_BANDS[l as usize - 1] as u16)
            }
            (Kind::Age, _) => RecipeEffect::Drop(
                vec!["PatientAge", "PatientBirthDate"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
            ),
            (Kind::StudyDate, 1) => RecipeEffect::Dates("month"),
            (Kind::StudyDate, _) => RecipeEffect::Dates("year"),
            (Kind::Attr { keyword, .. }, _) => RecipeEffect::Drop(vec![keyword.clone()]),
        }
    }
}

/// Age bands of the lattice, in years (levels 1 to 3; level 4 drops).
pub(crate) const AGE_BANDS: [u32; 3] = [5, 10, 20];

pub(crate) enum RecipeEffect {
    None,
    AgeBand(u16),
    Dates(&'static str),
    Drop(Vec<String>),
}

/// `045Y` is 45; ages in months, weeks or days are 0 years.
fn age_years(a: &str) -> Option<u32> {
    let a = a.trim();
    if a.len() != 4 {
        return None;
    }
    let n: u32 = a[..3].parse().ok()?;
    match &a[3..] {
        "Y" => Some(n),
        "M" | "W" | "D" => Some(0),
        _ => None,
    }
}

fn ymd(s: &str) -> Option<(i32, u32, u32)> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((
        s[..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..].parse().ok()?,
    ))
}

/// Whole years from `birth` to `at` (both `YYYYMMDD`).
fn years_between(birth: &str, at: &str) -> Option<u32> {
    let (by, bm, bd) = ymd(birth)?;
    let (ay, am, ad) = ymd(at)?;
    let mut y = ay - by;
    if (am, ad) < (bm, bd) {
        y -= 1;
    }
    u32::try_from(y).ok()
}

/// An attribute's value as text: numbers normalized, binary numbers
/// decoded (little endian), text trimmed.
fn attr_text(ds: &DataSet, tag: Tag) -> Option<String> {
    let e = ds.get(tag)?;
    let Value::Bytes(b) = &e.value else {
        return None;
    };
    let num = |x: &str| {
        let x = x.trim();
        match x.parse::<f64>() {
            Ok(f) if f.is_finite() => f.to_string(),
            _ => x.to_string(),
        }
    };
    let join = |v: Vec<String>| v.join("\\");
    let s = match e.vr {
        VR::DS | VR::IS => join(
            String::from_utf8_lossy(b)
                .trim_matches([' ', '\0'])
                .split('\\')
                .map(num)
                .collect(),
        ),
        VR::US => join(
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]).to_string())
                .collect(),
        ),
        VR::SS => join(
            b.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]).to_string())
                .collect(),
        ),
        VR::UL => join(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
                .collect(),
        ),
        VR::SL => join(
            b.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
                .collect(),
        ),
        VR::FL => join(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
                .collect(),
        ),
        VR::FD => join(
            b.chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a).to_string()
                })
                .collect(),
        ),
        _ => String::from_utf8_lossy(b)
            .trim_matches([' ', '\0'])
            .to_string(),
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_io::Element;

    #[test]
    fn names_keywords_and_tags() {
        assert_eq!(Quasi::parse("PatientSex").unwrap().name, "sex");
        assert_eq!(Quasi::parse("PatientBirthDate").unwrap().name, "age");
        assert_eq!(Quasi::parse("(0010,1020)").unwrap().name, "height");
        let q = Quasi::parse("SliceThickness").unwrap();
        assert_eq!(q.name, "SliceThickness");
        assert_eq!(q.height(), 1);
        assert!(Quasi::parse("PatientSise").is_err());
        let l = Quasi::parse_list(&["sex", "PatientSex", "age"]).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(Quasi::defaults().len(), DEFAULT_NAMES.len());
    }

    #[test]
    fn values_are_normalized() {
        let ds = DataSet::of([
            Element::text(STUDY_DATE, VR::DA, "20240517"),
            Element::text(PATIENT_BIRTH_DATE, VR::DA, "19800518"),
            Element::text(Tag(0x0010, 0x1020), VR::DS, "1.80 "),
            Element::text(Tag(0x0008, 0x0070), VR::LO, "ACME "),
            Element::bytes(Tag(0x0028, 0x0010), VR::US, vec![0, 2]),
        ]);
        let v = |n: &str| Quasi::parse(n).unwrap().value(&ds);
        // 1980-05-18 to 2024-05-17: the birthday is a day away, so 43
        assert_eq!(v("age").as_deref(), Some("43"));
        assert_eq!(v("height").as_deref(), Some("1.8"));
        assert_eq!(v("manufacturer").as_deref(), Some("ACME"));
        assert_eq!(v("Rows").as_deref(), Some("512"));
        assert_eq!(v("weight"), None);
        let mut ds = ds;
        ds.put(Element::text(PATIENT_AGE, VR::AS, "006M"));
        assert_eq!(
            Quasi::parse("age").unwrap().value(&ds).as_deref(),
            Some("0")
        );
    }

    #[test]
    fn generalizes_by_level() {
        let age = Quasi::parse("age").unwrap();
        let got: Vec<_> = (0..5).map(|l| age.generalize("47", l)).collect();
        assert_eq!(
            got,
            [Some("47"), Some("45"), Some("40"), Some("40"), None].map(|x| x.map(String::from))
        );
        let d = Quasi::parse("study-date").unwrap();
        assert_eq!(d.generalize("20240517", 1).as_deref(), Some("202405"));
        assert_eq!(d.generalize("20240517", 2).as_deref(), Some("2024"));
        assert_eq!(Quasi::parse("sex").unwrap().height(), 0);
        assert_eq!(Quasi::parse("model").unwrap().generalize("X", 1), None);
    }
}
