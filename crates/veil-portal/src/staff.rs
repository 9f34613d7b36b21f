//! Staff accounts, their sign-in and their lookups of patients. Every
//! staff action is a ledger entry ([`Event::StaffAction`]) appended in the
//! same transaction as the row it changes: an account never exists, and
//! a lookup never happens, without its entry.

use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_release::Site;
use veil_store::StoreError;

use crate::{
    authenticate, check_password, hash_password, random_token, rfc3339, Kind, NewSession, Portal,
    PortalError, Result, Secret, Session, Sessions,
};

/// A staff member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages staff accounts and the site.
    Admin,
    /// Reviews flags and held objects.
    Reviewer,
    /// Reads the ledger and lookups; changes nothing.
    Auditor,
}

impl Role {
    /// The name stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Reviewer, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The ledger entry for one staff action. `what` says what was done in
/// Veil's words; nothing a person typed goes in.
pub(crate) fn entry(by: &str, what: String, patient_ref: Option<String>, now: i64) -> Entry {
    Entry {
        v: 1,
        seq: 0,
        time: rfc3339(now),
        event: Event::StaffAction,
        release_id: String::new(),
        recipient: String::new(),
        purpose: String::new(),
        recipe: String::new(),
        key_id: String::new(),
        patient_ref,
        study_ref: None,
        output_study_uid: None,
        instances: 0,
        inputs_digest: None,
        output_digest: None,
        verification: "not-applicable".into(),
        operator: by.to_string(),
        reason: what,
        refers_to: None,
    }
}

/// Adds a staff account with a password (policy: [`check_password`]).
/// `by` is who added it (the operator running `veil staff add`, or an
/// admin's name). Returns the ledger position of the entry.
pub fn add_staff(
    site: &mut Site,
    name: &str,
    role: Role,
    password: &Secret,
    by: &str,
    now: i64,
) -> Result<u64> {
    if !veil_consent::valid_name(name) {
        return Err(PortalError::Invalid(
            "a staff name is 1-64 letters, digits, '.', '_' or '-'".into(),
        ));
    }
    check_password(password)?;
    if site.store.portal_staff(name)?.is_some() {
        return Err(PortalError::Invalid(format!(
            "staff account {name} already exists"
        )));
    }
    let hash = hash_password(password)?;
    let e = entry(
        by,
        format!("staff account {name} added (role {})", role.as_str()),
        None,
        now,
    );
    let pos = site.log_decisions(vec![e], |s, _| {
        s.portal_insert_staff(name, role.as_str(), &hash, now)
    })?;
    Ok(pos[0])
}

/// Signs a member of staff in; the sign-in is a ledger entry, committed
/// with the session. A disabled account fails like a wrong password.
pub fn sign_in_staff(
    site: &mut Site,
    portal: &Portal,
    name: &str,
    password: &Secret,
    code: Option<&Secret>,
    now: i64,
) -> Result<NewSession> {
    authenticate(site, &portal.limits, Kind::Staff, name, password, code, now)?;
    staff_session(site, portal, name, now)
}

/// A new console session for `name`, signed in at `now`; the sign-in is
/// a ledger entry, committed with the session.
pub(crate) fn staff_session(
    site: &mut Site,
    portal: &Portal,
    name: &str,
    now: i64,
) -> Result<NewSession> {
    let (row, session) = Sessions::prepare(&portal.sessions, Kind::Staff, name, now)?;
    let e = entry(name, "signed in to the console".into(), None, now);
    site.log_decisions(vec![e], |s, _| s.portal_insert_session(&row))?;
    Ok(session)
}

/// Disables (or re-enables) a staff account, by `by` (an admin, or the
/// operator of a command). Disabling ends the account's sessions at once:
/// a session outliving its account would keep a departed person in.
pub fn set_staff_disabled(
    site: &mut Site,
    name: &str,
    disabled: bool,
    by: &str,
    now: i64,
) -> Result<u64> {
    let what = if disabled {
        format!("staff account {name} disabled")
    } else {
        format!("staff account {name} enabled")
    };
    let pos = site.log_decisions(vec![entry(by, what, None, now)], |s, _| {
        if !s.portal_set_staff_disabled(name, disabled)? {
            return Err(StoreError::Invalid(format!("no staff account {name}")));
        }
        s.portal_delete_sessions_of("staff", name)?;
        Ok(())
    })?;
    Ok(pos[0])
}

/// Records that the signed-in member of staff looked up a patient: a row
/// the patient will see (the role and the time, not the name) and a
/// ledger entry (with the name and the keyed patient reference).
pub fn record_lookup(
    site: &mut Site,
    session: &Session,
    patient_id: &Phi<String>,
    now: i64,
) -> Result<u64> {
    if session.kind != Kind::Staff {
        return Err(PortalError::Invalid("only staff look up patients".into()));
    }
    let role = site
        .store
        .portal_staff(&session.subject)?
        .filter(|a| !a.disabled)
        .and_then(|a| a.role)
        .ok_or_else(|| PortalError::Invalid("the staff account is gone or disabled".into()))?;
    let pref = site.patient_ref(patient_id);
    let id = crate::token_hash(random_token()?.expose())[..32].to_string();
    let e = entry(
        &session.subject,
        format!("looked up a patient (role {role})"),
        Some(pref.clone()),
        now,
    );
    let pos = site.log_decisions(vec![e], |s, _| {
        s.portal_insert_lookup(&id, &role, &pref, now)
    })?;
    Ok(pos[0])
}
