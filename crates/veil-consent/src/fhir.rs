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
//! kind, a missing patient identifier, a data reference without a value, an
//! `actor`, `purpose`, `data` or child `provision` that is not an array, a
//! field of the wrong JSON type) rejects the whole import: reading a deny
//! too narrowly, or ignoring a constraint of a permit, would release what
//! the patient refused.
//!
//! A resource without an `id` gets one derived from its content
//! (`sha256-` and the first 128 bits of SHA-256 over the parsed record), so
//! importing the same file twice gives the same records, and two files can
//! never hand out the same id to different patients.
//!
//! The input is bounded ([`Limits`]): its size, its number of resources,
//! its JSON nesting depth and the provisions a record expands to are
//! checked before anything large is allocated, because a consent file
//! comes from outside the site (a 158 MB bundle once took 5.8 GB).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use veil_core::Phi;

use crate::{normalize_time, Actor, Consent, Decision, Provision};

/// Import errors. They name the resource by its position and the field,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The input exceeds one of the [`Limits`].
    #[error("consent input too large: {0}")]
    Limit(String),
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

/// Bounds on one consent import. Why: the file comes from another system
/// (or anyone who can drop a file where the site imports from), and the
/// JSON tree and the provision expansion both grow faster than the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input, in bytes.
    pub max_bytes: usize,
    /// Most resources (Bundle entries or array items).
    pub max_resources: usize,
    /// Deepest nesting of JSON arrays and objects.
    pub max_depth: usize,
    /// Most provisions one record may expand to (actors x purposes x
    /// studies, summed over its provision tree).
    pub max_provisions: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 20,
            max_resources: 100_000,
            max_depth: 64,
            max_provisions: 10_000,
        }
    }
}

/// Reads Consent resources from a single resource, a Bundle or an array,
/// within the default [`Limits`].
pub fn import(text: &str) -> Result<Vec<Consent>, FhirError> {
    import_with(text, &Limits::default())
}

/// [`import`] within the given limits.
pub fn import_with(text: &str, limits: &Limits) -> Result<Vec<Consent>, FhirError> {
    if text.len() > limits.max_bytes {
        return Err(FhirError::Limit(format!(
            "{} bytes, the limit is {} (--max-bytes)",
            text.len(),
            limits.max_bytes
        )));
    }
    check_depth(text.as_bytes(), limits.max_depth)?;
    let v: Value = serde_json::from_str(text)?;
    let resources: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.get("resourceType") == Some(&json!("Bundle")) => match o.get("entry")
        {
            None => Vec::new(),
            Some(Value::Array(es)) => es.iter().filter_map(|e| e.get("resource")).collect(),
            Some(_) => {
                return Err(FhirError::Invalid {
                    index: 0,
                    what: "Bundle.entry is not an array".into(),
                })
            }
        },
        _ => vec![&v],
    };
    if resources.len() > limits.max_resources {
        return Err(FhirError::Limit(format!(
            "{} resources, the limit is {} (--max-resources)",
            resources.len(),
            limits.max_resources
        )));
    }
    resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.get("resourceType") == Some(&json!("Consent")))
        .map(|(i, r)| consent(i, r, limits.max_provisions))
        .collect()
}

/// Refuses JSON nested deeper than `max`, by counting brackets outside
/// strings: one pass, no allocation, before the parser builds a tree (and
/// before the provision tree is walked recursively).
fn check_depth(text: &[u8], max: usize) -> Result<(), FhirError> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in text {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(FhirError::Limit(format!(
                        "JSON nested deeper than {max} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The content-derived id of a record without a FHIR `id`: the same
/// content always gets the same id, different content a different one.
fn content_id(c: &Consent) -> String {
    let canon = json!({
        "patient_id": c.patient_id.expose(),
        "patient_system": c.patient_system,
        "status": c.status,
        "date_time": c.date_time,
        "provisions": c.provisions,
    });
    let d = Sha256::digest(canon.to_string().as_bytes());
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}")
}

/// `key` as an array, if present; an error if present as anything else
/// (a lone object where an array belongs was once silently skipped).
fn opt_array<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Vec<Value>>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(format!("`{key}` is not an array")),
    }
}

/// `key` as a string, if present; an error if present as anything else.
fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

fn consent(index: usize, r: &Value, max_provisions: usize) -> Result<Consent, FhirError> {
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
    let mut out = Out {
        provisions: Vec::new(),
        max: max_provisions,
    };
    let root = Scope::default();
    if r5 {
        let base = match opt_str(r, "decision").map_err(|w| bad(&w))? {
            Some(d) => Some(Decision::parse(d).ok_or_else(|| bad("decision is not deny|permit"))?),
            None => None,
        };
        if let Some(d) = base {
            root.emit(d, &mut out).map_err(|w| bad(&w))?;
        }
        for p in opt_array(r, "provision")
            .map_err(|w| bad(&w))?
            .into_iter()
            .flatten()
        {
            r5_node(p, base, &root, &mut out).map_err(|w| bad(&w))?;
        }
    } else if let Some(p) = r.get("provision") {
        if !p.is_object() {
            return Err(bad("R4 `provision` is not an object"));
        }
        r4_node(p, &root, &mut out).map_err(|w| bad(&w))?;
    }
    let id = opt_str(r, "id").map_err(|w| bad(&w))?.map(str::to_string);
    let mut c = Consent {
        id: String::new(),
        patient_id: Phi::new(value.trim().to_string()),
        patient_system: opt_str(ident, "system")
            .map_err(|w| bad(&w))?
            .map(str::to_string),
        status: opt_str(r, "status")
            .map_err(|w| bad(&w))?
            .unwrap_or("active")
            .to_string(),
        date_time: r
            .get("dateTime")
            .or_else(|| r.get("date"))
            .and_then(Value::as_str)
            .and_then(|s| normalize_time(s, false)),
        provisions: out.provisions,
    };
    c.id = id.unwrap_or_else(|| content_id(&c));
    Ok(c)
}

/// The provisions of one record, bounded.
struct Out {
    provisions: Vec<Provision>,
    max: usize,
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
        if let Some(a) = opt_array(p, "actor")? {
            s.actors = a.iter().map(actor).collect::<Result<Vec<_>, _>>()?;
        }
        if let Some(a) = opt_array(p, "purpose")? {
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
        if let Some(a) = opt_array(p, "data")? {
            s.studies = a.iter().map(study).collect::<Result<Vec<_>, _>>()?;
        }
        if let Some(per) = p.get("period") {
            if let Some(st) = opt_str(per, "start")? {
                s.start = Some(normalize_time(st, false).ok_or("bad period.start")?);
            }
            if let Some(en) = opt_str(per, "end")? {
                s.end = Some(normalize_time(en, true).ok_or("bad period.end")?);
            }
        }
        Ok(s)
    }

    /// One provision per combination of actor, purpose and study, refused
    /// past the record's limit before anything is allocated.
    fn emit(&self, decision: Decision, out: &mut Out) -> Result<(), String> {
        let any = |v: &Vec<Option<String>>| if v.is_empty() { vec![None] } else { v.clone() };
        let n = [self.actors.len(), self.purposes.len(), self.studies.len()]
            .iter()
            .fold(1usize, |acc, k| acc.saturating_mul((*k).max(1)));
        if n.saturating_add(out.provisions.len()) > out.max {
            return Err(format!(
                "the record expands to more than {} provisions",
                out.max
            ));
        }
        let out = &mut out.provisions;
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
        Ok(())
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
    // no value must not read as "no study": that narrowed a deny to nothing
    let v = id
        .get("value")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or("a data reference identifier has no value")?;
    match id.get("system").and_then(Value::as_str) {
        Some("urn:dicom:uid") => {
            let uid = v.strip_prefix("urn:oid:").unwrap_or(v);
            if uid.is_empty() {
                return Err("a data reference identifier has no value".into());
            }
            Ok(Some(uid.to_string()))
        }
        _ => Err("a data reference's identifier system is not urn:dicom:uid".into()),
    }
}

fn r4_node(p: &Value, parent: &Scope, out: &mut Out) -> Result<(), String> {
    let scope = parent.narrow(p)?;
    if let Some(t) = opt_str(p, "type")? {
        scope.emit(
            Decision::parse(t).ok_or("provision.type is not deny|permit")?,
            out,
        )?;
    }
    for c in opt_array(p, "provision")?.into_iter().flatten() {
        r4_node(c, &scope, out)?;
    }
    Ok(())
}

fn r5_node(
    p: &Value,
    parent: Option<Decision>,
    scope: &Scope,
    out: &mut Out,
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
    scope.emit(d, out)?;
    for c in opt_array(p, "provision")?.into_iter().flatten() {
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
