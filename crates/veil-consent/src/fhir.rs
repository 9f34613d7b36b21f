//! FHIR Consent import (R4 and R5) and export (R4).
//!
//! The mapping, from the FHIR specification's structure:
//!
//! * The patient: R4 `Consent.patient`, R5 `Consent.subject`, a Reference
//!   that must carry an `identifier` (system = issuer, value = PatientID):
//!   a bare `Patient/123` reference cannot be matched with DICOM files.
//! * R4: `Consent.provision` is one tree; each node may have a `type`
//!   (`deny` | `permit`) and narrows its parent (`actor`, `purpose`,
//!   `period`, `data`); children inherit what they do not restate. A node
//!   without `type` only scopes its children.
//! * R5: `Consent.decision` (`deny` | `permit`) is the record's base rule
//!   (no constraints); each `provision` is an exception to its parent, so
//!   its sense is the opposite of its parent's.
//! * `actor.reference.identifier`: system `urn:veil:recipient` (a
//!   recipient by name) or `urn:veil:recipient-category` (a category); a
//!   reference `Organization/NAME` also names a recipient.
//! * `purpose` codings: the `code` is the purpose (Veil's purposes are
//!   codes such as `ai-training`; v3 ActReason codes work the same way).
//! * `data.reference.identifier`: system `urn:dicom:uid`, value
//!   `urn:oid:<StudyInstanceUID>`: one study.
//!
//! Anything Veil cannot interpret (an actor or data reference of an unknown
//! kind, a missing patient identifier) rejects the whole import: reading a
//! deny too narrowly would release what the patient refused.

use serde_json::{json, Value};
use veil_core::Phi;

use crate::{normalize_time, Actor, Consent, Decision, Provision};

/// Import errors. They name the resource by its position and the field,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A resource Veil cannot interpret.
    #[error("Consent #{index}: {what}")]
    Invalid {
        /// Position in the file (0-based).
        index: usize,
        /// What is wrong (field names only).
        what: String,
    },
}

const RECIPIENT: &str = "urn:veil:recipient";
const CATEGORY: &str = "urn:veil:recipient-category";
const PURPOSE: &str = "urn:veil:purpose";

/// Reads Consent resources from a single resource, a Bundle or an array.
pub fn import(text: &str) -> Result<Vec<Consent>, FhirError> {
    let v: Value = serde_json::from_str(text)?;
    let resources: Vec<Value> = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) if o.get("resourceType") == Some(&json!("Bundle")) => o
            .get("entry")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .filter_map(|e| e.get("resource").cloned())
                    .collect()
            })
            .unwrap_or_default(),
        _ => vec![v.clone()],
    };
    resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.get("resourceType") == Some(&json!("Consent")))
        .map(|(i, r)| consent(i, r))
        .collect()
}

fn consent(index: usize, r: &Value) -> Result<Consent, FhirError> {
    let bad = |what: &str| FhirError::Invalid {
        index,
        what: what.to_string(),
    };
    let r5 = r.get("subject").is_some() || r.get("decision").is_some();
    let who = r
        .get(if r5 { "subject" } else { "patient" })
        .ok_or_else(|| bad("no patient (R4 `patient`, R5 `subject`)"))?;
    let ident = who
        .get("identifier")
        .ok_or_else(|| bad("the patient reference has no identifier"))?;
    let value = ident
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the patient identifier has no value"))?;
    let mut out = Vec::new();
    let root = Scope::default();
    if r5 {
        let base = match r.get("decision").and_then(Value::as_str) {
            Some(d) => Some(Decision::parse(d).ok_or_else(|| bad("decision is not deny|permit"))?),
            None => None,
        };
        if let Some(d) = base {
            root.emit(d, &mut out);
        }
        for p in r
            .get("provision")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            r5_node(p, base, &root, &mut out).map_err(|w| bad(&w))?;
        }
    } else if let Some(p) = r.get("provision") {
        r4_node(p, &root, &mut out).map_err(|w| bad(&w))?;
    }
    Ok(Consent {
        id: r
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("import-{index}")),
        patient_id: Phi::new(value.trim().to_string()),
        patient_system: ident
            .get("system")
            .and_then(Value::as_str)
            .map(str::to_string),
        status: r
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("active")
            .to_string(),
        date_time: r
            .get("dateTime")
            .or_else(|| r.get("date"))
            .and_then(Value::as_str)
            .and_then(|s| normalize_time(s, false)),
        provisions: out,
    })
}

/// The constraints in force at a node of the provision tree.
#[derive(Debug, Clone, Default)]
struct Scope {
    actors: Vec<Option<Actor>>,
    purposes: Vec<Option<String>>,
    studies: Vec<Option<String>>,
    start: Option<String>,
    end: Option<String>,
}

impl Scope {
    /// Narrows with a provision node's own constraints.
    fn narrow(&self, p: &Value) -> Result<Scope, String> {
        let mut s = self.clone();
        if let Some(a) = p.get("actor").and_then(Value::as_array) {
            s.actors = a.iter().map(actor).collect::<Result<Vec<_>, _>>()?;
        }
        if let Some(a) = p.get("purpose").and_then(Value::as_array) {
            s.purposes = a
                .iter()
                .map(|c| {
                    c.get("code")
                        .and_then(Value::as_str)
                        .map(|x| Some(x.to_string()))
                        .ok_or_else(|| "a purpose coding has no code".to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
        }
        if let Some(a) = p.get("data").and_then(Value::as_array) {
            s.studies = a.iter().map(study).collect::<Result<Vec<_>, _>>()?;
        }
        if let Some(per) = p.get("period") {
            if let Some(st) = per.get("start").and_then(Value::as_str) {
                s.start = Some(normalize_time(st, false).ok_or("bad period.start")?);
            }
            if let Some(en) = per.get("end").and_then(Value::as_str) {
                s.end = Some(normalize_time(en, true).ok_or("bad period.end")?);
            }
        }
        Ok(s)
    }

    /// One provision per combination of actor, purpose and study.
    fn emit(&self, decision: Decision, out: &mut Vec<Provision>) {
        let any = |v: &Vec<Option<String>>| if v.is_empty() { vec![None] } else { v.clone() };
        let actors = if self.actors.is_empty() {
            vec![None]
        } else {
            self.actors.clone()
        };
        for a in &actors {
            for p in any(&self.purposes) {
                for s in any(&self.studies) {
                    out.push(Provision {
                        decision,
                        actor: a.clone(),
                        purpose: p.clone(),
                        start: self.start.clone(),
                        end: self.end.clone(),
                        study_uid: s,
                    });
                }
            }
        }
    }
}

fn actor(a: &Value) -> Result<Option<Actor>, String> {
    let r = a.get("reference").ok_or("an actor has no reference")?;
    if let Some(id) = r.get("identifier") {
        let v = id
            .get("value")
            .and_then(Value::as_str)
            .ok_or("an actor identifier has no value")?;
        return match id.get("system").and_then(Value::as_str) {
            Some(RECIPIENT) => Ok(Some(Actor::Recipient(v.to_string()))),
            Some(CATEGORY) => Ok(Some(Actor::Category(v.to_string()))),
            _ => Err("an actor identifier's system is neither urn:veil:recipient nor urn:veil:recipient-category".into()),
        };
    }
    match r.get("reference").and_then(Value::as_str) {
        Some(s) if s.starts_with("Organization/") => Ok(Some(Actor::Recipient(
            s["Organization/".len()..].to_string(),
        ))),
        _ => Err("an actor reference is neither an identifier nor Organization/NAME".into()),
    }
}

fn study(d: &Value) -> Result<Option<String>, String> {
    let id = d
        .get("reference")
        .and_then(|r| r.get("identifier"))
        .ok_or("a data reference has no identifier")?;
    let v = id.get("value").and_then(Value::as_str).unwrap_or_default();
    match id.get("system").and_then(Value::as_str) {
        Some("urn:dicom:uid") => Ok(Some(v.strip_prefix("urn:oid:").unwrap_or(v).to_string())),
        _ => Err("a data reference's identifier system is not urn:dicom:uid".into()),
    }
}

fn r4_node(p: &Value, parent: &Scope, out: &mut Vec<Provision>) -> Result<(), String> {
    let scope = parent.narrow(p)?;
    if let Some(t) = p.get("type").and_then(Value::as_str) {
        scope.emit(
            Decision::parse(t).ok_or("provision.type is not deny|permit")?,
            out,
        );
    }
    for c in p
        .get("provision")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        r4_node(c, &scope, out)?;
    }
    Ok(())
}

fn r5_node(
    p: &Value,
    parent: Option<Decision>,
    scope: &Scope,
    out: &mut Vec<Provision>,
) -> Result<(), String> {
    let scope = scope.narrow(p)?;
    // an exception to the parent; with no base decision, a top-level
    // provision cannot be read safely
    let d = match parent {
        Some(Decision::Permit) => Decision::Deny,
        Some(Decision::Deny) => Decision::Permit,
        None => {
            return Err("an R5 provision without a Consent.decision to be an exception to".into())
        }
    };
    scope.emit(d, out);
    for c in p
        .get("provision")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        r5_node(c, Some(d), &scope, out)?;
    }
    Ok(())
}

/// Exports consent records as a Bundle (collection) of R4 Consent
/// resources. Each record's provisions become the typed children of an
/// untyped root provision, so no base rule is added that the record did
/// not have.
pub fn export_r4(consents: &[Consent]) -> Value {
    let entries: Vec<Value> = consents
        .iter()
        .map(|c| {
            let mut patient = json!({"identifier": {"value": c.patient_id.expose()}});
            if let Some(s) = &c.patient_system {
                patient["identifier"]["system"] = json!(s);
            }
            let provisions: Vec<Value> = c.provisions.iter().map(provision).collect();
            let mut r = json!({
                "resourceType": "Consent",
                "id": c.id,
                "status": c.status,
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
                "patient": patient,
                "provision": {"provision": provisions}
            });
            if let Some(d) = &c.date_time {
                r["dateTime"] = json!(d);
            }
            json!({"resource": r})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

fn provision(p: &Provision) -> Value {
    let mut v = json!({"type": p.decision.as_str()});
    if let Some(a) = &p.actor {
        let (system, name) = match a {
            Actor::Recipient(n) => (RECIPIENT, n),
            Actor::Category(c) => (CATEGORY, c),
        };
        v["actor"] = json!([{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
            "reference": {"identifier": {"system": system, "value": name}}
        }]);
    }
    if let Some(pu) = &p.purpose {
        v["purpose"] = json!([{"system": PURPOSE, "code": pu}]);
    }
    if p.start.is_some() || p.end.is_some() {
        let mut per = json!({});
        if let Some(s) = &p.start {
            per["start"] = json!(s);
        }
        if let Some(e) = &p.end {
            per["end"] = json!(e);
        }
        v["period"] = per;
    }
    if let Some(s) = &p.study_uid {
        v["data"] = json!([{
            "meaning": "related",
            "reference": {"identifier": {"system": "urn:dicom:uid", "value": format!("urn:oid:{s}")}}
        }]);
    }
    v
}
