//! A patient's sharing choices and sharing requests (issue 19), on the
//! consent model of `veil-consent` and the consent-change path of
//! `veil consent set` ([`Site::set_consent_by_ref`]): every change is a
//! new version of the patient's consent record with its own ledger entry,
//! in force for the next release. Nothing here decides a release: the
//! release path reads the consent records as it always does.
//!
//! **Sharing requests**, the smallest mechanism that fits the model: a
//! release for an opt-in purpose refused because the patient's consent
//! has no provision for it (the refusal's reason is the decision rule's
//! "no provision applies ... opt-in") is listed to the patient as a
//! request, one per recipient and purpose. Approving records a permit
//! provision for that recipient and purpose (all studies: the ledger
//! holds keyed study references, never the UIDs a study-level provision
//! needs), so the next release to that recipient for that purpose
//! includes the studies; declining records a deny provision, so it keeps
//! refusing them. Either way the request is answered: it is no longer
//! listed as pending, since a provision now applies.

use std::collections::BTreeMap;

use veil_consent::{Actor, Decision, Provision, Request, SiteDefault};
use veil_ledger::Event;
use veil_release::Site;

use crate::{PortalError, Result};

/// Where the portal's consent changes come from (the record version's
/// source, in the store and the ledger entry).
pub const SOURCE: &str = "veil portal";

/// One choice a patient can make: a purpose, for every recipient or for
/// one category of recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Purpose of use.
    pub purpose: String,
    /// A recipient category, or `None` for every recipient.
    pub category: Option<String>,
    /// The site default for the purpose (`None`: none configured, which
    /// the rule treats as opt-in).
    pub default: Option<SiteDefault>,
    /// Whether the patient's images are shared now for this choice (the
    /// decision rule's answer for a recipient of the category).
    pub shared: bool,
    /// Whether a provision of the patient decides it (otherwise the site
    /// default does).
    pub by_patient: bool,
    /// The recipients that received this patient's studies for this
    /// purpose (and category): a withdrawal means they will be told.
    pub recipients_told: Vec<String>,
}

fn decide_now(
    consents: &[veil_consent::Consent],
    default: Option<SiteDefault>,
    recipient: &str,
    category: Option<&str>,
    purpose: &str,
) -> veil_consent::Outcome {
    let now = veil_consent::now();
    veil_consent::decide(
        consents,
        default,
        &Request {
            recipient,
            category,
            purpose,
            study_uid: "",
            now: &now,
        },
    )
}

fn by_provision(o: &veil_consent::Outcome) -> bool {
    !o.rule.starts_with("no provision applies")
}

/// The choices a patient has: one per purpose the site knows (site
/// defaults and registered recipients' purposes), then one per category
/// and purpose its recipients are registered for.
pub fn choices(site: &mut Site, patient_ref: &str) -> Result<Vec<Choice>> {
    let recipients = site.store.recipients()?;
    let defaults: BTreeMap<String, SiteDefault> = site.store.defaults()?.into_iter().collect();
    let mut scopes: Vec<(String, Option<String>)> = Vec::new();
    let mut purposes: Vec<String> = defaults.keys().cloned().collect();
    purposes.extend(recipients.iter().flat_map(|r| r.purposes.iter().cloned()));
    purposes.sort();
    purposes.dedup();
    for p in &purposes {
        scopes.push((p.clone(), None));
    }
    let mut cats: Vec<(String, Option<String>)> = recipients
        .iter()
        .filter_map(|r| r.category.as_ref().map(|c| (r, c)))
        .flat_map(|(r, c)| r.purposes.iter().map(|p| (p.clone(), Some(c.clone()))))
        .collect();
    cats.sort();
    cats.dedup();
    scopes.extend(cats);
    let consents = site.store.consents_for(patient_ref)?;
    // past releases: recipient, its category now, purpose
    let released: Vec<(String, Option<String>, String)> = site
        .disclosures_by_ref(patient_ref)?
        .entries
        .into_iter()
        .filter(|d| d.entry.event == Event::Release)
        .map(|d| {
            let cat = recipients
                .iter()
                .find(|r| r.name == d.entry.recipient)
                .and_then(|r| r.category.clone());
            (d.entry.recipient, cat, d.entry.purpose)
        })
        .collect();
    Ok(scopes
        .into_iter()
        .map(|(purpose, category)| {
            let default = defaults.get(&purpose).copied();
            let o = decide_now(&consents, default, "", category.as_deref(), &purpose);
            let mut told: Vec<String> = released
                .iter()
                .filter(|(_, c, p)| {
                    *p == purpose && (category.is_none() || c.as_ref() == category.as_ref())
                })
                .map(|(r, _, _)| r.clone())
                .collect();
            told.sort();
            told.dedup();
            Choice {
                shared: o.decision == Decision::Permit,
                by_patient: by_provision(&o),
                default,
                recipients_told: told,
                purpose,
                category,
            }
        })
        .collect())
}

/// Records the patient's choice for `purpose` (and `category`, or every
/// recipient): a permit or deny provision, as `veil consent set` records
/// one, with its ledger entry; `None` takes the patient's provision back,
/// so the hospital's default decides again ([`Site::reset_consent_by_ref`]).
/// Only a choice [`choices`] offers is accepted. Returns the past
/// recipients to tell (the release path's own notify list).
pub fn set_choice(
    site: &mut Site,
    patient_ref: &str,
    purpose: &str,
    category: Option<&str>,
    decision: Option<Decision>,
) -> Result<Vec<veil_release::Notify>> {
    let offered = choices(site, patient_ref)?
        .iter()
        .any(|c| c.purpose == purpose && c.category.as_deref() == category);
    if !offered {
        return Err(PortalError::Invalid("no such choice".into()));
    }
    let p = Provision {
        decision: decision.unwrap_or(Decision::Deny),
        actor: category.map(|c| Actor::Category(c.to_string())),
        purpose: Some(purpose.to_string()),
        start: None,
        end: None,
        study_uid: None,
    };
    Ok(match decision {
        Some(_) => site.set_consent_by_ref(patient_ref, p, SOURCE)?,
        None => site.reset_consent_by_ref(patient_ref, p, SOURCE)?,
    })
}

/// Where a sharing request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for the patient's answer.
    Pending,
    /// The patient (or another provision) permits it now.
    Approved,
    /// The patient (or another provision) refuses it now.
    Declined,
}

/// A sharing request: releases to one recipient for one opt-in purpose,
/// refused for want of the patient's permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingRequest {
    /// The ledger position of the latest such refusal (the request's id).
    pub position: u64,
    /// The recipient.
    pub recipient: String,
    /// Its category, when registered with one.
    pub category: Option<String>,
    /// Purpose of use.
    pub purpose: String,
    /// Date of the latest refusal (`YYYY-MM-DD`).
    pub date: String,
    /// Studies refused (refusal entries).
    pub studies: usize,
    /// Where it stands now.
    pub state: RequestState,
}

/// Is this refusal reason the decision rule's "opt-in, no provision"?
pub fn is_opt_in_refusal(reason: &str) -> bool {
    reason.starts_with("consent: no provision applies") && reason.contains("opt-in")
}

/// The patient's sharing requests, oldest first (see the module
/// documentation). A request whose purpose the site has since made
/// opt-out, with no provision, is not listed: nothing waits on the
/// patient any more.
pub fn requests(site: &mut Site, patient_ref: &str) -> Result<Vec<SharingRequest>> {
    let d = site.disclosures_by_ref(patient_ref)?;
    let mut groups: BTreeMap<(String, String), SharingRequest> = BTreeMap::new();
    for x in &d.entries {
        let e = &x.entry;
        if e.event != Event::Refusal || !is_opt_in_refusal(&e.reason) {
            continue;
        }
        let g = groups
            .entry((e.recipient.clone(), e.purpose.clone()))
            .or_insert_with(|| SharingRequest {
                position: x.position,
                recipient: e.recipient.clone(),
                category: None,
                purpose: e.purpose.clone(),
                date: String::new(),
                studies: 0,
                state: RequestState::Pending,
            });
        g.position = x.position;
        g.date = e.time.get(..10).unwrap_or(&e.time).to_string();
        g.studies += 1;
    }
    let consents = site.store.consents_for(patient_ref)?;
    let mut out = Vec::new();
    for mut r in groups.into_values() {
        r.category = site.store.recipient(&r.recipient)?.and_then(|x| x.category);
        let default = site.store.default_for(&r.purpose)?;
        let o = decide_now(
            &consents,
            default,
            &r.recipient,
            r.category.as_deref(),
            &r.purpose,
        );
        r.state = match (by_provision(&o), o.decision) {
            (false, Decision::Deny) => RequestState::Pending,
            (false, Decision::Permit) => continue,
            (true, Decision::Permit) => RequestState::Approved,
            (true, Decision::Deny) => RequestState::Declined,
        };
        out.push(r);
    }
    out.sort_by_key(|r| r.position);
    Ok(out)
}

/// Answers the patient's pending request identified by `position`:
/// approving records a permit provision for its recipient and purpose,
/// declining a deny provision (each a consent change with its ledger
/// entry). `Ok(false)` when the patient has no pending request there (the
/// page answers 404: another patient's, or already answered).
pub fn answer_request(
    site: &mut Site,
    patient_ref: &str,
    position: u64,
    approve: bool,
) -> Result<bool> {
    let Some(r) = requests(site, patient_ref)?
        .into_iter()
        .find(|r| r.position == position && r.state == RequestState::Pending)
    else {
        return Ok(false);
    };
    let p = Provision {
        decision: if approve {
            Decision::Permit
        } else {
            Decision::Deny
        },
        actor: Some(Actor::Recipient(r.recipient)),
        purpose: Some(r.purpose),
        start: None,
        end: None,
        study_uid: None,
    };
    site.set_consent_by_ref(patient_ref, p, SOURCE)?;
    Ok(true)
}
