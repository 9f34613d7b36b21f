//! The gateway's queue (`veil serve`, `veil queue`): one row per study per
//! route, its spooled instances and its staged outputs (migration 5).
//!
//! A study moves `receiving` -> `ready` (no instance arrived for the
//! route's stable time) -> `decided` (ledger entries written, outputs
//! staged: decision `released` or `refused`) -> `delivering` ->
//! `delivered`, or `refused` once a refused study's spool is cleared, or
//! `dead-letter` (too many failed attempts, with a reason) -> back by
//! `veil queue retry`, or `dropped` by `veil queue drop`.
//!
//! Every transition is a guarded `UPDATE ... WHERE state = ...`: a
//! transition that finds the study elsewhere changes nothing and says so,
//! so two processes (or a process and `veil queue`) never both act on the
//! same study. Nothing here holds PHI: studies are named by keyed hashes,
//! instances by keyed hashes and random spool names, outputs by their
//! pseudonymous relative paths; reasons are written without values.

use crate::{Store, StoreError, Val};

/// Where a study is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueueState {
    /// Instances are arriving.
    Receiving,
    /// Stable: to be decided.
    Ready,
    /// Logged (released or refused); outputs staged when released.
    Decided,
    /// Delivery started (attempts counted).
    Delivering,
    /// Every output delivered.
    Delivered,
    /// Refused; its spool cleared.
    Refused,
    /// Parked after too many failures, with a reason.
    DeadLetter,
    /// Removed by `veil queue drop`.
    Dropped,
}

impl QueueState {
    /// Every state, in the order of the life of a study.
    pub const ALL: [QueueState; 8] = [
        QueueState::Receiving,
        QueueState::Ready,
        QueueState::Decided,
        QueueState::Delivering,
        QueueState::Delivered,
        QueueState::Refused,
        QueueState::DeadLetter,
        QueueState::Dropped,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Receiving => "receiving",
            QueueState::Ready => "ready",
            QueueState::Decided => "decided",
            QueueState::Delivering => "delivering",
            QueueState::Delivered => "delivered",
            QueueState::Refused => "refused",
            QueueState::DeadLetter => "dead-letter",
            QueueState::Dropped => "dropped",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<QueueState> {
        QueueState::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// One study of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStudy {
    /// Random id (hex): the name `veil queue` uses.
    pub id: String,
    /// The route (from `veil.toml`).
    pub route: String,
    /// Keyed hash of the StudyInstanceUID (the ledger's `study_ref`).
    pub study_key: String,
    /// Where it is.
    pub state: QueueState,
    /// Instances received.
    pub instances: i64,
    /// First instance (unix seconds).
    pub first_received_at: i64,
    /// Last instance (unix seconds).
    pub last_received_at: i64,
    /// `released` or `refused`, once decided.
    pub decision: Option<String>,
    /// Why refused, or the last failure (no PHI).
    pub reason: Option<String>,
    /// Ledger positions of its decision.
    pub ledger_seqs: Vec<u64>,
    /// Failed attempts (processing or delivery) since the last success or
    /// retry.
    pub attempts: i64,
    /// When the next attempt is due (unix seconds).
    pub next_attempt_at: Option<i64>,
    /// When its spool files were deleted.
    pub cleared_at: Option<i64>,
}

/// What [`Store::queue_receive`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The study the instance joined.
    pub study_id: String,
    /// The instance was already recorded for this study (a sender's
    /// retry): this spool name holds it, and the new copy is not needed.
    pub already: Option<String>,
}

const STUDY_COLS: &str = "SELECT id, route, study_key, state, instances, first_received_at, last_received_at, decision, reason, ledger_seqs, attempts, next_attempt_at, cleared_at FROM queue_studies";

fn study_row(r: &[Val]) -> Result<QueueStudy, StoreError> {
    let t = |i: usize| r[i].text().map(str::to_string);
    let state = t(3)
        .as_deref()
        .and_then(QueueState::parse)
        .ok_or_else(|| StoreError::Corrupt("queue_studies.state".into()))?;
    Ok(QueueStudy {
        id: t(0).unwrap_or_default(),
        route: t(1).unwrap_or_default(),
        study_key: t(2).unwrap_or_default(),
        state,
        instances: r[4].int().unwrap_or(0),
        first_received_at: r[5].int().unwrap_or(0),
        last_received_at: r[6].int().unwrap_or(0),
        decision: t(7),
        reason: t(8),
        ledger_seqs: match t(9) {
            Some(j) => serde_json::from_str(&j)
                .map_err(|_| StoreError::Corrupt("queue_studies.ledger_seqs".into()))?,
            None => Vec::new(),
        },
        attempts: r[10].int().unwrap_or(0),
        next_attempt_at: r[11].int(),
        cleared_at: r[12].int(),
    })
}

/// A transition that found the study in another state: someone else (a
/// second process, `veil queue`) moved it first.
fn moved(id: &str, to: QueueState) -> StoreError {
    StoreError::Invalid(format!(
        "queue study {id} is not in a state that can become {}",
        to.as_str()
    ))
}

impl Store {
    /// Records one received instance, already durable in the spool as
    /// `spool_name`: it joins the route's `receiving` study with this key,
    /// or starts one (`new_id`) when there is none (a study that arrives
    /// again after it was decided is a new one). One transaction, so the
    /// instance and its study's counters commit together. An instance the
    /// study already holds (same `instance_key`: a sender's retry after a
    /// lost acknowledgement) is not recorded twice.
    pub fn queue_receive(
        &mut self,
        route: &str,
        study_key: &str,
        instance_key: &str,
        spool_name: &str,
        new_id: &str,
        now: i64,
    ) -> Result<Received, StoreError> {
        self.transaction(|s| {
            let open = s.query(
                "SELECT id FROM queue_studies WHERE route = ? AND study_key = ? AND state = 'receiving'",
                &[Val::t(route), Val::t(study_key)],
            )?;
            // joining is a guarded update, first: it holds the study's row
            // until commit, so a concurrent "ready" mark either waits and
            // then sees this arrival, or came first and this instance
            // starts a new study; it never joins a study already decided
            let joined = match open.first().and_then(|r| r[0].text()) {
                Some(id) => {
                    let n = s.exec(
                        "UPDATE queue_studies SET last_received_at = ?, updated_at = ? WHERE id = ? AND state = 'receiving'",
                        &[Val::i(now), Val::i(now), Val::t(id)],
                    )?;
                    (n == 1).then(|| id.to_string())
                }
                None => None,
            };
            let id = match joined {
                Some(id) => id,
                None => {
                    s.exec(
                        "INSERT INTO queue_studies (id, route, study_key, state, instances, first_received_at, last_received_at, attempts, updated_at) VALUES (?, ?, ?, 'receiving', 0, ?, ?, 0, ?)",
                        &[Val::t(new_id), Val::t(route), Val::t(study_key), Val::i(now), Val::i(now), Val::i(now)],
                    )?;
                    new_id.to_string()
                }
            };
            let have = s.query(
                "SELECT spool_name FROM queue_instances WHERE study_id = ? AND instance_key = ?",
                &[Val::t(&id), Val::t(instance_key)],
            )?;
            if let Some(name) = have.first().and_then(|r| r[0].text()) {
                return Ok(Received {
                    study_id: id,
                    already: Some(name.to_string()),
                });
            }
            s.exec(
                "INSERT INTO queue_instances (study_id, instance_key, spool_name, received_at) VALUES (?, ?, ?, ?)",
                &[Val::t(&id), Val::t(instance_key), Val::t(spool_name), Val::i(now)],
            )?;
            s.exec(
                "UPDATE queue_studies SET instances = instances + 1 WHERE id = ?",
                &[Val::t(&id)],
            )?;
            Ok(Received {
                study_id: id,
                already: None,
            })
        })
    }

    /// Marks the route's studies that received nothing since `cutoff`
    /// (unix seconds) `ready`; returns how many.
    pub fn queue_mark_ready(
        &mut self,
        route: &str,
        cutoff: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.exec(
            "UPDATE queue_studies SET state = 'ready', updated_at = ? WHERE route = ? AND state = 'receiving' AND last_received_at <= ?",
            &[Val::i(now), Val::t(route), Val::i(cutoff)],
        )
    }

    /// Studies in any of `states` (all when empty), oldest first. The
    /// filter is in SQL: the table keeps finished studies (for `veil
    /// queue status` and audit), and a tick must not read them all.
    pub fn queue_studies(&mut self, states: &[QueueState]) -> Result<Vec<QueueStudy>, StoreError> {
        self.queue_select(states, false)
    }

    /// Finished studies (delivered, refused, dropped) whose spool files
    /// are not yet recorded deleted: a crash cut their cleanup short.
    pub fn queue_uncleared(&mut self) -> Result<Vec<QueueStudy>, StoreError> {
        self.queue_select(
            &[
                QueueState::Delivered,
                QueueState::Refused,
                QueueState::Dropped,
            ],
            true,
        )
    }

    fn queue_select(
        &mut self,
        states: &[QueueState],
        uncleared: bool,
    ) -> Result<Vec<QueueStudy>, StoreError> {
        let mut sql = format!("{STUDY_COLS} WHERE 1 = 1");
        if !states.is_empty() {
            sql.push_str(" AND state IN (");
            sql.push_str(&vec!["?"; states.len()].join(", "));
            sql.push(')');
        }
        if uncleared {
            sql.push_str(" AND cleared_at IS NULL");
        }
        sql.push_str(" ORDER BY first_received_at, id");
        let params: Vec<Val> = states.iter().map(|q| Val::t(q.as_str())).collect();
        self.query(&sql, &params)?
            .iter()
            .map(|r| study_row(r))
            .collect()
    }

    /// How many studies each route has in each state.
    pub fn queue_counts(&mut self) -> Result<Vec<(String, QueueState, i64)>, StoreError> {
        let rows = self.query(
            "SELECT route, state, COUNT(*) FROM queue_studies GROUP BY route, state ORDER BY route, state",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let state = r[1]
                    .text()
                    .and_then(QueueState::parse)
                    .ok_or_else(|| StoreError::Corrupt("queue_studies.state".into()))?;
                Ok((
                    r[0].text().unwrap_or_default().to_string(),
                    state,
                    r[2].int().unwrap_or(0),
                ))
            })
            .collect()
    }

    /// One study by id.
    pub fn queue_study(&mut self, id: &str) -> Result<Option<QueueStudy>, StoreError> {
        let rows = self.query(&format!("{STUDY_COLS} WHERE id = ?"), &[Val::t(id)])?;
        rows.first().map(|r| study_row(r)).transpose()
    }

    /// A study's spooled instances: (instance key, spool name).
    pub fn queue_instances(&mut self, id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.query(
            "SELECT instance_key, spool_name FROM queue_instances WHERE study_id = ? ORDER BY instance_key",
            &[Val::t(id)],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r[0].text().unwrap_or_default().to_string(),
                    r[1].text().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// The spool names of every study whose spool is not yet cleared:
    /// what the spool may hold (anything else there was never recorded,
    /// so never acknowledged).
    pub fn queue_live_spool_names(&mut self) -> Result<Vec<String>, StoreError> {
        let rows = self.query(
            "SELECT i.spool_name FROM queue_instances i JOIN queue_studies s ON s.id = i.study_id WHERE s.cleared_at IS NULL",
            &[],
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| r[0].text().map(str::to_string))
            .collect())
    }

    /// Records a `ready` study's decision: `decided`, with its ledger
    /// positions and, when released, its staged outputs (not yet
    /// delivered). Meant for the transaction that appends its ledger
    /// entries (`veil_release::Site::log_decisions`): a study found in
    /// another state is an error, which rolls the entries back too.
    pub fn queue_decide(
        &mut self,
        id: &str,
        released: bool,
        reason: Option<&str>,
        seqs: &[u64],
        outputs: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE queue_studies SET state = 'decided', decision = ?, reason = ?, ledger_seqs = ?, attempts = 0, next_attempt_at = NULL, updated_at = ? WHERE id = ? AND state = 'ready'",
            &[
                Val::t(if released { "released" } else { "refused" }),
                Val::ot(reason),
                Val::t(serde_json::to_string(seqs).unwrap_or_default()),
                Val::i(now),
                Val::t(id),
            ],
        )?;
        if n != 1 {
            return Err(moved(id, QueueState::Decided));
        }
        for o in outputs {
            self.exec(
                "INSERT INTO queue_outputs (study_id, name, delivered_at) VALUES (?, ?, NULL)",
                &[Val::t(id), Val::t(o)],
            )?;
        }
        Ok(())
    }

    /// A study's staged outputs: (name, delivered).
    pub fn queue_outputs(&mut self, id: &str) -> Result<Vec<(String, bool)>, StoreError> {
        let rows = self.query(
            "SELECT name, delivered_at FROM queue_outputs WHERE study_id = ? ORDER BY name",
            &[Val::t(id)],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r[0].text().unwrap_or_default().to_string(),
                    r[1].int().is_some(),
                )
            })
            .collect())
    }

    /// Records that one output reached the destination.
    pub fn queue_output_delivered(
        &mut self,
        id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE queue_outputs SET delivered_at = ? WHERE study_id = ? AND name = ? AND delivered_at IS NULL",
            &[Val::i(now), Val::t(id), Val::t(name)],
        )?;
        Ok(())
    }

    /// Moves a study from one of `from` to `to`; an error when it is in
    /// none of them. `to` = `delivering`, `delivered`, `refused`,
    /// `dropped` keep the attempts; `ready` and `delivering` from
    /// `dead-letter` (a retry) reset them.
    pub fn queue_transition(
        &mut self,
        id: &str,
        from: &[QueueState],
        to: QueueState,
        now: i64,
    ) -> Result<(), StoreError> {
        let reset = from == [QueueState::DeadLetter];
        let mut sql = String::from("UPDATE queue_studies SET state = ?, updated_at = ?");
        if reset {
            sql.push_str(", attempts = 0, next_attempt_at = NULL");
        }
        sql.push_str(" WHERE id = ? AND state IN (");
        sql.push_str(&vec!["?"; from.len()].join(", "));
        sql.push(')');
        let mut params = vec![Val::t(to.as_str()), Val::i(now), Val::t(id)];
        params.extend(from.iter().map(|f| Val::t(f.as_str())));
        if self.exec(&sql, &params)? != 1 {
            return Err(moved(id, to));
        }
        Ok(())
    }

    /// Records a failed attempt (processing or delivery) with its reason:
    /// the next is due at `next_attempt_at`, or, when `None`, the study is
    /// parked in `dead-letter`. Returns the attempts so far.
    pub fn queue_attempt_failed(
        &mut self,
        id: &str,
        reason: &str,
        next_attempt_at: Option<i64>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let n = match next_attempt_at {
            Some(t) => self.exec(
                "UPDATE queue_studies SET attempts = attempts + 1, reason = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND state IN ('ready', 'decided', 'delivering')",
                &[Val::t(reason), Val::i(t), Val::i(now), Val::t(id)],
            )?,
            None => self.exec(
                "UPDATE queue_studies SET attempts = attempts + 1, reason = ?, next_attempt_at = NULL, state = 'dead-letter', updated_at = ? WHERE id = ? AND state IN ('ready', 'decided', 'delivering')",
                &[Val::t(reason), Val::i(now), Val::t(id)],
            )?,
        };
        if n != 1 {
            return Err(moved(id, QueueState::DeadLetter));
        }
        Ok(self
            .queue_study(id)?
            .map(|s| s.attempts)
            .unwrap_or_default())
    }

    /// Records that a finished study's spool files (inputs and staged
    /// outputs) are deleted.
    pub fn queue_cleared(&mut self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE queue_studies SET cleared_at = ?, updated_at = ? WHERE id = ? AND cleared_at IS NULL",
            &[Val::i(now), Val::i(now), Val::t(id)],
        )?;
        Ok(())
    }
}
