//! The report: JSON (serde) and a self-contained HTML page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::collect::Collection;
use crate::measure::{measure, Measures};
use crate::population::{Population, SET_SEP};
use crate::quasi::Quasi;
use crate::suggest::{suggest, Search};

/// What the report says in its header (JSON `notice`, HTML banner).
pub const NOTICE: &str = "SITE-LOCAL: this report shows the quasi-identifier values of the patients most at risk; keep it at the site and do not send it with the release";

/// A record whose risk is above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRisk {
    /// Pseudonymous PatientID of the release.
    pub patient: String,
    /// Size of its class in the release (f).
    pub class_size: usize,
    /// Size of its class in the population (F), with a population table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population_size: Option<u64>,
    /// Its risk: 1/F with a population table, 1/f without.
    pub risk: f64,
    /// Its class: the value of each quasi-identifier ("" when absent).
    pub values: BTreeMap<String, String>,
}

/// The whole assessment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `veil risk` and its version.
    pub tool: String,
    /// [`NOTICE`]: the report shows the released values of the records at
    /// risk (free text such as institution or station names among them),
    /// so unlike `veil verify`'s it does not travel.
    pub notice: &'static str,
    /// Quasi-identifiers used, in order.
    pub quasi_identifiers: Vec<String>,
    /// DICOM objects read.
    pub files_read: usize,
    /// Other files (not DICOM, unreadable, DICOMDIR).
    pub files_skipped: usize,
    /// The threshold on a record's risk.
    pub threshold: f64,
    /// The risk the threshold applies to: `journalist` with a population
    /// table, `prosecutor` without.
    pub measure: &'static str,
    /// The highest record risk under that measure.
    pub max_risk: f64,
    /// Whether some record is above the threshold.
    pub above_threshold: bool,
    /// k, classes, class sizes, prosecutor, journalist and marketer risk.
    #[serde(flatten)]
    pub measures: Measures,
    /// Records above the threshold, highest risk first.
    pub records_at_risk: Vec<AtRisk>,
    /// Generalizations that reach the threshold.
    pub search: Search,
}

/// Measures a collection and searches for generalizations.
pub fn assess(
    collection: &Collection,
    quasi: &[Quasi],
    population: Option<&Population>,
    threshold: f64,
) -> Report {
    let records = &collection.records;
    let keys: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            r.values
                .iter()
                .map(|s| s.iter().cloned().collect::<Vec<_>>().join(SET_SEP))
                .collect()
        })
        .collect();
    let pop = population.map(|p| {
        let mut m: std::collections::HashMap<Vec<String>, u64> = Default::default();
        for (v, c) in &p.rows {
            let key = v
                .iter()
                .map(|s| s.iter().cloned().collect::<Vec<_>>().join(SET_SEP))
                .collect();
            *m.entry(key).or_default() += c;
        }
        m
    });
    let m = measure(&keys, pop.as_ref());
    let mut at_risk: Vec<AtRisk> = (0..records.len())
        .filter(|&i| m.record_risk(i) > threshold)
        .map(|i| AtRisk {
            patient: records[i].patient.clone(),
            class_size: m.per_record[i].0,
            population_size: m.per_record[i].1,
            risk: m.record_risk(i),
            values: quasi
                .iter()
                .map(|q| q.name.clone())
                .zip(keys[i].iter().cloned())
                .collect(),
        })
        .collect();
    at_risk.sort_by(|a, b| b.risk.total_cmp(&a.risk).then(a.patient.cmp(&b.patient)));
    Report {
        tool: format!("veil risk {}", env!("CARGO_PKG_VERSION")),
        notice: NOTICE,
        quasi_identifiers: quasi.iter().map(|q| q.name.clone()).collect(),
        files_read: collection.files_read,
        files_skipped: collection.files_skipped,
        threshold,
        measure: if population.is_some() {
            "journalist"
        } else {
            "prosecutor"
        },
        max_risk: m.max_risk(),
        above_threshold: !at_risk.is_empty(),
        search: suggest(quasi, records, population, threshold),
        measures: m,
        records_at_risk: at_risk,
    }
}

impl Report {
    /// The exit status of `veil risk`: 0 within the threshold, 1 above.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.above_threshold)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let m = &self.measures;
        let mut s = format!(
            "{} patients ({} files), {} classes, k = {}; prosecutor risk max {:.3} avg {:.3}",
            m.records, self.files_read, m.classes, m.k, m.prosecutor.max, m.prosecutor.avg
        );
        if let Some(j) = m.journalist {
            let _ = write!(s, "; journalist max {:.3} avg {:.3}", j.max, j.avg);
        }
        let _ = writeln!(s, "; marketer {:.3}", m.marketer);
        let _ = writeln!(
            s,
            "{} of {} records above the threshold {} ({} risk)",
            self.records_at_risk.len(),
            m.records,
            self.threshold,
            self.measure
        );
        if self.above_threshold && self.search.suggestions.is_empty() {
            let _ = writeln!(
                s,
                "no generalization of these quasi-identifiers lowers the risk (sex and modality are never generalized)"
            );
        }
        if let Some(best) = self.search.suggestions.first() {
            let _ = writeln!(
                s,
                "{}: {} -> k = {}, max risk {:.3}, information loss {:.2}",
                if best.meets_threshold {
                    "suggested"
                } else {
                    "closest (threshold not reachable by these generalizations)"
                },
                best.changes.join(", "),
                best.k,
                best.max_risk,
                best.information_loss
            );
        }
        s
    }

    /// A self-contained HTML page (no scripts, no external assets; every
    /// value escaped).
    pub fn to_html(&self) -> String {
        let m = &self.measures;
        let mut h = String::new();
        let e = escape;
        h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
              <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
              <title>Veil re-identification risk</title><style>\
              body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
              table{border-collapse:collapse;margin:.5em 0 1.5em}\
              td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
              th{background:#f3f3f3}.bad{color:#a00;font-weight:bold}.ok{color:#070;font-weight:bold}\
              pre{background:#f6f6f6;padding:.4em;margin:0}</style></head><body>\n";
        let _ = writeln!(h, "<h1>Re-identification risk</h1>");
        let _ = writeln!(h, "<p class=\"bad\">{}</p>", e(self.notice));
        let verdict = if self.above_threshold {
            format!(
                "<p class=\"bad\">{} of {} patients are above the threshold {} ({} risk).</p>",
                self.records_at_risk.len(),
                m.records,
                self.threshold,
                e(self.measure)
            )
        } else {
            format!(
                "<p class=\"ok\">Every patient is within the threshold {} ({} risk).</p>",
                self.threshold,
                e(self.measure)
            )
        };
        h += &verdict;
        h += "<table>";
        let mut row = |k: &str, v: String| {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", e(k), e(&v));
        };
        row("Tool", self.tool.clone());
        row("Quasi-identifiers", self.quasi_identifiers.join(", "));
        row(
            "Files",
            format!("{} read, {} skipped", self.files_read, self.files_skipped),
        );
        row("Patients (records)", m.records.to_string());
        row("Equivalence classes", m.classes.to_string());
        row("k (smallest class)", m.k.to_string());
        row(
            "Prosecutor risk",
            format!(
                "max {:.4}, average {:.4}",
                m.prosecutor.max, m.prosecutor.avg
            ),
        );
        row(
            "Journalist risk",
            match m.journalist {
                Some(j) => format!("max {:.4}, average {:.4}", j.max, j.avg),
                None => "no population table given".into(),
            },
        );
        row("Marketer risk", format!("{:.4}", m.marketer));
        if let (Some(u), Some(b)) = (m.population_unmatched, m.population_below_sample) {
            row(
                "Population table",
                format!("{u} classes not in it (F = f), {b} with fewer people than the release (F raised to f)"),
            );
        }
        h += "</table>\n<h2>Class sizes</h2><table><tr><th>Size</th><th>Classes</th><th>Patients</th></tr>";
        for c in &m.class_sizes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.size, c.classes, c.records
            );
        }
        h += "</table>\n<h2>Suggested generalizations</h2>";
        if self.search.suggestions.is_empty() && !self.above_threshold {
            h += "<p>None needed.</p>";
        } else if self.search.suggestions.is_empty() {
            h += "<p>No generalization of these quasi-identifiers lowers the risk \
                  (sex and modality are never generalized).</p>";
        } else {
            let _ = write!(
                h,
                "<p>Search: {}, {} combinations measured. Apply one with <code>veil deid --recipe</code>.</p>",
                e(self.search.method),
                self.search.nodes_evaluated
            );
            h += "<table><tr><th>Changes</th><th>k</th><th>Max risk</th><th>Average risk</th>\
                  <th>Patients above</th><th>Information loss</th><th>Recipe</th></tr>";
            for s in &self.search.suggestions {
                let _ = write!(
                    h,
                    "<tr><td>{}{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td>{:.2}</td><td><pre>{}</pre></td></tr>",
                    e(&s.changes.join("; ")),
                    if s.meets_threshold { "" } else { " <span class=\"bad\">(does not reach the threshold)</span>" },
                    s.k,
                    s.max_risk,
                    s.avg_risk,
                    s.records_at_risk,
                    s.information_loss,
                    e(&s.recipe)
                );
            }
            h += "</table>";
        }
        let _ = write!(
            h,
            "\n<h2>Patients above the threshold ({})</h2>",
            self.records_at_risk.len()
        );
        if !self.records_at_risk.is_empty() {
            h += "<table><tr><th>Patient (pseudonym)</th><th>Class size</th><th>Population</th><th>Risk</th>";
            for q in &self.quasi_identifiers {
                let _ = write!(h, "<th>{}</th>", e(q));
            }
            h += "</tr>";
            for r in &self.records_at_risk {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td>",
                    e(&r.patient),
                    r.class_size,
                    r.population_size.map(|p| p.to_string()).unwrap_or_default(),
                    r.risk
                );
                for q in &self.quasi_identifiers {
                    let v = r.values.get(q).map(String::as_str).unwrap_or("");
                    let _ = write!(h, "<td>{}</td>", e(v));
                }
                h += "</tr>";
            }
            h += "</table>";
        }
        h += "\n</body></html>\n";
        h
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    veil_core::escape_markup(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Record;
    use std::collections::BTreeSet;

    fn rec(p: &str, sex: &str, model: &str) -> Record {
        Record {
            patient: p.into(),
            values: vec![
                BTreeSet::from([sex.to_string()]),
                BTreeSet::from([model.to_string()]),
            ],
        }
    }

    /// (sex, model): A F/X, B F/X, C M/<script>. Classes {A,B} f=2 and
    /// {C} f=1: k=1, prosecutor max 1, avg 2/3. Threshold 0.6: C (1) is
    /// above, A and B (1/2) are not. Dropping the model gives F=2, M=1:
    /// the same classes, nothing improves, so nothing is suggested.
    #[test]
    fn lists_exactly_the_records_above_and_escapes_html() {
        let q = Quasi::parse_list(&["sex", "model"]).unwrap();
        let c = Collection {
            records: vec![
                rec("A", "F", "X"),
                rec("B", "F", "X"),
                rec("C", "M", "<script>&"),
            ],
            files_read: 3,
            files_skipped: 0,
        };
        let r = assess(&c, &q, None, 0.6);
        assert_eq!(r.measures.k, 1);
        assert!((r.measures.prosecutor.avg - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.records_at_risk.len(), 1);
        assert_eq!(r.records_at_risk[0].patient, "C");
        assert_eq!(r.records_at_risk[0].values["model"], "<script>&");
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.search.method, "exhaustive");
        assert!(r.search.suggestions.is_empty());
        assert!(r.summary().contains("no generalization"));
        let html = r.to_html();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;&amp;"));
        assert!(
            !html.contains("://") && !html.contains("src=") && !html.contains("href="),
            "no external assets"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["k"], 1);
        assert_eq!(json["records_at_risk"][0]["values"]["sex"], "M");
        assert_eq!(json["measure"], "prosecutor");
        assert!(json["journalist"].is_null());
        // within threshold: exit 0, nobody listed
        let r = assess(&c, &q, None, 1.0);
        assert_eq!((r.exit_code(), r.records_at_risk.len()), (0, 0));
        assert_eq!(r.search.method, "none");
    }
}
