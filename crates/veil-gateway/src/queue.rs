//! `veil queue status|retry|drop`: what an operator does with the queue
//! while `veil serve` runs (or not). The CLI parses and prints; this does.

use std::collections::BTreeMap;

use serde::Serialize;
use veil_store::queue::{QueueState as Q, QueueStudy};
use veil_store::Store;

use crate::spool::Spool;
use crate::Error;

/// One study as `veil queue status` shows it: no PHI (the study is named
/// by its queue id and the keyed reference the ledger uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StudyLine {
    /// Queue id (`veil queue retry|drop ID`).
    pub id: String,
    /// Route.
    pub route: String,
    /// State.
    pub state: String,
    /// The ledger's `study_ref` of the input study.
    pub study_ref: String,
    /// Instances received.
    pub instances: i64,
    /// Failed attempts since the last success or retry.
    pub attempts: i64,
    /// Why refused, or the last failure.
    pub reason: Option<String>,
    /// Ledger positions of its decision.
    pub ledger: Vec<u64>,
}

/// `veil queue status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Studies per route and state.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// Every study not yet finished (receiving to dead-letter), oldest
    /// first; finished ones are counted only.
    pub open: Vec<StudyLine>,
}

impl Status {
    /// Lines of text, no PHI.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (route, m) in &self.counts {
            let parts: Vec<String> = Q::ALL
                .iter()
                .filter_map(|q| m.get(q.as_str()).map(|n| format!("{n} {}", q.as_str())))
                .collect();
            out.push(format!("route {route}: {}", parts.join(", ")));
        }
        for s in &self.open {
            out.push(format!(
                "  {} {} {} study {} ({} instances, {} failed attempts){}",
                s.id,
                s.route,
                s.state,
                s.study_ref,
                s.instances,
                s.attempts,
                s.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        if out.is_empty() {
            out.push("the queue is empty".into());
        }
        out
    }
}

fn finished(q: Q) -> bool {
    matches!(q, Q::Delivered | Q::Refused | Q::Dropped)
}

/// The queue, by route and state.
pub fn status(store: &mut Store) -> Result<Status, Error> {
    let mut st = Status::default();
    for (route, state, n) in store.queue_counts()? {
        st.counts
            .entry(route)
            .or_default()
            .insert(state.as_str().to_string(), usize::try_from(n).unwrap_or(0));
    }
    let open: Vec<Q> = Q::ALL.into_iter().filter(|q| !finished(*q)).collect();
    st.open = store.queue_studies(&open)?.iter().map(line).collect();
    Ok(st)
}

fn line(s: &QueueStudy) -> StudyLine {
    StudyLine {
        id: s.id.clone(),
        route: s.route.clone(),
        state: s.state.as_str().to_string(),
        study_ref: s.study_key.clone(),
        instances: s.instances,
        attempts: s.attempts,
        reason: s.reason.clone(),
        ledger: s.ledger_seqs.clone(),
    }
}

fn study(store: &mut Store, id: &str) -> Result<QueueStudy, Error> {
    store
        .queue_study(id)?
        .ok_or_else(|| Error::UnknownStudy(id.to_string()))
}

/// `veil queue retry ID`: a dead-letter study goes back to where it
/// failed (delivery when it was decided and logged, else the decision),
/// with its attempts reset. Returns its new state.
pub fn retry(store: &mut Store, id: &str, now: i64) -> Result<Q, Error> {
    let s = study(store, id)?;
    let to = if s.decision.is_some() {
        Q::Delivering
    } else {
        Q::Ready
    };
    store.queue_transition(id, &[Q::DeadLetter], to, now)?;
    tracing::info!(study = %id, to = to.as_str(), "queue: dead-letter study retried");
    Ok(to)
}

/// `veil queue drop ID`: a dead-letter study is given up: marked dropped,
/// then its spooled instances and staged outputs are deleted (logged).
/// Its ledger entries stay (a release decision that was not delivered).
pub fn drop_study(store: &mut Store, spool: &Spool, id: &str, now: i64) -> Result<usize, Error> {
    study(store, id)?;
    store.queue_transition(id, &[Q::DeadLetter], Q::Dropped, now)?;
    tracing::info!(study = %id, "queue: dead-letter study dropped");
    clear(store, spool, id, now)
}

/// Deletes a finished study's spool files (inputs and work folder), logs
/// it, and records it. Safe to repeat after a crash: files already gone
/// are not an error. Returns the files deleted.
pub(crate) fn clear(store: &mut Store, spool: &Spool, id: &str, now: i64) -> Result<usize, Error> {
    let mut n = 0;
    for (_, name) in store.queue_instances(id)? {
        n += usize::from(spool.remove_instance(&name)?);
    }
    spool.remove_work(id)?;
    tracing::info!(study = %id, instances = n, "spool: deleted a finished study's instances");
    store.queue_cleared(id, now)?;
    Ok(n)
}
