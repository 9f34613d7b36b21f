//! Veil's consent model: recipients, consent provisions, site defaults, the
//! decision rule, and FHIR Consent import/export.
//!
//! Why a crate of its own with no I/O: the decision rule is the part a
//! privacy officer must be able to read and a test must be able to pin
//! down. Keeping it pure (data in, decision out) makes both possible, and
//! lets the store and the future portal share one rule.
//!
//! # The decision rule
//!
//! For one release request (recipient R of category C, purpose P, study S
//! of patient X, at time T):
//!
//! 1. **Candidates**: the provisions of X's *active* consent records whose
//!    scope covers the request: actor is R, or C, or unspecified (anyone);
//!    purpose is P or unspecified; period contains T (unspecified ends are
//!    open); data is S or unspecified (all studies).
//! 2. **Most specific wins**: candidates are ranked by (actor: recipient >
//!    category > anyone, then data: this study > all studies, then purpose:
//!    named > any). Only the highest rank counts.
//! 3. **Deny wins ties**: if any provision of that rank denies, the answer
//!    is deny; otherwise permit.
//! 4. **No candidate**: the site default for P applies: opt-out permits,
//!    opt-in denies. A purpose with no configured default is opt-in: a
//!    missing record never releases unless the site chose opt-out.
//! 5. **Ambiguity** is decided by the caller before the rule: a study whose
//!    files disagree on the patient, or that has no PatientID or no
//!    StudyInstanceUID, is refused whatever the default.

mod fhir;

use serde::{Deserialize, Serialize};
use veil_core::Phi;

pub use fhir::{export_r4, import, import_with, FhirError, Limits};

/// Permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Release allowed.
    Permit,
    /// Release refused.
    Deny,
}

impl Decision {
    /// `permit` / `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
        }
    }
    /// Parses `permit` / `deny`.
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "permit" => Some(Decision::Permit),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// Who a provision is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum Actor {
    /// One recipient, by name.
    Recipient(String),
    /// Every recipient of a category (e.g. `ai-vendor`).
    Category(String),
}

/// One permit/deny statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provision {
    /// Permit or deny.
    pub decision: Decision,
    /// Recipient or category; `None` = any recipient.
    pub actor: Option<Actor>,
    /// Purpose code; `None` = any purpose.
    pub purpose: Option<String>,
    /// Start of validity (RFC 3339 UTC), inclusive.
    pub start: Option<String>,
    /// End of validity (RFC 3339 UTC), inclusive.
    pub end: Option<String>,
    /// One study (StudyInstanceUID); `None` = all studies.
    pub study_uid: Option<String>,
}

impl Provision {
    /// True when the two provisions speak about the same thing (so a new
    /// one set from the command line replaces the old one).
    pub fn same_scope(&self, o: &Provision) -> bool {
        self.actor == o.actor && self.purpose == o.purpose && self.study_uid == o.study_uid
    }

    fn rank(&self) -> (u8, u8, u8) {
        let actor = match self.actor {
            Some(Actor::Recipient(_)) => 2,
            Some(Actor::Category(_)) => 1,
            None => 0,
        };
        (
            actor,
            self.study_uid.is_some() as u8,
            self.purpose.is_some() as u8,
        )
    }

    fn covers(&self, r: &Request) -> bool {
        let actor = match &self.actor {
            None => true,
            Some(Actor::Recipient(n)) => n == r.recipient,
            Some(Actor::Category(c)) => r.category.is_some_and(|rc| rc == c),
        };
        actor
            && self.purpose.as_deref().is_none_or(|p| p == r.purpose)
            && self.study_uid.as_deref().is_none_or(|s| s == r.study_uid)
            && self.start.as_deref().is_none_or(|s| s <= r.now)
            && self.end.as_deref().is_none_or(|e| r.now <= e)
    }

    /// Describes the scope without PHI (no study UID, no patient).
    pub fn describe(&self) -> String {
        let who = match &self.actor {
            Some(Actor::Recipient(n)) => format!("recipient {n}"),
            Some(Actor::Category(c)) => format!("category {c}"),
            None => "any recipient".into(),
        };
        let what = if self.study_uid.is_some() {
            "one study"
        } else {
            "all studies"
        };
        let why = self.purpose.as_deref().unwrap_or("any purpose");
        format!("{} {who}, {what}, {why}", self.decision.as_str())
    }
}

/// A patient's consent record (one FHIR Consent resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Record id (the FHIR resource id, or Veil's own for `consent set`).
    pub id: String,
    /// The PatientID it is about.
    pub patient_id: Phi<String>,
    /// The identifier system (issuer), if known.
    pub patient_system: Option<String>,
    /// FHIR status; only `active` records take part in decisions.
    pub status: String,
    /// When the patient gave it (RFC 3339 UTC), if known.
    pub date_time: Option<String>,
    /// Its provisions.
    pub provisions: Vec<Provision>,
}

/// What a site does for a purpose when a patient has said nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteDefault {
    /// No release without a permit.
    OptIn,
    /// Release unless denied.
    OptOut,
}

impl SiteDefault {
    /// `opt-in` / `opt-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteDefault::OptIn => "opt-in",
            SiteDefault::OptOut => "opt-out",
        }
    }
    /// Parses `opt-in` / `opt-out`.
    pub fn parse(s: &str) -> Option<SiteDefault> {
        match s {
            "opt-in" => Some(SiteDefault::OptIn),
            "opt-out" => Some(SiteDefault::OptOut),
            _ => None,
        }
    }
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Recipient name.
    pub recipient: &'a str,
    /// Recipient category.
    pub category: Option<&'a str>,
    /// Purpose.
    pub purpose: &'a str,
    /// StudyInstanceUID.
    pub study_uid: &'a str,
    /// Now (RFC 3339 UTC).
    pub now: &'a str,
}

/// A decision and the rule that made it (no PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Permit or deny.
    pub decision: Decision,
    /// Which step of the rule decided, in words.
    pub rule: String,
}

/// Applies the decision rule (see the crate documentation).
pub fn decide(consents: &[Consent], default: Option<SiteDefault>, r: &Request) -> Outcome {
    let candidates: Vec<&Provision> = consents
        .iter()
        .filter(|c| c.status == "active")
        .flat_map(|c| &c.provisions)
        .filter(|p| p.covers(r))
        .collect();
    if let Some(top) = candidates.iter().map(|p| p.rank()).max() {
        let best: Vec<&&Provision> = candidates.iter().filter(|p| p.rank() == top).collect();
        let deny = best.iter().find(|p| p.decision == Decision::Deny);
        let chosen = deny.unwrap_or(&best[0]);
        let tie = if best.len() > 1 && deny.is_some() {
            " (deny wins a tie)"
        } else {
            ""
        };
        return Outcome {
            decision: chosen.decision,
            rule: format!("most specific provision: {}{tie}", chosen.describe()),
        };
    }
    let d = default.unwrap_or(SiteDefault::OptIn);
    Outcome {
        decision: match d {
            SiteDefault::OptIn => Decision::Deny,
            SiteDefault::OptOut => Decision::Permit,
        },
        rule: match default {
            Some(_) => format!(
                "no provision applies; site default for {} is {}",
                r.purpose,
                d.as_str()
            ),
            None => format!(
                "no provision applies; no site default for {}, so opt-in",
                r.purpose
            ),
        },
    }
}

/// A data recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Unique name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Category (e.g. `ai-vendor`, `research`), for category-wide consent.
    pub category: Option<String>,
    /// Contact (person, e-mail).
    pub contact: Option<String>,
    /// Postal address.
    pub address: Option<String>,
    /// Purposes it may receive data for.
    pub purposes: Vec<String>,
    /// The recipe (TOML text, kept so a release uses what was registered).
    pub recipe_toml: String,
    /// Recipe name and version, for the ledger.
    pub recipe_label: String,
    /// File holding its pseudonymization key (0600).
    pub key_file: String,
    /// Id of that key.
    pub key_id: String,
    /// Days a staged output is kept.
    pub retention_days: u32,
}

/// Is this a valid recipient name? (It becomes a file name.)
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Normalizes a FHIR date or dateTime (or a command-line date) to RFC 3339
/// UTC. A bare date is the start of that day, or its end when `end` (an
/// "until" date includes its day).
pub fn normalize_time(s: &str, end: bool) -> Option<String> {
    use chrono::{DateTime, NaiveDate, Utc};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(
            t.with_timezone(&Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        );
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d"))
        .or_else(|_| NaiveDate::parse_from_str(&format!("{s}-01-01"), "%Y-%m-%d"))
        .ok()?;
    let t = if end {
        d.and_hms_opt(23, 59, 59)?
    } else {
        d.and_hms_opt(0, 0, 0)?
    };
    Some(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Now, RFC 3339 UTC, second precision (lexically ordered).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(
        d: Decision,
        actor: Option<Actor>,
        purpose: Option<&str>,
        study: Option<&str>,
    ) -> Provision {
        Provision {
            decision: d,
            actor,
            purpose: purpose.map(str::to_string),
            start: None,
            end: None,
            study_uid: study.map(str::to_string),
        }
    }
    fn consent(p: Vec<Provision>) -> Consent {
        Consent {
            id: "c".into(),
            patient_id: Phi::new("P1".into()),
            patient_system: None,
            status: "active".into(),
            date_time: None,
            provisions: p,
        }
    }
    const REQ: Request<'static> = Request {
        recipient: "acme",
        category: Some("ai-vendor"),
        purpose: "ai-training",
        study_uid: "1.2.3",
        now: "2025-06-01T00:00:00Z",
    };
    use Decision::*;

    #[test]
    fn defaults_apply_only_without_a_provision() {
        assert_eq!(decide(&[], None, &REQ).decision, Deny);
        assert_eq!(decide(&[], Some(SiteDefault::OptIn), &REQ).decision, Deny);
        assert_eq!(
            decide(&[], Some(SiteDefault::OptOut), &REQ).decision,
            Permit
        );
        let c = consent(vec![prov(Deny, None, None, None)]);
        assert_eq!(decide(&[c], Some(SiteDefault::OptOut), &REQ).decision, Deny);
        // a provision for someone else does not count
        let c = consent(vec![prov(
            Permit,
            Some(Actor::Recipient("other".into())),
            None,
            None,
        )]);
        assert_eq!(decide(&[c], Some(SiteDefault::OptIn), &REQ).decision, Deny);
    }

    #[test]
    fn most_specific_wins() {
        let cat = Some(Actor::Category("ai-vendor".into()));
        let rec = Some(Actor::Recipient("acme".into()));
        // recipient beats category beats anyone
        let c = consent(vec![
            prov(Deny, None, None, None),
            prov(Permit, cat.clone(), None, None),
        ]);
        assert_eq!(decide(&[c], None, &REQ).decision, Permit);
        let c = consent(vec![
            prov(Permit, cat.clone(), Some("ai-training"), Some("1.2.3")),
            prov(Deny, rec.clone(), None, None),
        ]);
        assert_eq!(decide(&[c], None, &REQ).decision, Deny);
        // at the same actor level, one study beats all studies
        let c = consent(vec![
            prov(Deny, rec.clone(), Some("ai-training"), None),
            prov(Permit, rec.clone(), None, Some("1.2.3")),
        ]);
        assert_eq!(decide(&[c], None, &REQ).decision, Permit);
        // then a named purpose beats any purpose
        let c = consent(vec![
            prov(Permit, rec.clone(), None, None),
            prov(Deny, rec.clone(), Some("ai-training"), None),
        ]);
        assert_eq!(decide(&[c], None, &REQ).decision, Deny);
    }

    #[test]
    fn deny_wins_ties_and_inactive_records_do_not_count() {
        let rec = Some(Actor::Recipient("acme".into()));
        let a = consent(vec![prov(Permit, rec.clone(), None, None)]);
        let b = consent(vec![prov(Deny, rec.clone(), None, None)]);
        let o = decide(&[a.clone(), b.clone()], Some(SiteDefault::OptOut), &REQ);
        assert_eq!(o.decision, Deny);
        assert!(o.rule.contains("tie"));
        let mut b2 = b;
        b2.status = "inactive".into();
        assert_eq!(decide(&[a, b2], None, &REQ).decision, Permit);
    }

    #[test]
    fn periods_bound_provisions() {
        let mut p = prov(Deny, None, None, None);
        p.end = normalize_time("2025-05-31", true);
        let c = consent(vec![p.clone()]);
        assert_eq!(
            decide(&[c], Some(SiteDefault::OptOut), &REQ).decision,
            Permit
        );
        p.end = normalize_time("2025-06-01", true);
        let c = consent(vec![p.clone()]);
        assert_eq!(decide(&[c], Some(SiteDefault::OptOut), &REQ).decision, Deny);
        p.end = None;
        p.start = normalize_time("2025-06-02T00:00:00+02:00", false);
        assert_eq!(p.start.as_deref(), Some("2025-06-01T22:00:00Z"));
        let c = consent(vec![p]);
        assert_eq!(
            decide(&[c], Some(SiteDefault::OptOut), &REQ).decision,
            Permit
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("acme-ai_1.x"));
        assert!(!valid_name("../x") && !valid_name("") && !valid_name(".h") && !valid_name("a b"));
    }
}
