//! Flags (issue 19): a patient's reports, and rules that raise flags by
//! themselves. The rules are data ([`FlagRules`], from `[flags]` in
//! `veil.toml`) and read only the ledger and the portal's rows, so
//! [`evaluate`] can run at any time, as often as wanted: every flag is
//! keyed by rule, subject and window (`portal_flags.flag_key`, unique), so
//! a second run raises nothing new.
//!
//! Handling a flag is a staff action in the ledger (who closed it, how);
//! the reason a patient typed stays in `portal_flags`, never in the
//! ledger or an error.

use std::collections::BTreeMap;

use veil_ledger::{Entry, Event};
use veil_release::Site;
use veil_store::portal::FlagRow;

use crate::{random_token, token_hash, PortalError, Result};

/// The rules and their thresholds (`[flags]` in `veil.toml`; the
/// gateway's `FlagsConfig` has the same fields and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlagRules {
    /// Raise when at least this many releases about one patient fall
    /// within `burst_window_hours` (0: off).
    pub burst_releases: u32,
    /// The burst window (hours).
    pub burst_window_hours: u32,
    /// Raise when a recipient's releases today exceed this factor times
    /// its daily average over `volume_baseline_days` (0: off).
    pub volume_factor: f64,
    /// The days before today the average is taken over.
    pub volume_baseline_days: u32,
    /// ... and today's count is at least this (so a recipient's first
    /// few releases are not all "far above its average").
    pub volume_min_count: u32,
    /// Raise when staff look up a patient who has no open flag.
    pub lookup_without_reason: bool,
    /// Raise when a release is refused by a patient's consent after the
    /// patient changed it (a withdrawal).
    pub release_after_withdrawal: bool,
}

impl Default for FlagRules {
    fn default() -> Self {
        FlagRules {
            burst_releases: 10,
            burst_window_hours: 24,
            volume_factor: 5.0,
            volume_baseline_days: 30,
            volume_min_count: 20,
            lookup_without_reason: true,
            release_after_withdrawal: true,
        }
    }
}

/// The rule names stored in `portal_flags.rule_name`.
pub mod rule {
    /// Many releases about one patient in a short time.
    pub const BURST: &str = "burst_releases";
    /// A recipient far above its usual volume.
    pub const VOLUME: &str = "volume";
    /// A staff lookup with no open flag about the patient.
    pub const LOOKUP: &str = "lookup_without_reason";
    /// A release refused by a withdrawn consent.
    pub const WITHDRAWAL: &str = "release_after_withdrawal";
}

/// A flag a rule raised in this evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlag {
    /// Its id.
    pub id: String,
    /// The rule ([`rule`]).
    pub rule: &'static str,
    /// The keyed patient reference; empty for a recipient's volume.
    pub patient_ref: String,
    /// The ledger entry it is about.
    pub ledger_seq: Option<i64>,
    /// Why, in Veil's words (no PHI: counts, recipient names, positions).
    pub reason: String,
}

/// The longest report a patient may write (characters).
pub const MAX_REPORT_CHARS: usize = 2000;

fn new_id() -> Result<String> {
    Ok(token_hash(random_token()?.expose())[..32].to_string())
}

fn unix(e: &Entry) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&e.time)
        .ok()
        .map(|d| d.timestamp())
}

fn raise(site: &mut Site, out: &mut Vec<NewFlag>, key: String, f: NewFlag, now: i64) -> Result<()> {
    let row = FlagRow {
        id: f.id.clone(),
        patient_ref: f.patient_ref.clone(),
        ledger_seq: f.ledger_seq,
        source: "rule".into(),
        rule_name: Some(f.rule.to_string()),
        reason: f.reason.clone(),
        status: "open".into(),
        created_at: now,
        updated_at: now,
    };
    if site.store.portal_insert_flag_keyed(&row, &key)? {
        out.push(f);
    }
    Ok(())
}

/// Runs every rule over the ledger and the portal's rows; returns the
/// flags raised now (none already raised). Why from the ledger rather
/// than hooks in the release path: `veil-release` would need
/// `veil-portal` (a dependency cycle), and a rule over the signed log
/// also sees the releases of `veil release`, the gateway and any other
/// path alike; the web layer calls this after a lookup and on a timer.
pub fn evaluate(site: &mut Site, rules: &FlagRules, now: i64) -> Result<Vec<NewFlag>> {
    let entries = site.entries()?;
    let mut out = Vec::new();
    if rules.burst_releases > 0 {
        burst(site, rules, &entries, &mut out, now)?;
    }
    if rules.volume_factor > 0.0 {
        volume(site, rules, &entries, &mut out, now)?;
    }
    if rules.release_after_withdrawal {
        withdrawal(site, &entries, &mut out, now)?;
    }
    if rules.lookup_without_reason {
        lookups(site, &mut out, now)?;
    }
    Ok(out)
}

/// The lookup rule alone: what the web layer calls right after
/// [`crate::record_lookup`] (it reads no ledger, so it is cheap on every
/// lookup; [`evaluate`] runs it too).
pub fn evaluate_lookups(site: &mut Site, rules: &FlagRules, now: i64) -> Result<Vec<NewFlag>> {
    let mut out = Vec::new();
    if rules.lookup_without_reason {
        lookups(site, &mut out, now)?;
    }
    Ok(out)
}

/// Greedy windows from each patient's first release: a burst keeps the
/// key of its first release however many join it later, so a burst is
/// one flag.
fn burst(
    site: &mut Site,
    r: &FlagRules,
    entries: &[Entry],
    out: &mut Vec<NewFlag>,
    now: i64,
) -> Result<()> {
    let mut by_patient: BTreeMap<&str, Vec<(i64, u64)>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.event == Event::Release) {
        if let (Some(p), Some(t)) = (e.patient_ref.as_deref(), unix(e)) {
            by_patient.entry(p).or_default().push((t, e.seq));
        }
    }
    let window = i64::from(r.burst_window_hours) * 3600;
    let n = r.burst_releases as usize;
    for (p, mut rel) in by_patient {
        rel.sort();
        let mut i = 0;
        while i < rel.len() {
            let j = rel[i..]
                .iter()
                .take_while(|(t, _)| t - rel[i].0 < window)
                .count();
            if j >= n {
                let first = rel[i].1;
                raise(
                    site,
                    out,
                    format!("{}:{p}:{first}", rule::BURST),
                    NewFlag {
                        id: new_id()?,
                        rule: rule::BURST,
                        patient_ref: p.to_string(),
                        ledger_seq: Some(first as i64),
                        reason: format!(
                            "{j} releases about this patient within {} hours, from ledger position {first}",
                            r.burst_window_hours
                        ),
                    },
                    now,
                )?;
                i += j;
            } else {
                i += 1;
            }
        }
    }
    Ok(())
}

/// Today's (UTC) releases per recipient against its daily average over
/// the days before; keyed by recipient and day.
fn volume(
    site: &mut Site,
    r: &FlagRules,
    entries: &[Entry],
    out: &mut Vec<NewFlag>,
    now: i64,
) -> Result<()> {
    let day = now.div_euclid(86_400);
    let base_from = day - i64::from(r.volume_baseline_days);
    let mut today: BTreeMap<&str, u64> = BTreeMap::new();
    let mut before: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.event == Event::Release) {
        let Some(d) = unix(e).map(|t| t.div_euclid(86_400)) else {
            continue;
        };
        if d == day {
            *today.entry(e.recipient.as_str()).or_default() += 1;
        } else if d >= base_from && d < day {
            *before.entry(e.recipient.as_str()).or_default() += 1;
        }
    }
    let days = f64::from(r.volume_baseline_days.max(1));
    for (rec, n) in today {
        let avg = before.get(rec).copied().unwrap_or(0) as f64 / days;
        if n >= u64::from(r.volume_min_count) && n as f64 > r.volume_factor * avg {
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default();
            raise(
                site,
                out,
                format!("{}:{rec}:{date}", rule::VOLUME),
                NewFlag {
                    id: new_id()?,
                    rule: rule::VOLUME,
                    patient_ref: String::new(),
                    ledger_seq: None,
                    reason: format!(
                        "recipient {rec} received {n} studies on {date}; its daily average over the {} days before was {avg:.1}",
                        r.volume_baseline_days
                    ),
                },
                now,
            )?;
        }
    }
    Ok(())
}

/// Whether `e` is a refusal by the patient's own consent (not the site
/// default, not ambiguity or verification): `decide_group` words it
/// `consent: most specific provision: ...`.
fn consent_refusal(e: &Entry) -> bool {
    e.event == Event::Refusal && e.reason.starts_with("consent: most specific provision")
}

/// A consent refusal after a consent change about the same patient: the
/// patient withdrew, and something still tried to release. Keyed by the
/// refusal's position.
fn withdrawal(site: &mut Site, entries: &[Entry], out: &mut Vec<NewFlag>, now: i64) -> Result<()> {
    let mut changed: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries {
        let Some(p) = e.patient_ref.as_deref() else {
            continue;
        };
        if e.event == Event::ConsentChange {
            changed.entry(p).or_insert(e.seq);
        } else if consent_refusal(e) && changed.contains_key(p) {
            raise(
                site,
                out,
                format!("{}:{}", rule::WITHDRAWAL, e.seq),
                NewFlag {
                    id: new_id()?,
                    rule: rule::WITHDRAWAL,
                    patient_ref: p.to_string(),
                    ledger_seq: Some(e.seq as i64),
                    reason: format!(
                        "a release to {} for {} was attempted after the patient's consent changed, and refused",
                        e.recipient, e.purpose
                    ),
                },
                now,
            )?;
        }
    }
    Ok(())
}

/// Lookups in the last 30 days of a patient who had no flag open at the
/// time (a flag raised by this rule is no reason). Keyed by the lookup.
fn lookups(site: &mut Site, out: &mut Vec<NewFlag>, now: i64) -> Result<()> {
    for (id, role, p, at) in site.store.portal_lookups_since(now - 30 * 86_400)? {
        let reason = site.store.portal_flags_for(&p)?.into_iter().any(|f| {
            f.rule_name.as_deref() != Some(rule::LOOKUP)
                && f.created_at <= at
                && (f.status == "open" || f.updated_at >= at)
        });
        if !reason {
            raise(
                site,
                out,
                format!("{}:{id}", rule::LOOKUP),
                NewFlag {
                    id: new_id()?,
                    rule: rule::LOOKUP,
                    patient_ref: p,
                    ledger_seq: None,
                    reason: format!(
                        "a member of staff (role {role}) looked up this patient with no open flag"
                    ),
                },
                now,
            )?;
        }
    }
    Ok(())
}

/// A patient reports a ledger entry about them. Refused (one message,
/// whatever the cause, so no one learns about others' entries) unless the
/// entry at `position` carries the patient's own reference. The text is
/// stored as typed (at most [`MAX_REPORT_CHARS`]) and never logged.
/// `patient_ref` is the signed-in patient's (`Session::subject` of a
/// patient session). While the patient's report on an entry is open, a
/// new one on the same entry returns the open one's id (the first text
/// stays). Returns the flag's id.
pub fn report(
    site: &mut Site,
    patient_ref: &str,
    position: u64,
    reason_text: &str,
    now: i64,
) -> Result<String> {
    let text = reason_text.trim();
    if text.is_empty() || text.chars().count() > MAX_REPORT_CHARS {
        return Err(PortalError::Invalid(format!(
            "a report is 1 to {MAX_REPORT_CHARS} characters"
        )));
    }
    let own = site
        .entries()?
        .get(position as usize)
        .is_some_and(|e| e.patient_ref.as_deref() == Some(patient_ref));
    if !own {
        return Err(PortalError::Invalid("no such entry in your history".into()));
    }
    // one open report per entry: a second one returns the first, so a
    // patient (or a stolen session) cannot fill the console's list
    if let Some(f) = site
        .store
        .portal_flags_for(patient_ref)?
        .into_iter()
        .find(|f| {
            f.source == "patient" && f.status == "open" && f.ledger_seq == Some(position as i64)
        })
    {
        return Ok(f.id);
    }
    let id = new_id()?;
    site.store.portal_insert_flag(&FlagRow {
        id: id.clone(),
        patient_ref: patient_ref.to_string(),
        ledger_seq: Some(position as i64),
        source: "patient".into(),
        rule_name: None,
        reason: text.to_string(),
        status: "open".into(),
        created_at: now,
        updated_at: now,
    })?;
    Ok(id)
}

/// How a member of staff closed a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Looked into and acted on.
    Handled,
    /// Looked into: nothing to do.
    Dismissed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Dismissed => "dismissed",
        }
    }
}

/// Closes an open flag; a staff action in the ledger (who, how, which
/// flag, the patient's keyed reference), in the transaction that closes
/// it. `staff` is the signed-in member of staff (`Session::subject` of a
/// staff session); auditors cannot close flags. Returns the ledger
/// position.
pub fn handle(
    site: &mut Site,
    staff: &str,
    flag_id: &str,
    outcome: Outcome,
    now: i64,
) -> Result<u64> {
    let role = site
        .store
        .portal_staff(staff)?
        .filter(|a| !a.disabled)
        .and_then(|a| a.role)
        .ok_or_else(|| PortalError::Invalid("the staff account is gone or disabled".into()))?;
    if role == crate::Role::Auditor.as_str() {
        return Err(PortalError::Invalid("auditors do not handle flags".into()));
    }
    let flag = site
        .store
        .portal_flag(flag_id)?
        .filter(|f| f.status == "open")
        .ok_or_else(|| PortalError::Invalid("no open flag with this id".into()))?;
    let what = format!(
        "flag {} ({}) {}",
        flag.id,
        flag.rule_name.as_deref().unwrap_or("patient report"),
        outcome.as_str()
    );
    let pref = (!flag.patient_ref.is_empty()).then(|| flag.patient_ref.clone());
    let e = crate::staff::entry(staff, what, pref, now);
    let id = flag.id.clone();
    let pos = site.log_decisions(vec![e], |s, _| {
        if !s.portal_close_flag(&id, outcome.as_str(), now)? {
            return Err(veil_store::StoreError::Invalid(
                "the flag was closed meanwhile".into(),
            ));
        }
        Ok(())
    })?;
    Ok(pos[0])
}

/// Every flag with `status` (`open`, `handled`, `dismissed`; all when
/// `None`), oldest first: the console's list.
pub fn list(site: &mut Site, status: Option<&str>) -> Result<Vec<FlagRow>> {
    Ok(site.store.portal_flags(status)?)
}
