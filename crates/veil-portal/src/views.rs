//! What the portal's "where my images went" page and the console's
//! dashboard show: read-only joins of the ledger (keyed references, no
//! PHI) with the site-local study index and the recipient registry.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use veil_ledger::Event;
use veil_release::Site;
use veil_store::portal::StudyIndexRow;
use veil_store::queue::QueueState;

use crate::cache::LedgerCache;
use crate::summary::recipe_summary_toml;
use crate::Result;

/// One study of a history item, from the site-local index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStudy {
    /// StudyDate (`YYYYMMDD`), empty when the input had none.
    pub date: String,
    /// Distinct modalities, sorted (`["CT", "SR"]`).
    pub modalities: Vec<String>,
    /// StudyDescription, empty when absent.
    pub description: String,
    /// Instances in the study.
    pub instances: i64,
}

/// One ledger entry about the patient, for "where my images went".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Ledger position (what a report refers to).
    pub position: u64,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// What happened (`release`, `refusal`, `consent-change`,
    /// `retention-delete`).
    pub event: Event,
    /// The recipient's name (its display name: the registry has no other).
    pub recipient: String,
    /// The recipient's category from the registry, when it has one and
    /// is still registered.
    pub recipient_category: Option<String>,
    /// Purpose of use.
    pub purpose: String,
    /// The studies (usually one: an entry is one patient-study). Empty
    /// when the entry predates the index or the index was erased.
    pub studies: Vec<HistoryStudy>,
    /// `pass`, `fail: N findings`, `not-run`, ...
    pub verification: String,
    /// What the recipient received, in plain language (releases only).
    /// Empty when the recipient's recipe changed since (the text logged
    /// then is no longer held: Veil does not guess) or it was removed.
    pub received: Vec<String>,
    /// For a refusal, why (Veil's words: the consent rule, ambiguity,
    /// verification).
    pub reason: String,
}

/// Every release, refusal, consent change and retention deletion about
/// `patient_ref`, oldest first, with the studies from the site-local
/// index and the recipe in plain language. Staff actions (lookups) are
/// not here: the patient sees roles through `portal_lookups`.
pub fn portal_history(site: &mut Site, patient_ref: &str) -> Result<Vec<HistoryItem>> {
    let mut cache = LedgerCache::new();
    cache.refresh(site, 0)?;
    portal_history_cached(site, &cache, patient_ref)
}

/// [`portal_history`] from a refreshed [`LedgerCache`]: the patient's
/// entries come from its per-patient index and the recipe pinned at each
/// release from its pins, so a page costs the patient's entries, not the
/// ledger's.
pub fn portal_history_cached(
    site: &mut Site,
    cache: &LedgerCache,
    patient_ref: &str,
) -> Result<Vec<HistoryItem>> {
    let mut index: BTreeMap<i64, Vec<StudyIndexRow>> = BTreeMap::new();
    for r in site.store.study_index_for(patient_ref)? {
        index.entry(r.ledger_seq).or_default().push(r);
    }
    let mut recipients: BTreeMap<String, Option<veil_consent::Recipient>> = BTreeMap::new();
    let mut out = Vec::new();
    for &pos in cache.positions_of(patient_ref) {
        let Some(e) = cache.entry(pos) else { continue };
        if !matches!(
            e.event,
            Event::Release | Event::Refusal | Event::ConsentChange | Event::RetentionDelete
        ) {
            continue;
        }
        if !recipients.contains_key(&e.recipient) {
            let r = site.store.recipient(&e.recipient)?;
            recipients.insert(e.recipient.clone(), r);
        }
        let rec = recipients.get(&e.recipient).and_then(Option::as_ref);
        // the recipe text the recipient's latest registration before this
        // entry pinned, by digest: a summary is only shown for the text in
        // force at release
        let received = match (e.event, rec, cache.pinned_before(&e.recipient, pos)) {
            (Event::Release, Some(r), Some((label, digest)))
                if label == e.recipe
                    && veil_ledger::hex(&Sha256::digest(r.recipe_toml.as_bytes())) == digest =>
            {
                recipe_summary_toml(&r.recipe_toml).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        out.push(HistoryItem {
            position: e.seq,
            time: e.time.clone(),
            event: e.event,
            recipient: e.recipient.clone(),
            recipient_category: rec.and_then(|r| r.category.clone()),
            purpose: e.purpose.clone(),
            studies: index
                .get(&(e.seq as i64))
                .into_iter()
                .flatten()
                .map(|r| HistoryStudy {
                    date: r.study_date.clone(),
                    modalities: r
                        .modalities
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                    description: r.description.clone(),
                    instances: r.instances,
                })
                .collect(),
            verification: e.verification.clone(),
            received,
            reason: if e.event == Event::Refusal {
                e.reason.clone()
            } else {
                String::new()
            },
        });
    }
    Ok(out)
}

/// Releases and refusals on one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Studies released.
    pub releases: u64,
    /// Studies refused.
    pub refusals: u64,
}

/// The console's dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// The last 30 days, oldest first, today last (days without any are
    /// listed with zeros, so a chart needs no gap filling).
    pub per_day: Vec<DayCount>,
    /// Flags still open.
    pub open_flags: usize,
    /// Gateway studies per queue state (`received`, `ready`, ...),
    /// summed over routes; empty where the gateway never ran.
    pub queue: BTreeMap<String, i64>,
    /// Entries in the ledger.
    pub ledger_size: u64,
    /// The ledger's root (hex) as verified.
    pub ledger_root: String,
    /// When the last checkpoint was signed (RFC 3339), if any.
    pub last_checkpoint: Option<String>,
    /// Whether `verify_ledger` passed.
    pub ledger_ok: bool,
    /// The first bad position, when it did not.
    pub first_bad_position: Option<u64>,
    /// When that verification ran (unix seconds): the console caches it
    /// per (ledger size, root, latest checkpoint), so it says when.
    pub verified_at: i64,
}

/// The dashboard at `now` (unix seconds). Verifies the whole ledger
/// (what `veil ledger verify` does) now.
pub fn dashboard(site: &mut Site, now: i64) -> Result<Dashboard> {
    let mut cache = LedgerCache::new();
    cache.refresh(site, now)?;
    let report = site.verify_ledger()?;
    dashboard_cached(site, &cache, &report, now, now)
}

/// The dashboard from a refreshed [`LedgerCache`] and a verification
/// `report` run at `verified_at` over the same ledger (the console keeps
/// one per ledger size, root and checkpoint: verifying 10,000 entries on
/// every view is the cost it avoids; any append, checkpoint or detected
/// rewrite runs it again).
pub fn dashboard_cached(
    site: &mut Site,
    cache: &LedgerCache,
    report: &veil_ledger::VerifyReport,
    verified_at: i64,
    now: i64,
) -> Result<Dashboard> {
    let today = now.div_euclid(86_400);
    let mut per_day: Vec<DayCount> = (today - 29..=today)
        .map(|d| DayCount {
            date: chrono::DateTime::from_timestamp(d * 86_400, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            releases: 0,
            refusals: 0,
        })
        .collect();
    for (_, e) in cache.entries() {
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&e.time) else {
            continue;
        };
        let d = t.timestamp().div_euclid(86_400) - (today - 29);
        if let Some(c) = usize::try_from(d).ok().and_then(|i| per_day.get_mut(i)) {
            match e.event {
                Event::Release => c.releases += 1,
                Event::Refusal => c.refusals += 1,
                _ => {}
            }
        }
    }
    let mut queue = BTreeMap::new();
    for (_, state, n) in site.store.queue_counts()? {
        *queue
            .entry(QueueState::as_str(state).to_string())
            .or_default() += n;
    }
    Ok(Dashboard {
        per_day,
        open_flags: site.store.portal_flags(Some("open"))?.len(),
        queue,
        ledger_size: report.entries,
        ledger_root: report.root.clone(),
        last_checkpoint: site.store.checkpoints()?.last().map(|c| c.time.clone()),
        ledger_ok: report.ok,
        first_bad_position: report.first_bad_position,
        verified_at,
    })
}
