//! The verification report: JSON for tools, one self-contained HTML page
//! for the privacy officer. Both hold only pseudonymous output paths,
//! element paths, categories, lengths and counts ([`crate::text`]), so they
//! may travel with the release. A site-local report (`--site-local`) also
//! quotes the masked text around each finding, and says in its header that
//! it must not leave the site.

use std::collections::BTreeMap;
use veil_core::count;

use serde::Serialize;

use crate::policy::VerifyPolicy;
use crate::{Category, Finding};

/// Counts for the summary line and the report header.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Output files checked.
    pub files: usize,
    /// Output files with at least one failing finding.
    pub files_with_findings: usize,
    /// Source files harvested.
    pub sources: usize,
    /// Outputs paired with their source exactly: by kept SOP Instance UID or pixel fingerprint.
    pub paired_exact: usize,
    /// Outputs paired through their study, patient or references.
    pub paired_by_context: usize,
    /// Outputs that parsed but pair with no source (without sources: every
    /// output). Their own source's values could not be looked for; they
    /// were searched with the patterns and name lists.
    pub unpaired: usize,
    /// References that resolve to no instance in the output (informative:
    /// a release of part of a study has them).
    pub references_unresolved: usize,
    /// Findings that fail the release.
    pub failing: usize,
    /// Findings reported as warnings.
    pub warnings: usize,
    /// Findings per category.
    pub by_category: BTreeMap<Category, usize>,
    /// Seconds taken.
    pub seconds: f64,
}

/// What a site-local report says in its header (JSON `notice`, HTML
/// banner).
pub const SITE_LOCAL_NOTICE: &str = "SITE-LOCAL: this report quotes the text around each finding, which may identify a patient; keep it at the site and do not send it with the release";

/// A verification report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `travelling` (no text from the files) or `site-local` (quotes the
    /// text around findings; must not leave the site).
    pub scope: &'static str,
    /// Set for a site-local report: [`SITE_LOCAL_NOTICE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<&'static str>,
    /// `clean` or `findings`.
    pub status: &'static str,
    /// Counts.
    pub summary: Summary,
    /// Every finding, failing ones first.
    pub findings: Vec<ReportedFinding>,
    /// What was checked, when, and how (set by [`crate::verify_files`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<Checked>,
}

/// What a report is about: the folder, the date and what was searched, so
/// that "clean" is read against what was looked for.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The checked folder's own name (its last component only: the rest
    /// of the path says where the site keeps things, and travels nowhere).
    pub folder: String,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// What was searched, in words ("headers and bytes", "pixels (OCR)").
    pub searched: Vec<String>,
}

/// A finding with its verdict under the policy.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedFinding {
    /// The finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// Whether it fails the release.
    pub fails: bool,
}

impl Report {
    /// Builds a report, judging each finding with the policy.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        findings: Vec<Finding>,
        site_local: bool,
        policy: &VerifyPolicy,
        files: usize,
        sources: usize,
        paired_exact: usize,
        paired_by_context: usize,
        unpaired: usize,
        references_unresolved: usize,
        seconds: f64,
    ) -> Report {
        let mut by_category = BTreeMap::new();
        let mut reported: Vec<ReportedFinding> = findings
            .into_iter()
            .map(|mut f| {
                *by_category.entry(f.category).or_insert(0) += 1;
                // a travelling report holds no quoted text, whoever built
                // the findings
                if !site_local {
                    f.context = None;
                }
                ReportedFinding {
                    fails: policy.fails(f.category, f.place.as_str())
                        && (policy.strict || f.detector != unpaired_check()),
                    finding: f,
                }
            })
            .collect();
        reported.sort_by(|a, b| {
            (
                !a.fails,
                a.finding.category,
                &a.finding.file,
                &a.finding.place,
            )
                .cmp(&(
                    !b.fails,
                    b.finding.category,
                    &b.finding.file,
                    &b.finding.place,
                ))
        });
        let failing = reported.iter().filter(|f| f.fails).count();
        let files_with_findings = reported
            .iter()
            .filter(|f| f.fails)
            .map(|f| &f.finding.file)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        Report {
            scope: if site_local {
                "site-local"
            } else {
                "travelling"
            },
            notice: site_local.then_some(SITE_LOCAL_NOTICE),
            status: if failing == 0 { "clean" } else { "findings" },
            checked: None,
            summary: Summary {
                files,
                files_with_findings,
                sources,
                paired_exact,
                paired_by_context,
                unpaired,
                references_unresolved,
                failing,
                warnings: reported.len() - failing,
                by_category,
                seconds,
            },
            findings: reported,
        }
    }

    /// Exit status: 0 clean, 1 findings above policy.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.summary.failing > 0)
    }

    /// One line for the terminal.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let cats: Vec<String> = s
            .by_category
            .iter()
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        format!(
            "veil verify: {}, {} ({} paired exactly, {} through study, patient or references, {} unpaired: searched with patterns and name lists only): {} in {}, {}{}; {:.1} s",
            count(s.files, "file", "files"),
            count(s.sources, "source", "sources"),
            s.paired_exact,
            s.paired_by_context,
            s.unpaired,
            count(s.failing, "failing finding", "failing findings"),
            count(s.files_with_findings, "file", "files"),
            count(s.warnings, "warning", "warnings"),
            if cats.is_empty() {
                String::new()
            } else {
                format!(" ({})", cats.join(", "))
            },
            s.seconds
        )
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// A self-contained HTML page: findings grouped by category, then by
    /// place, each with the file, masked excerpt and thumbnail.
    pub fn to_html(&self) -> String {
        let s = &self.summary;
        let mut h = String::new();
        h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>Veil verification report</title><style>body{font-family:sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em;text-align:left;font-size:90%}th{background:#eee}.fail{color:#a00;font-weight:bold}.warn{color:#a60}.clean{color:#070;font-weight:bold}code{font-size:90%}img{max-width:160px;image-rendering:pixelated}</style></head><body>");
        h.push_str("<h1>Veil verification report</h1>");
        if let Some(c) = &self.checked {
            h.push_str(&format!(
                "<p>Folder <code>{}</code>, checked {}. Searched: {}.</p>",
                esc(&c.folder),
                esc(&c.date),
                esc(&c.searched.join("; "))
            ));
        }
        let site_local = self.notice.is_some();
        if let Some(n) = self.notice {
            h.push_str(&format!(
                "<p class=\"fail\" style=\"border:2px solid #a00;padding:.5em\">{}</p>",
                esc(n)
            ));
        }
        // "clean" says what was looked for: an output without its source
        // was searched for patterns and name lists only (issue 17)
        let unchecked = match (s.sources, s.unpaired) {
            (_, 0) => String::new(),
            (0, _) => " (no sources given: searched with patterns and name lists only)".into(),
            (_, n) => format!(
                " ({n} output(s) paired with no source: searched with patterns and name lists only)"
            ),
        };
        h.push_str(&format!(
            "<p>Status: <span class=\"{}\">{}</span>{}</p>",
            if s.failing == 0 { "clean" } else { "fail" },
            if s.failing == 0 {
                "clean: nothing failing found"
            } else {
                "findings: do not release"
            },
            esc(&unchecked)
        ));
        h.push_str(&format!(
            "<table><tr><th>Files checked</th><td>{}</td></tr><tr><th>Sources harvested</th><td>{}</td></tr><tr><th>Paired exactly / through study, patient or references</th><td>{} / {}</td></tr><tr><th>Unpaired (searched with patterns and name lists only)</th><td>{}</td></tr><tr><th>Failing findings (files)</th><td>{} ({})</td></tr><tr><th>Warnings</th><td>{}</td></tr><tr><th>Unresolved references (informative)</th><td>{}</td></tr><tr><th>Seconds</th><td>{:.1}</td></tr></table>",
            s.files, s.sources, s.paired_exact, s.paired_by_context, s.unpaired, s.failing, s.files_with_findings, s.warnings, s.references_unresolved, s.seconds
        ));
        h.push_str(if site_local {
            "<p>Values are never shown: each finding names its category, length and place as <code>[category:length] in place</code>; the context column quotes the text around it with every found value masked. File paths are the release's own paths.</p>"
        } else {
            "<p>Values are never shown, nor the text around them: each finding names its category, length and place as <code>[category:length] in place</code>. File paths are the release's own (pseudonymous) paths; a path component in which a value was found is replaced by <code>[category:length]</code>.</p>"
        });
        let mut groups: BTreeMap<(Category, String), Vec<&ReportedFinding>> = BTreeMap::new();
        for f in &self.findings {
            let place = generic_place(f.finding.place.as_str());
            groups
                .entry((f.finding.category, place))
                .or_default()
                .push(f);
        }
        let mut current = None;
        for ((cat, place), fs) in &groups {
            if current != Some(*cat) {
                h.push_str(&format!("<h2>{}</h2>", esc(cat.name())));
                current = Some(*cat);
            }
            h.push_str(&format!(
                "<h3>{} <small>({} findings)</small></h3><table><tr><th></th><th>File</th><th>Place</th><th>Detector</th><th>Excerpt</th>{}<th></th></tr>",
                esc(place),
                fs.len(),
                if site_local { "<th>Context (site-local)</th>" } else { "" }
            ));
            for f in fs.iter().take(200) {
                let fi = &f.finding;
                h.push_str(&format!(
                    "<tr><td class=\"{}\">{}</td><td><code>{}</code></td><td><code>{}</code>{}</td><td>{}</td><td><code>{}</code></td>{}<td>{}</td></tr>",
                    if f.fails { "fail" } else { "warn" },
                    if f.fails { "fails" } else { "warning" },
                    esc(&fi.file),
                    esc(&named_place(fi.place.as_str())),
                    fi.frame.map(|n| format!(" frame {n}")).unwrap_or_default(),
                    esc(&fi.detector),
                    esc(fi.excerpt.as_str()),
                    match (&fi.context, site_local) {
                        (Some(c), true) => format!("<td><code>{}</code></td>", esc(c.expose())),
                        (None, true) => "<td></td>".to_string(),
                        _ => String::new(),
                    },
                    fi.thumbnail
                        .as_ref()
                        .map(|t| format!("<img alt=\"thumbnail, found text blacked out\" src=\"data:image/png;base64,{t}\">"))
                        .unwrap_or_default()
                ));
            }
            if fs.len() > 200 {
                h.push_str(&format!(
                    "<tr><td colspan=\"{}\">… {} more in the JSON report</td></tr>",
                    if site_local { 7 } else { 6 },
                    fs.len() - 200
                ));
            }
            h.push_str("</table>");
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// A place with each tag named by its keyword as well, for people:
/// `(0008,1030)[0]/(0010,0010)` reads `StudyDescription (0008,1030)[0]/
/// PatientName (0010,0010)`. Private and unknown tags stay as they are.
pub fn named_place(place: &str) -> String {
    let mut out = String::new();
    let mut rest = place;
    while let Some(i) = rest.find('(') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let tag = tail
            .get(1..10)
            .filter(|t| tail.get(10..11) == Some(")") && t.as_bytes().get(4) == Some(&b','))
            .and_then(|t| {
                let g = u16::from_str_radix(&t[..4], 16).ok()?;
                let e = u16::from_str_radix(&t[5..], 16).ok()?;
                Some(veil_core::Tag(g, e))
            });
        match tag.and_then(crate::harvest::keyword) {
            Some(k) => {
                out.push_str(k);
                out.push(' ');
                out.push_str(&tail[..11]);
                rest = &tail[11..];
            }
            None => {
                out.push('(');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The detector of an unpaired output's finding (`structure:unpaired`).
fn unpaired_check() -> String {
    format!("structure:{}", crate::set::UNPAIRED)
}

/// The place without item numbers, so findings in different items of one
/// sequence group together.
fn generic_place(p: &str) -> String {
    let mut out = String::new();
    let mut skip = false;
    for c in p.chars() {
        match c {
            '[' => skip = true,
            ']' => skip = false,
            _ if !skip => out.push(c),
            _ => {}
        }
    }
    out
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    veil_core::escape_markup(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_name_tags_by_keyword_too() {
        assert_eq!(
            named_place("(0008,1030)[0]/(0010,0010)"),
            "StudyDescription (0008,1030)[0]/PatientName (0010,0010)"
        );
        // private, unknown, and not a tag at all
        assert_eq!(named_place("(0011,1010)"), "(0011,1010)");
        assert_eq!(named_place("file name (x"), "file name (x");
    }
    use crate::text::{Place, ReportText};
    use veil_core::Phi;

    fn report(site_local: bool) -> Report {
        let place = Place::fixed("(0020,4000)");
        let f = Finding {
            file: "a/b.dcm".into(),
            excerpt: ReportText::found(Category::Name, 7, &place),
            place,
            category: Category::Name,
            detector: "source-value".into(),
            context: Some(Phi::new("Dr Quillon saw [name:7] MRN".into())),
            frame: None,
            thumbnail: None,
        };
        Report::new(
            vec![f],
            site_local,
            &VerifyPolicy::default(),
            1,
            1,
            1,
            0,
            0,
            0,
            0.1,
        )
    }

    /// A travelling report drops a finding's context whoever set it; a
    /// site-local one shows it and says in its header that it must stay.
    #[test]
    fn issue_22_only_a_site_local_report_quotes_context() {
        let r = report(false);
        for text in [r.to_json(), r.to_html()] {
            assert!(
                !text.contains("Quillon") && !text.contains("SITE-LOCAL"),
                "{text}"
            );
            assert!(text.contains("[name:7] in (0020,4000)"), "{text}");
        }
        let r = report(true);
        for text in [r.to_json(), r.to_html()] {
            assert!(
                text.contains("Quillon") && text.contains("SITE-LOCAL"),
                "{text}"
            );
        }
    }
}
