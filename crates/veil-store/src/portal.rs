//! The patient portal's and the staff console's rows (migration 6), and
//! the site-local study index and flag keys (migration 7).
//!
//! Storage only: the rules (what expires when, how many failed sign-ins
//! lock a subject out, what a password must be) live in crate
//! `veil-portal`, which calls these methods. Every method takes the time
//! as unix seconds from its caller, so the rules can be tested with an
//! injected clock. Nothing here receives a raw token, password or patient
//! ID: tokens arrive as SHA-256 hashes, passwords as argon2id PHC
//! strings, patients as the ledger's keyed reference.

use crate::{Store, StoreError, Val};

/// An invitation, as stored (its token only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    /// SHA-256 of the token (hex).
    pub token_hash: String,
    /// The keyed patient reference.
    pub patient_ref: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: unusable from then on.
    pub expires_at: i64,
    /// Unix seconds, once redeemed.
    pub used_at: Option<i64>,
}

/// A patient's or a staff member's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// The patient reference or the staff name.
    pub subject: String,
    /// Staff only: `admin`, `reviewer` or `auditor`.
    pub role: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The nonce the TOTP secret is derived from, once enrolled.
    pub totp_nonce: Option<String>,
    /// Staff only: a disabled account cannot sign in.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A session, as stored (its token only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the session token (hex).
    pub token_hash: String,
    /// `patient` or `staff`.
    pub kind: String,
    /// The patient reference or the staff name.
    pub subject: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: idle expiry counts from here.
    pub last_seen_at: i64,
    /// Unix seconds: the absolute end.
    pub expires_at: i64,
    /// The session's CSRF token (not a credential on its own: it is only
    /// accepted together with the session cookie).
    pub csrf_token: String,
}

/// A flag raised on a patient's record (by the patient or by a rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    /// Random id (hex).
    pub id: String,
    /// The keyed patient reference.
    pub patient_ref: String,
    /// The ledger entry it is about, if any.
    pub ledger_seq: Option<i64>,
    /// `patient` or `rule`.
    pub source: String,
    /// The rule that raised it (source `rule`).
    pub rule_name: Option<String>,
    /// Why (the patient's words, or the rule's).
    pub reason: String,
    /// `open`, `handled` or `dismissed`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One decided study in the site-local study index (migration 7): what
/// the patient needs to recognise a study in "where my images went".
/// PHI-adjacent (a date, a modality and a description, joined to the
/// patient's keyed reference): it stays in the site's store, never enters
/// the ledger, and never leaves the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyIndexRow {
    /// The ledger position of the study's release or refusal.
    pub ledger_seq: i64,
    /// The keyed patient reference.
    pub patient_ref: String,
    /// StudyDate as in the input (`YYYYMMDD`), empty when absent.
    pub study_date: String,
    /// Distinct modalities, sorted, joined with `,` (`CT,SR`).
    pub modalities: String,
    /// StudyDescription, empty when absent.
    pub description: String,
    /// Instances in the study (input side).
    pub instances: i64,
}

const FLAG_STATUSES: [&str; 3] = ["open", "handled", "dismissed"];

fn int(v: &Val, what: &str) -> Result<i64, StoreError> {
    v.int()
        .ok_or_else(|| StoreError::Corrupt(format!("{what} is not a number")))
}

fn text(v: &Val) -> String {
    v.text().unwrap_or_default().to_string()
}

impl Store {
    // ---- invitations --------------------------------------------------------

    /// Records an invitation.
    pub fn portal_insert_invitation(&mut self, r: &InvitationRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO portal_invitations (token_hash, patient_ref, created_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?)",
            &[
                Val::t(&r.token_hash),
                Val::t(&r.patient_ref),
                Val::i(r.created_at),
                Val::i(r.expires_at),
                Val::Int(r.used_at),
            ],
        )?;
        Ok(())
    }

    /// The invitation whose token hashes to `token_hash`.
    pub fn portal_invitation(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<InvitationRow>, StoreError> {
        let rows = self.query(
            "SELECT token_hash, patient_ref, created_at, expires_at, used_at FROM portal_invitations WHERE token_hash = ?",
            &[Val::t(token_hash)],
        )?;
        rows.first()
            .map(|r| {
                Ok(InvitationRow {
                    token_hash: text(&r[0]),
                    patient_ref: text(&r[1]),
                    created_at: int(&r[2], "portal_invitations.created_at")?,
                    expires_at: int(&r[3], "portal_invitations.expires_at")?,
                    used_at: r[4].int(),
                })
            })
            .transpose()
    }

    /// Marks an invitation used, only if it is unused and unexpired at
    /// `now`: a guarded update, so two redemptions of one token cannot
    /// both succeed. True when this call used it.
    pub fn portal_use_invitation(
        &mut self,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE portal_invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            &[Val::i(now), Val::t(token_hash), Val::i(now)],
        )?;
        Ok(n == 1)
    }

    // ---- accounts -----------------------------------------------------------

    /// Creates a patient's account, or replaces its password (a new
    /// invitation redeemed: the lost-password path). A TOTP enrollment is
    /// kept: the second factor does not fall with the first.
    pub fn portal_set_patient_password(
        &mut self,
        patient_ref: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = self.exec(
            "UPDATE portal_patients SET password_hash = ?, updated_at = ? WHERE patient_ref = ?",
            &[Val::t(password_hash), Val::i(now), Val::t(patient_ref)],
        )?;
        if n == 0 {
            self.exec(
                "INSERT INTO portal_patients (patient_ref, password_hash, totp_nonce, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)",
                &[Val::t(patient_ref), Val::t(password_hash), Val::i(now), Val::i(now)],
            )?;
        }
        Ok(())
    }

    /// A patient's account.
    pub fn portal_patient(&mut self, patient_ref: &str) -> Result<Option<AccountRow>, StoreError> {
        let rows = self.query(
            "SELECT patient_ref, password_hash, totp_nonce, created_at FROM portal_patients WHERE patient_ref = ?",
            &[Val::t(patient_ref)],
        )?;
        rows.first()
            .map(|r| {
                Ok(AccountRow {
                    subject: text(&r[0]),
                    role: None,
                    password_hash: text(&r[1]),
                    totp_nonce: r[2].text().map(str::to_string),
                    disabled: false,
                    created_at: int(&r[3], "portal_patients.created_at")?,
                })
            })
            .transpose()
    }

    /// Adds a staff account; refuses an existing name.
    pub fn portal_insert_staff(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.portal_staff(name)?.is_some() {
            return Err(StoreError::Invalid(format!(
                "staff account {name} already exists"
            )));
        }
        self.exec(
            "INSERT INTO portal_staff (name, role, password_hash, totp_nonce, disabled, created_at) VALUES (?, ?, ?, NULL, 0, ?)",
            &[Val::t(name), Val::t(role), Val::t(password_hash), Val::i(now)],
        )?;
        Ok(())
    }

    /// A staff account.
    pub fn portal_staff(&mut self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        let rows = self.query(
            "SELECT name, role, password_hash, totp_nonce, disabled, created_at FROM portal_staff WHERE name = ?",
            &[Val::t(name)],
        )?;
        rows.first().map(|r| account_row(r)).transpose()
    }

    /// Every staff account, by name.
    pub fn portal_staff_all(&mut self) -> Result<Vec<AccountRow>, StoreError> {
        let rows = self.query(
            "SELECT name, role, password_hash, totp_nonce, disabled, created_at FROM portal_staff ORDER BY name",
            &[],
        )?;
        rows.iter().map(|r| account_row(r)).collect()
    }

    /// Disables or re-enables a staff account. False when there is none.
    pub fn portal_set_staff_disabled(
        &mut self,
        name: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE portal_staff SET disabled = ? WHERE name = ?",
            &[Val::i(i64::from(disabled)), Val::t(name)],
        )?;
        Ok(n == 1)
    }

    /// Sets (or with `None` removes) the TOTP nonce of an account of
    /// `kind` (`patient` or `staff`). False when there is no such account.
    pub fn portal_set_totp(
        &mut self,
        kind: &str,
        subject: &str,
        nonce: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = match kind {
            "patient" => "UPDATE portal_patients SET totp_nonce = ? WHERE patient_ref = ?",
            "staff" => "UPDATE portal_staff SET totp_nonce = ? WHERE name = ?",
            _ => {
                return Err(StoreError::Invalid(
                    "account kind is patient or staff".into(),
                ))
            }
        };
        let n = self.exec(sql, &[Val::ot(nonce), Val::t(subject)])?;
        Ok(n == 1)
    }

    // ---- sessions -----------------------------------------------------------

    /// Records a session.
    pub fn portal_insert_session(&mut self, r: &SessionRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO portal_sessions (token_hash, kind, subject, created_at, last_seen_at, expires_at, csrf_token) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &[
                Val::t(&r.token_hash),
                Val::t(&r.kind),
                Val::t(&r.subject),
                Val::i(r.created_at),
                Val::i(r.last_seen_at),
                Val::i(r.expires_at),
                Val::t(&r.csrf_token),
            ],
        )?;
        Ok(())
    }

    /// The session whose token hashes to `token_hash` (expired or not:
    /// the caller decides).
    pub fn portal_session(&mut self, token_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let rows = self.query(
            "SELECT token_hash, kind, subject, created_at, last_seen_at, expires_at, csrf_token FROM portal_sessions WHERE token_hash = ?",
            &[Val::t(token_hash)],
        )?;
        rows.first()
            .map(|r| {
                Ok(SessionRow {
                    token_hash: text(&r[0]),
                    kind: text(&r[1]),
                    subject: text(&r[2]),
                    created_at: int(&r[3], "portal_sessions.created_at")?,
                    last_seen_at: int(&r[4], "portal_sessions.last_seen_at")?,
                    expires_at: int(&r[5], "portal_sessions.expires_at")?,
                    csrf_token: text(&r[6]),
                })
            })
            .transpose()
    }

    /// Moves a session's last-seen time forward (idle expiry restarts).
    pub fn portal_touch_session(&mut self, token_hash: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE portal_sessions SET last_seen_at = ? WHERE token_hash = ? AND last_seen_at <= ?",
            &[Val::i(now), Val::t(token_hash), Val::i(now)],
        )?;
        Ok(n == 1)
    }

    /// Deletes a session (sign-out, expiry). True when there was one.
    pub fn portal_delete_session(&mut self, token_hash: &str) -> Result<bool, StoreError> {
        let n = self.exec(
            "DELETE FROM portal_sessions WHERE token_hash = ?",
            &[Val::t(token_hash)],
        )?;
        Ok(n == 1)
    }

    /// Deletes every session of a subject (a password replaced, an account
    /// disabled); returns how many.
    pub fn portal_delete_sessions_of(
        &mut self,
        kind: &str,
        subject: &str,
    ) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM portal_sessions WHERE kind = ? AND subject = ?",
            &[Val::t(kind), Val::t(subject)],
        )
    }

    /// Deletes sessions whose absolute end passed by `now`.
    pub fn portal_delete_expired_sessions(&mut self, now: i64) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM portal_sessions WHERE expires_at <= ?",
            &[Val::i(now)],
        )
    }

    // ---- sign-in attempts ---------------------------------------------------

    /// Records one attempt under `key` (a subject's or an invitation's
    /// keyed name): `outcome` is `ok`, `failed` or `refused` (not even
    /// checked: locked out).
    pub fn portal_record_attempt(
        &mut self,
        key: &str,
        at: i64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO portal_attempts (attempt_key, at, outcome) VALUES (?, ?, ?)",
            &[Val::t(key), Val::i(at), Val::t(outcome)],
        )?;
        Ok(())
    }

    /// The times of the failed attempts under `key` at or after `since`,
    /// latest first: their number decides a lockout, and the oldest that
    /// counts says when it ends.
    pub fn portal_failures_since(&mut self, key: &str, since: i64) -> Result<Vec<i64>, StoreError> {
        let rows = self.query(
            "SELECT at FROM portal_attempts WHERE attempt_key = ? AND at >= ? AND outcome = 'failed' ORDER BY at DESC",
            &[Val::t(key), Val::i(since)],
        )?;
        rows.iter()
            .map(|r| int(&r[0], "portal_attempts.at"))
            .collect()
    }

    /// Forgets attempts older than `before` (they no longer count).
    pub fn portal_prune_attempts(&mut self, before: i64) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM portal_attempts WHERE at < ?",
            &[Val::i(before)],
        )
    }

    // ---- staff lookups ------------------------------------------------------

    /// Records that a member of staff with `staff_role` looked up a
    /// patient (the name stays in the ledger; the patient sees the role).
    pub fn portal_insert_lookup(
        &mut self,
        id: &str,
        staff_role: &str,
        patient_ref: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO portal_lookups (id, staff_role, patient_ref, at) VALUES (?, ?, ?, ?)",
            &[
                Val::t(id),
                Val::t(staff_role),
                Val::t(patient_ref),
                Val::i(at),
            ],
        )?;
        Ok(())
    }

    /// (staff role, time) of every lookup of a patient, oldest first.
    pub fn portal_lookups_for(
        &mut self,
        patient_ref: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self.query(
            "SELECT staff_role, at FROM portal_lookups WHERE patient_ref = ? ORDER BY at, id",
            &[Val::t(patient_ref)],
        )?;
        rows.iter()
            .map(|r| Ok((text(&r[0]), int(&r[1], "portal_lookups.at")?)))
            .collect()
    }

    // ---- flags --------------------------------------------------------------

    /// Records a flag.
    pub fn portal_insert_flag(&mut self, f: &FlagRow) -> Result<(), StoreError> {
        self.insert_flag(f, None)?;
        Ok(())
    }

    /// Why one statement with `ON CONFLICT DO NOTHING` (SQLite and
    /// PostgreSQL both have it): two evaluations racing cannot both
    /// insert a keyed flag.
    fn insert_flag(&mut self, f: &FlagRow, key: Option<&str>) -> Result<u64, StoreError> {
        if !FLAG_STATUSES.contains(&f.status.as_str()) {
            return Err(StoreError::Invalid(
                "a flag's status is open, handled or dismissed".into(),
            ));
        }
        if f.source != "patient" && f.source != "rule" {
            return Err(StoreError::Invalid(
                "a flag's source is patient or rule".into(),
            ));
        }
        self.exec(
            "INSERT INTO portal_flags (id, patient_ref, ledger_seq, source, rule_name, reason, status, created_at, updated_at, flag_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (flag_key) DO NOTHING",
            &[
                Val::t(&f.id),
                Val::t(&f.patient_ref),
                Val::Int(f.ledger_seq),
                Val::t(&f.source),
                Val::ot(f.rule_name.clone()),
                Val::t(&f.reason),
                Val::t(&f.status),
                Val::i(f.created_at),
                Val::i(f.updated_at),
                Val::ot(key.map(str::to_string)),
            ],
        )
    }

    /// A patient's flags, oldest first.
    pub fn portal_flags_for(&mut self, patient_ref: &str) -> Result<Vec<FlagRow>, StoreError> {
        let rows = self.query(
            "SELECT id, patient_ref, ledger_seq, source, rule_name, reason, status, created_at, updated_at FROM portal_flags WHERE patient_ref = ? ORDER BY created_at, id",
            &[Val::t(patient_ref)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(FlagRow {
                    id: text(&r[0]),
                    patient_ref: text(&r[1]),
                    ledger_seq: r[2].int(),
                    source: text(&r[3]),
                    rule_name: r[4].text().map(str::to_string),
                    reason: text(&r[5]),
                    status: text(&r[6]),
                    created_at: int(&r[7], "portal_flags.created_at")?,
                    updated_at: int(&r[8], "portal_flags.updated_at")?,
                })
            })
            .collect()
    }

    /// Moves an open flag to `handled` or `dismissed` (guarded: a flag
    /// already closed is left alone). True when this call changed it.
    pub fn portal_close_flag(
        &mut self,
        id: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        if status != "handled" && status != "dismissed" {
            return Err(StoreError::Invalid(
                "a flag is closed as handled or dismissed".into(),
            ));
        }
        let n = self.exec(
            "UPDATE portal_flags SET status = ?, updated_at = ? WHERE id = ? AND status = 'open'",
            &[Val::t(status), Val::i(now), Val::t(id)],
        )?;
        Ok(n == 1)
    }

    /// Records a flag once: `key` identifies it (a rule's name, subject
    /// and window), so a rule evaluated twice raises it once. True when
    /// this call inserted it; false when a flag with this key exists.
    pub fn portal_insert_flag_keyed(&mut self, f: &FlagRow, key: &str) -> Result<bool, StoreError> {
        Ok(self.insert_flag(f, Some(key))? == 1)
    }

    /// Every flag with `status` (all when `None`), oldest first.
    pub fn portal_flags(&mut self, status: Option<&str>) -> Result<Vec<FlagRow>, StoreError> {
        let cols = "SELECT id, patient_ref, ledger_seq, source, rule_name, reason, status, created_at, updated_at FROM portal_flags";
        let rows = match status {
            Some(st) => self.query(
                &format!("{cols} WHERE status = ? ORDER BY created_at, id"),
                &[Val::t(st)],
            )?,
            None => self.query(&format!("{cols} ORDER BY created_at, id"), &[])?,
        };
        rows.iter().map(|r| flag_row(r)).collect()
    }

    /// The flag with this id.
    pub fn portal_flag(&mut self, id: &str) -> Result<Option<FlagRow>, StoreError> {
        let rows = self.query(
            "SELECT id, patient_ref, ledger_seq, source, rule_name, reason, status, created_at, updated_at FROM portal_flags WHERE id = ?",
            &[Val::t(id)],
        )?;
        rows.first().map(|r| flag_row(r)).transpose()
    }

    /// Every lookup at or after `since`: (id, staff role, patient
    /// reference, time), oldest first.
    pub fn portal_lookups_since(
        &mut self,
        since: i64,
    ) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let rows = self.query(
            "SELECT id, staff_role, patient_ref, at FROM portal_lookups WHERE at >= ? ORDER BY at, id",
            &[Val::i(since)],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    text(&r[0]),
                    text(&r[1]),
                    text(&r[2]),
                    int(&r[3], "portal_lookups.at")?,
                ))
            })
            .collect()
    }

    // ---- study index (migration 7) ------------------------------------------

    /// Records a decided study in the site-local index (in the ledger
    /// append's transaction, so an entry never lacks its row).
    pub fn insert_study_index(&mut self, r: &StudyIndexRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO study_index (ledger_seq, patient_ref, study_date, modalities, description, instances) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                Val::i(r.ledger_seq),
                Val::t(&r.patient_ref),
                Val::t(&r.study_date),
                Val::t(&r.modalities),
                Val::t(&r.description),
                Val::i(r.instances),
            ],
        )?;
        Ok(())
    }

    /// A patient's indexed studies, by ledger position.
    pub fn study_index_for(&mut self, patient_ref: &str) -> Result<Vec<StudyIndexRow>, StoreError> {
        let rows = self.query(
            "SELECT ledger_seq, patient_ref, study_date, modalities, description, instances FROM study_index WHERE patient_ref = ? ORDER BY ledger_seq",
            &[Val::t(patient_ref)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(StudyIndexRow {
                    ledger_seq: int(&r[0], "study_index.ledger_seq")?,
                    patient_ref: text(&r[1]),
                    study_date: text(&r[2]),
                    modalities: text(&r[3]),
                    description: text(&r[4]),
                    instances: int(&r[5], "study_index.instances")?,
                })
            })
            .collect()
    }

    /// Forgets a patient's indexed studies (the ledger entries stay: they
    /// hold no PHI). For a site's erasure procedure; the history then
    /// shows the entries without study details. Returns the rows removed.
    pub fn delete_study_index_for(&mut self, patient_ref: &str) -> Result<u64, StoreError> {
        self.exec(
            "DELETE FROM study_index WHERE patient_ref = ?",
            &[Val::t(patient_ref)],
        )
    }
}

fn flag_row(r: &[Val]) -> Result<FlagRow, StoreError> {
    Ok(FlagRow {
        id: text(&r[0]),
        patient_ref: text(&r[1]),
        ledger_seq: r[2].int(),
        source: text(&r[3]),
        rule_name: r[4].text().map(str::to_string),
        reason: text(&r[5]),
        status: text(&r[6]),
        created_at: int(&r[7], "portal_flags.created_at")?,
        updated_at: int(&r[8], "portal_flags.updated_at")?,
    })
}

/// A `portal_staff` row (name, role, password_hash, totp_nonce,
/// disabled, created_at) as an account.
fn account_row(r: &[Val]) -> Result<AccountRow, StoreError> {
    Ok(AccountRow {
        subject: text(&r[0]),
        role: r[1].text().map(str::to_string),
        password_hash: text(&r[2]),
        totp_nonce: r[3].text().map(str::to_string),
        disabled: int(&r[4], "portal_staff.disabled")? != 0,
        created_at: int(&r[5], "portal_staff.created_at")?,
    })
}
