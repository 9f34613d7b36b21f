//! pydicom/deid recipes: the `%header` section, one action a line
//! (`ACTION FIELD [VALUE]`, deid's "recipe-headers" documentation). The
//! `%filter` sections are pixel region rules, which Veil reads in deid's
//! own format (`[pixels] region_rules`), so they are not translated here.
//!
//! deid applies the lines in order, a later one winning; so does a Veil
//! recipe (the last matching override wins), so the order is kept.

use veil_core::Tag;

use super::{veil_marker, Builder, ImportError, Sel};

const PATTERN: &str = "deid matches the expression, ignoring case, against each attribute's \
     keyword, its name (\"Patient's Name\") and its tag; Veil matches it against the \
     keyword (keyword_regex), at any depth";
const JITTER: &str = "deid adds the same number of days to every patient's dates; Veil moves \
     each patient's dates by a keyed offset of whole days drawn per patient in [dates] \
     shift_min_days..shift_max_days (retain-long-modified-dates)";
const MARKER: &str = "Veil writes PatientIdentityRemoved (YES), DeidentificationMethod and \
     its code sequence on every output itself";
const VARIABLE: &str = "the value comes from a variable or function supplied to deid at run \
     time (var:/func:), which a recipe cannot hold; the attribute follows the other rules \
     (for identifiers: Veil's keyed pseudonyms)";

/// Translates the `%header` section of `text` into `b`.
pub(crate) fn translate(text: &str, b: &mut Builder) -> Result<(), ImportError> {
    let mut in_header = false;
    let mut seen_header = false;
    for (i, raw) in text.lines().enumerate() {
        let l = Some(i + 1);
        let line = strip_comment(raw).trim();
        if let Some(section) = line.strip_prefix('%') {
            in_header = section.trim().eq_ignore_ascii_case("header");
            seen_header |= in_header;
            continue;
        }
        if !in_header || line.is_empty() {
            continue;
        }
        b.report.rules += 1;
        let mut words = line.splitn(3, char::is_whitespace);
        let action = words.next().unwrap_or("").to_ascii_uppercase();
        let field = words.next().unwrap_or("").trim();
        let value = words.next().map(str::trim).filter(|v| !v.is_empty());
        action_line(b, l, line, &action, field, value);
    }
    if !seen_header {
        return Err(ImportError(
            "not a deid recipe with a %header section (nothing to import)".into(),
        ));
    }
    b.report.differs(
        None,
        "attributes the recipe does not name",
        "deid keeps them; Veil applies PS3.15 Table E.1-1 to them (it removes or blanks \
         the identifying ones) and removes private attributes not known safe (deid keeps \
         private attributes unless it is called with remove_private=True)",
    );
    super::guard_structural(b);
    Ok(())
}

/// A `#` starts a comment at the start of a line or after white space.
fn strip_comment(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// What a deid field names.
enum Field {
    One(Sel, Option<Tag>),
    Pattern(String),
    Unknown,
    Unsupported,
}

fn field(f: &str) -> Field {
    if let Some((expander, expr)) = f.split_once(':') {
        // deid lower-cases the expression and compiles it as a regular
        // expression ignoring case; endswith/startswith anchor it.
        let e = expr.to_lowercase();
        let re = match expander.to_ascii_lowercase().as_str() {
            "endswith" => format!("(?i).*({e})"),
            "startswith" => format!("(?i)({e}).*"),
            "contains" => format!("(?i).*({e}).*"),
            _ => return Field::Unsupported,
        };
        if crate::KeywordRegex::new(&re).is_err() {
            return Field::Unsupported;
        }
        return Field::Pattern(re);
    }
    if f.eq_ignore_ascii_case("all") {
        return Field::Unsupported;
    }
    if let Some(t) = crate::regions::keyword_tag(f) {
        return Field::One(Sel::of(t), Some(t));
    }
    let hexlike = f.starts_with('(') || f.chars().all(|c| c.is_ascii_hexdigit());
    match Tag::parse(f).filter(|_| hexlike) {
        Some(t) if !t.is_private() => Field::One(Sel::of(t), Some(t)),
        Some(_) => Field::Unsupported,
        None => Field::Unknown,
    }
}

fn action_line(
    b: &mut Builder,
    l: Option<usize>,
    line: &str,
    action: &str,
    f: &str,
    value: Option<&str>,
) {
    let (sel, tag) = match field(f) {
        Field::One(s, t) => (s, t),
        Field::Pattern(re) => {
            b.report.differs(l, &format!("{action} {f}"), PATTERN);
            (Sel::Regex(re), None)
        }
        Field::Unknown => {
            b.report.translated += 1;
            b.report.differs(
                l,
                line,
                "names no DICOM keyword or tag, so deid finds nothing to act on; nothing \
                 translated",
            );
            return;
        }
        Field::Unsupported => {
            b.report.missing(
                l,
                line,
                "this field expression (all, except:, select:, a private tag) has no Veil \
                 selector",
            );
            return;
        }
    };
    if tag.is_some_and(veil_marker) {
        b.report.translated += 1;
        b.report.differs(l, line, MARKER);
        return;
    }
    let variable = value.is_some_and(|v| v.starts_with("var:") || v.starts_with("func:"));
    match action {
        "REMOVE" | "BLANK" | "KEEP" => {
            b.report.translated += 1;
            let act = match action {
                "REMOVE" => "remove",
                "BLANK" => "empty",
                _ => "keep",
            };
            b.push(l, line, sel, act, None);
        }
        "REPLACE" | "ADD" if variable => b.report.missing(l, line, VARIABLE),
        "REPLACE" | "ADD" => {
            let Some(v) = value else {
                b.report.missing(l, line, "no value given");
                return;
            };
            if action == "ADD" && !matches!(sel, Sel::Keyword(_) | Sel::Tag(_)) {
                b.report.missing(
                    l,
                    line,
                    "ADD over a pattern would create attributes the object may not have; \
                     Veil creates only attributes named one by one",
                );
                return;
            }
            b.report.translated += 1;
            let act = if action == "ADD" { "add" } else { "replace" };
            b.push(l, line, sel, act, Some(v.to_string()));
        }
        "JITTER" if variable => b.report.missing(l, line, VARIABLE),
        "JITTER" => {
            b.report.translated += 1;
            let subject = match value {
                Some(v) => format!("JITTER by {v} days"),
                None => "JITTER".into(),
            };
            b.report.differs(l, &subject, JITTER);
            b.options.insert("retain-long-modified-dates");
            b.keep_times = true;
            b.push(l, line, sel, "shift", None);
        }
        _ => b.report.missing(l, line, "unknown deid action"),
    }
}

#[cfg(test)]
mod tests {
    use crate::import::{import, Format};
    use crate::{OverrideAction, Recipe};

    #[test]
    fn translates_each_action_in_order() {
        let text = "FORMAT dicom\n%filter graylist\nLABEL x\n  contains Modality CT\n\
            %header\n\
            REMOVE endswith:Date\n\
            REMOVE PatientsName # not a keyword\n\
            BLANK PatientName\n\
            KEEP StudyDate\n\
            REPLACE StudyDescription RESEARCH STUDY\n\
            ADD IssuerOfPatientID STARR\n\
            ADD PatientID var:entity_id\n\
            ADD PatientIdentityRemoved YES\n\
            JITTER AcquisitionDate 31\n\
            REMOVE contains:UID\n";
        let i = import(Format::Deid, "deid.dicom", text).unwrap();
        let report = i.report.to_text();
        assert_eq!(i.report.rules, 10, "{report}");
        assert_eq!(i.report.not_expressed.len(), 1, "{report}");
        assert!(report.contains("var:entity_id"), "{report}");
        let r = Recipe::parse(&i.toml).unwrap();
        assert!(r
            .options
            .contains(&veil_core::ProfileOption::RetainLongModifiedDates));
        let a = &r.attributes;
        assert_eq!(a[0].keyword_regex.as_deref(), Some("(?i).*(date)"));
        assert_eq!(a[1].keyword.as_deref(), Some("PatientName"));
        assert_eq!(a[1].action, OverrideAction::Empty);
        assert_eq!(a[2].action, OverrideAction::Keep);
        assert_eq!(a[3].value.as_deref(), Some("RESEARCH STUDY"));
        assert_eq!(a[4].action, OverrideAction::Add);
        assert_eq!(a[5].action, OverrideAction::Shift);
        assert_eq!(a[6].keyword_regex.as_deref(), Some("(?i).*(uid).*"));
        // contains:UID would remove the object's own UIDs: kept valid
        let tail: Vec<_> = a[7..]
            .iter()
            .map(|x| (x.keyword.clone().unwrap(), x.action))
            .collect();
        assert_eq!(
            tail,
            vec![
                ("SOPClassUID".to_string(), OverrideAction::Keep),
                ("SOPInstanceUID".to_string(), OverrideAction::Pseudonymize),
                ("StudyInstanceUID".to_string(), OverrideAction::Pseudonymize),
                (
                    "SeriesInstanceUID".to_string(),
                    OverrideAction::Pseudonymize
                ),
            ]
        );
        let re = crate::KeywordRegex::new("(?i).*(date)").unwrap();
        assert!(re.is_match("StudyDate") && !re.is_match("DateOfLastCalibration"));
    }

    #[test]
    fn a_file_without_header_is_an_error() {
        assert!(import(Format::Deid, "x", "FORMAT dicom\n%filter graylist\n").is_err());
    }
}
