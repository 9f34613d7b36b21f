//! CTP DicomAnonymizer scripts: `<script>` with `<p t="NAME">` parameters,
//! `<e en="T" t="GGGGEEEE" n="Name">function</e>` element rules, `<k>`
//! keep switches and `<r>` removal switches (RSNA CTP wiki, "The CTP DICOM
//! Anonymizer"). Rules with `en="F"` are switched off and ignored, as CTP
//! ignores them.

use std::collections::BTreeMap;

use dicom_core::VR;
use veil_core::Tag;

use super::{veil_marker, vr_of, Builder, ImportError, Sel};

const HASHUID: &str = "CTP's @hashuid makes a UID under the script's root (UIDROOT) from an MD5 \
     of the old UID; Veil makes 2.25 UIDs from a keyed HMAC of it, the same for every \
     reference in the release, unguessable without the key";
const HASH: &str = "CTP's @hash writes decimal digits of an unkeyed MD5 (anyone can recompute \
     it from a guessed value); Veil writes base-32 characters of a keyed HMAC";
const INCREMENTDATE: &str = "CTP adds one fixed offset (DATEINC) to every patient's dates; \
     Veil moves each patient's dates by a keyed offset of whole days drawn per patient in \
     [dates] shift_min_days..shift_max_days (retain-long-modified-dates), so intervals \
     within a patient are kept, one leaked offset does not reveal every patient, and dates \
     of different patients can no longer be aligned";
const LOOKUP: &str = "CTP replaces the value from a site lookup table (not part of the \
     script); Veil has no lookup tables: the value becomes Veil's keyed pseudonym";
const MARKER: &str = "Veil writes PatientIdentityRemoved, DeidentificationMethod (with the \
     recipe's name), DeidentificationMethodCodeSequence (from the options in force) and \
     LongitudinalTemporalInformationModified on every output itself";

/// Translates a script into `b`.
pub(crate) fn translate(text: &str, b: &mut Builder) -> Result<(), ImportError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| ImportError(format!("not a CTP anonymizer script (XML): {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "script" {
        return Err(ImportError(
            "not a CTP anonymizer script: the root element is not <script>".into(),
        ));
    }
    let line = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row as usize;
    let params: BTreeMap<String, String> = root
        .children()
        .filter(|n| n.has_tag_name("p"))
        .filter_map(|n| Some((n.attribute("t")?.to_string(), n.text()?.trim().to_string())))
        .collect();
    let mut safe_private = false;
    let mut keep_private_groups = false;
    for n in root.children().filter(|n| n.is_element()) {
        let enabled = n.attribute("en") == Some("T");
        let t = n.attribute("t").unwrap_or("");
        let l = Some(line(n));
        match n.tag_name().name() {
            "p" => {}
            "e" if enabled => {
                b.report.rules += 1;
                let script = n.text().unwrap_or("").trim().to_string();
                match Tag::parse(t) {
                    Some(tag) => element(b, l, tag, &script, &params),
                    None => b.report.missing(
                        l,
                        &format!("<e t=\"{t}\">"),
                        "the element is not a plain GGGGEEEE tag",
                    ),
                }
            }
            "k" if enabled => {
                b.report.rules += 1;
                if t == "safeprivateelements" {
                    safe_private = true;
                    b.report.translated += 1;
                } else {
                    b.report.missing(
                        l,
                        &format!("<k t=\"{t}\"> keep group"),
                        "Veil has no keep-a-whole-group rule: name the attributes to keep",
                    );
                }
            }
            "r" => {
                b.report.rules += 1;
                switch(b, l, t, enabled, &mut keep_private_groups);
            }
            "e" | "k" => {}
            other => b.report.missing(
                l,
                &format!("<{other}>"),
                "not a CTP anonymizer script element",
            ),
        }
    }
    if safe_private || keep_private_groups {
        // CTP's safe private elements are the `K` entries of its private
        // tag dictionary, which Veil carries as the `ctp-k` source.
        b.options.insert("retain-safe-private");
        b.safe_private_sources = Some(vec!["ctp-k"]);
    }
    if b.options.contains("retain-long-modified-dates") {
        // CTP's offset is whole days; times of day are never moved.
        b.keep_times = true;
    }
    if let Some(p) = params.get("PROFILENAME") {
        b.report.differs(
            None,
            &format!("profile '{p}'"),
            "the recipe is named after the file; the profile name is not recorded",
        );
    }
    super::guard_structural(b);
    Ok(())
}

/// One `<r>` removal switch.
fn switch(b: &mut Builder, l: Option<usize>, t: &str, enabled: bool, keep_private: &mut bool) {
    match (t, enabled) {
        ("curves" | "overlays", true) => b.report.translated += 1,
        ("curves" | "overlays", false) => b.report.missing(
            l,
            &format!("<r t=\"{t}\"> off (keep {t})"),
            "Veil always removes curves (50xx) and overlay planes (60xx) whole; they can hold \
             text or drawn annotations",
        ),
        ("privategroups", true) => b.report.translated += 1,
        ("privategroups", false) => {
            *keep_private = true;
            b.report.missing(
                l,
                "<r t=\"privategroups\"> off (keep every private group)",
                "Veil never keeps private attributes wholesale: it keeps those known safe \
                 (retain-safe-private with CTP's own safe list, ctp-k, is set) and removes \
                 the rest; keep others by creator and element in [[attribute]]",
            );
        }
        ("unspecifiedelements", true) => {
            b.strict = true;
            b.report.translated += 1;
            b.report.differs(
                l,
                "<r t=\"unspecifiedelements\"> on",
                "translated to strict = true: Veil removes standard attributes that neither \
                 the recipe nor E.1-1 keeps and that are not on its strict safe list \
                 (rules/sources/veil_strict_safe.txt), rather than every unnamed one",
            );
        }
        ("unspecifiedelements", false) => {
            b.report.translated += 1;
            b.report.differs(
                l,
                "<r t=\"unspecifiedelements\"> off",
                "CTP keeps every attribute the script does not name; Veil applies PS3.15 \
                 Table E.1-1 to them (it removes or blanks the identifying ones)",
            );
        }
        (other, _) => b
            .report
            .missing(l, &format!("<r t=\"{other}\">"), "unknown removal switch"),
    }
}

/// The functions of a CTP script, in the order written: `@name(args)`,
/// `{text}` for `@append()`, and literal text.
#[derive(Debug, PartialEq)]
enum Part {
    Call(String, Vec<String>),
    Braced(String),
    Text(String),
}

fn parts(script: &str) -> Option<Vec<Part>> {
    let mut out = Vec::new();
    let mut rest = script.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('@') {
            let open = r.find('(')?;
            let name = r[..open].trim().to_string();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            let close = r[open..].find(')')? + open;
            let args = r[open + 1..close]
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            out.push(Part::Call(name, args));
            rest = r[close + 1..].trim_start();
        } else if let Some(r) = rest.strip_prefix('{') {
            let close = r.find('}')?;
            out.push(Part::Braced(r[..close].to_string()));
            rest = r[close + 1..].trim_start();
        } else {
            let end = rest.find(['@', '{']).unwrap_or(rest.len());
            out.push(Part::Text(rest[..end].trim().to_string()));
            rest = &rest[end..];
        }
    }
    Some(out)
}

/// `@param(@NAME)` or `@NAME` resolved against the `<p>` parameters.
fn param(arg: &str, params: &BTreeMap<String, String>) -> Option<String> {
    params.get(arg.trim_start_matches('@')).cloned()
}

/// One enabled `<e>` rule.
fn element(
    b: &mut Builder,
    l: Option<usize>,
    tag: Tag,
    script: &str,
    params: &BTreeMap<String, String>,
) {
    let src = format!("{tag} {script}");
    if veil_marker(tag) {
        b.report.translated += 1;
        b.report.differs(l, &format!("{tag} {script}"), MARKER);
        return;
    }
    let Some(mut ps) = parts(script) else {
        b.report
            .missing(l, &src, "the function syntax is not understood");
        return;
    };
    let always = matches!(ps.first(), Some(Part::Call(n, a)) if n == "always" && a.is_empty());
    if always {
        ps.remove(0);
    }
    if tag.is_private() {
        if matches!(ps.as_slice(), [Part::Call(n, _)] if n == "remove") {
            // Private attributes not known safe are removed anyway.
            b.report.translated += 1;
        } else {
            b.report.missing(
                l,
                &src,
                "Veil does not write or keep private attributes by tag alone: a private \
                 attribute is kept by creator and element ([[attribute]] creator/group/element), \
                 and never created",
            );
        }
        return;
    }
    let sel = Sel::of(tag);
    let set = if always { "add" } else { "replace" };
    match ps.as_slice() {
        [] => {
            // An enabled rule with no function writes its (empty) text.
            b.report.translated += 1;
            b.report.differs(
                l,
                "an enabled rule with no function",
                "CTP writes the rule's empty text: translated to empty",
            );
            b.push(l, &src, sel, "empty", None);
        }
        [Part::Call(n, a)] if a.is_empty() && matches!(n.as_str(), "remove" | "keep" | "empty") => {
            b.report.translated += 1;
            if n == "keep" && vr_of(tag) == Some(VR::SQ) {
                b.report.differs(
                    l,
                    "@keep() on a sequence",
                    "CTP keeps the items as they are; Veil keeps the sequence and still applies \
                     the rules (and the recipe) to the attributes in its items",
                );
            }
            b.push(l, &src, sel, static_action(n), None);
        }
        [Part::Call(n, _)] if n == "process" => {
            b.report.translated += 1;
            if vr_of(tag) != Some(VR::SQ) {
                b.report.differs(
                    l,
                    "@process() on an attribute that is not a sequence",
                    "kept as is",
                );
            }
            b.push(l, &src, sel, "keep", None);
        }
        [Part::Call(n, _)] if n == "hashuid" => {
            b.report.translated += 1;
            b.report.differs(l, "@hashuid", HASHUID);
            b.push(l, &src, sel, "pseudonymize", None);
        }
        [Part::Call(n, a)] if n == "hash" => {
            b.report.translated += 1;
            hash(b, l, tag, a.get(1).and_then(|n| n.parse().ok()));
            b.push(l, &src, sel, "pseudonymize", None);
        }
        [Part::Call(n, _)] if n == "hashname" || n == "hashptid" => {
            b.report.translated += 1;
            b.report.differs(
                l,
                &format!("@{n}"),
                "CTP's hash of the name (or of the site and PatientID) becomes Veil's keyed \
                 pseudonym for the attribute",
            );
            b.push(l, &src, sel, "pseudonymize", None);
        }
        [Part::Call(n, a)] if n == "incrementdate" => {
            b.report.translated += 1;
            let inc = a
                .get(1)
                .map(|a| param(a, params).unwrap_or_else(|| a.clone()));
            let subject = match inc {
                Some(i) => format!("@incrementdate (DATEINC {i})"),
                None => "@incrementdate".into(),
            };
            b.report.differs(l, &subject, INCREMENTDATE);
            b.options.insert("retain-long-modified-dates");
            b.push(l, &src, sel, "shift", None);
        }
        [Part::Call(n, _)] if n == "date" || n == "time" => {
            b.report.translated += 1;
            b.report.differs(
                l,
                &format!("@{n}()"),
                "CTP writes the date or time of the run; Veil applies PS3.15 Table E.1-1 \
                 (an empty value or a dummy where one is required)",
            );
        }
        [Part::Call(n, _)] if n == "lookup" => {
            b.report.missing(l, &src, LOOKUP);
            let name_from_id = tag == Tag(0x0010, 0x0010)
                && matches!(ps.first(), Some(Part::Call(_, a)) if a.first().map(String::as_str) == Some("PatientID"));
            if name_from_id {
                b.pseudonym("patient_name", "{patient_id}".into());
            }
            b.push(l, &src, sel, "pseudonymize", None);
        }
        [Part::Call(n, a)] if n == "param" && a.len() == 1 => match param(&a[0], params) {
            Some(v) => {
                b.report.translated += 1;
                b.report.differs(
                    l,
                    &format!("{} = \"{v}\"", a[0]),
                    "the script's parameter is written as it stands in the script: edit the \
                     recipe where it is a placeholder",
                );
                b.push(l, &src, sel, set, Some(v));
            }
            None => b
                .report
                .missing(l, &src, "the parameter is not defined in the script"),
        },
        [Part::Text(t)] => {
            b.report.translated += 1;
            b.push(l, &src, sel, set, Some(t.clone()));
        }
        _ => b.report.missing(
            l,
            &src,
            "a function (or combination) with no Veil equivalent: conditions, selections, \
             rounding, initials and text built from several values are not expressible in a \
             recipe",
        ),
    }
}

fn static_action(n: &str) -> &'static str {
    match n {
        "remove" => "remove",
        "keep" => "keep",
        _ => "empty",
    }
}

/// `@hash(this,N)`: the pseudonym's length follows N where Veil has a
/// format for the attribute.
fn hash(b: &mut Builder, l: Option<usize>, tag: Tag, n: Option<usize>) {
    let kind = match (tag.0, tag.1) {
        (0x0010, 0x0020) => Some("patient_id"),
        (0x0010, 0x0010) => Some("patient_name"),
        (0x0008, 0x0050) => Some("accession_number"),
        (0x0020, 0x0010) => Some("study_id"),
        _ => None,
    };
    // An SH or CS value holds 16 characters, and Veil's hash gives 51.
    let max = match vr_of(tag) {
        Some(VR::SH | VR::CS | VR::AE) => 16,
        _ => 51,
    };
    match (kind, n) {
        (Some(k), Some(n)) => {
            let len = n.clamp(1, max);
            b.pseudonym(k, format!("{{hash:{len}}}"));
            let why = if len == n {
                format!("{HASH}; its length ({n}) is kept")
            } else {
                format!(
                    "{HASH}; the length {n} is cut to {len} (the most the VR or the hash holds)"
                )
            };
            b.report.differs(l, "@hash", &why);
        }
        _ => b.report.differs(
            l,
            "@hash",
            &format!("{HASH}; the length is Veil's format for the attribute"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import, Format};
    use crate::Recipe;

    #[test]
    fn splits_functions_literals_and_braces() {
        assert_eq!(
            parts("@always()@append(){Per PS 3.15}").unwrap(),
            vec![
                Part::Call("always".into(), vec![]),
                Part::Call("append".into(), vec![]),
                Part::Braced("Per PS 3.15".into())
            ]
        );
        assert_eq!(
            parts("@hash(this, 64)").unwrap(),
            vec![Part::Call("hash".into(), vec!["this".into(), "64".into()])]
        );
        assert_eq!(parts("YES").unwrap(), vec![Part::Text("YES".into())]);
        assert!(parts("@if(this,isblank)").is_some());
        assert!(parts("@broken(").is_none());
    }

    #[test]
    fn translates_each_function() {
        let script = r#"<script>
 <p t="UIDROOT">1.2.3</p>
 <p t="SITE">Acme</p>
 <p t="DATEINC">-100</p>
 <e en="T" t="00080018" n="SOPInstanceUID">@hashuid(@UIDROOT,this)</e>
 <e en="T" t="00080020" n="StudyDate">@incrementdate(this,@DATEINC)</e>
 <e en="T" t="00080050" n="AccessionNumber">@hash(this,10)</e>
 <e en="T" t="00081030" n="StudyDescription">@keep()</e>
 <e en="T" t="00080090" n="ReferringPhysicianName">@empty()</e>
 <e en="T" t="00080080" n="InstitutionName">@remove()</e>
 <e en="T" t="00180015" n="BodyPartExamined">@always()@param(@SITE)</e>
 <e en="T" t="00181030" n="ProtocolName">RESEARCH</e>
 <e en="T" t="00540016" n="RadiopharmaceuticalInformationSequence">@process()</e>
 <e en="T" t="00120062" n="PatientIdentityRemoved">@always()YES</e>
 <e en="F" t="00100010" n="PatientName">@if(this,isblank){x}</e>
 <r en="T" t="curves">Remove curves</r>
 <r en="T" t="privategroups">Remove private groups</r>
 <r en="F" t="unspecifiedelements">Remove unchecked elements</r>
</script>"#;
        let i = import(Format::Ctp, "t.script", script).unwrap();
        assert!(i.report.is_complete(), "{}", i.report.to_text());
        assert_eq!(i.report.rules, 13);
        assert_eq!(i.report.translated, 13);
        let r = Recipe::parse(&i.toml).unwrap();
        assert_eq!(
            r.options,
            vec![veil_core::ProfileOption::RetainLongModifiedDates]
        );
        assert!(r.dates.keep_times);
        assert_eq!(r.pseudonyms.accession_number, "{hash:10}");
        let acts: Vec<(String, String, Option<String>)> = r
            .attributes
            .iter()
            .map(|a| {
                (
                    a.keyword.clone().unwrap_or_default(),
                    format!("{:?}", a.action),
                    a.value.clone(),
                )
            })
            .collect();
        let want = [
            ("SOPInstanceUID", "Pseudonymize", None),
            ("StudyDate", "Shift", None),
            ("AccessionNumber", "Pseudonymize", None),
            ("StudyDescription", "Keep", None),
            ("ReferringPhysicianName", "Empty", None),
            ("InstitutionName", "Remove", None),
            ("BodyPartExamined", "Add", Some("Acme")),
            ("ProtocolName", "Replace", Some("RESEARCH")),
            ("RadiopharmaceuticalInformationSequence", "Keep", None),
        ];
        let want: Vec<(String, String, Option<String>)> = want
            .iter()
            .map(|(k, a, v)| (k.to_string(), a.to_string(), v.map(String::from)))
            .collect();
        assert_eq!(acts, want);
        let text = i.report.to_text();
        assert!(text.contains("2.25"), "{text}");
        assert!(text.contains("DATEINC -100"), "{text}");
    }

    #[test]
    fn what_cannot_be_expressed_is_listed() {
        let script = r#"<script>
 <e en="T" t="00100020" n="PatientID">@lookup(this,ptid)</e>
 <e en="T" t="00100010" n="PatientName">@lookup(PatientID,ptid)</e>
 <e en="T" t="00081030" n="StudyDescription">@if(this,isblank){@remove()}{@keep()}</e>
 <e en="T" t="00131010" n="ProjectName">@always()Project</e>
 <k en="T" t="0018">Keep group 0018</k>
 <r en="F" t="overlays">Remove overlays</r>
 <r en="F" t="privategroups">Remove private groups</r>
</script>"#;
        let i = import(Format::Ctp, "t.script", script).unwrap();
        let text = i.report.to_text();
        assert_eq!(i.report.not_expressed.len(), 7, "{text}");
        for what in [
            "@lookup",
            "@if",
            "(0013,1010)",
            "keep group",
            "overlays",
            "privategroups",
        ] {
            assert!(text.contains(what), "{what}: {text}");
        }
        let r = Recipe::parse(&i.toml).unwrap();
        assert_eq!(r.pseudonyms.patient_name, "{patient_id}");
        assert!(r
            .options
            .contains(&veil_core::ProfileOption::RetainSafePrivate));
        assert_eq!(r.safe_private_sources, vec!["ctp-k".to_string()]);
    }

    #[test]
    fn not_a_script_is_an_error() {
        assert!(import(Format::Ctp, "x", "not xml").is_err());
        assert!(import(Format::Ctp, "x", "<profile/>").is_err());
    }
}
