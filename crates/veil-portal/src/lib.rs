//! The patient portal's and the staff console's core (issue 19): the
//! domain the web pages call; the patient portal's pages are in [`web`].
//!
//! - [`Invitation`]: staff issue a one-time, expiring invitation for a
//!   patient; redeeming it sets the patient's password (a first account,
//!   or a lost password replaced).
//! - Passwords: argon2id with the crate's default parameters, stored as
//!   PHC strings, compared in constant time; at most [`hashing_slots`]
//!   hashes at once, in reused working memory (see the private module
//!   `password` for why).
//! - TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step either side) through
//!   `totp-rs`. The secret is never stored: the store keeps a random
//!   nonce, and the secret is HMAC-SHA256(site key, nonce) (see
//!   [`veil_release::Site::portal_mac`]), so a copy of the database is not
//!   a copy of anyone's second factor.
//! - [`Sessions`]: random tokens, only their SHA-256 stored, a CSRF token
//!   per session, idle and absolute expiry.
//! - Sign-in with a rate limit and lockout ([`Limits`]): at most 5 failed
//!   attempts per subject in 60 s; the next attempt in that minute is
//!   refused without even checking the password.
//! - Staff accounts with roles; every staff action is a ledger entry
//!   ([`veil_ledger::Event::StaffAction`]) committed with the row it
//!   changes.
//! - "Where my images went" ([`portal_history`]): the ledger's entries
//!   about a patient joined with the site-local study index and the
//!   recipient registry, and what each recipient received in plain
//!   language ([`summary`], generated from the recipe).
//! - [`flags`]: patient reports, rules as data ([`FlagRules`], from
//!   `[flags]`) evaluated idempotently from the ledger, handling as a
//!   staff action.
//! - The console's [`dashboard`].
//!
//! Time is always a parameter (unix seconds): tests inject a clock, and
//! nothing here reads the system time. Nothing here prints or logs, and
//! no error carries a value a person typed, a token or a patient ID.

mod accounts;
pub mod cache;
pub mod choices;
mod common;
pub mod console;
pub mod flags;
mod password;
mod patient;
mod review;
mod secret;
mod staff;
pub mod summary;
mod views;
pub mod web;

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use veil_core::Phi;
use veil_release::Site;
use veil_store::portal::{InvitationRow, SessionRow};
use veil_store::{Store, StoreError};

pub use cache::LedgerCache;
pub use flags::{evaluate, FlagRules, NewFlag, Outcome};
pub use password::{hash_password, hashing_slots, verify_password};
pub use secret::Secret;
pub use staff::{add_staff, record_lookup, set_staff_disabled, sign_in_staff, Role};
pub use summary::{recipe_summary, recipe_summary_toml};
pub use views::{
    dashboard, dashboard_cached, portal_history, portal_history_cached, Dashboard, DayCount,
    HistoryItem, HistoryStudy,
};

/// Errors. None carries a password, token, TOTP code or patient ID.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The site (keys, ledger).
    #[error(transparent)]
    Site(#[from] veil_release::Error),
    /// No invitation has this token.
    #[error("this invitation link is not valid")]
    InvitationUnknown,
    /// The invitation was already redeemed: they are one-time.
    #[error("this invitation link was already used; ask for a new one")]
    InvitationUsed,
    /// The invitation expired.
    #[error("this invitation link expired; ask for a new one")]
    InvitationExpired,
    /// Unknown account, wrong password or wrong code: one message for
    /// all, so a refusal does not tell which accounts exist.
    #[error("sign-in refused: wrong name, password or code")]
    BadCredentials,
    /// The password was right and the account has a second factor: ask
    /// for the code.
    #[error("a code from the authenticator app is required")]
    TotpRequired,
    /// Too many failed attempts: refused without checking.
    #[error("too many failed attempts; try again in {retry_after_seconds} s")]
    Locked {
        /// When the oldest counted failure leaves the window.
        retry_after_seconds: i64,
    },
    /// A password that does not meet the policy (the reason, never the
    /// password).
    #[error("{0}")]
    WeakPassword(String),
    /// A request that cannot be done (bad name, unknown role, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, PortalError>;

/// Sign-in limits. Why per subject rather than per address: a subject's
/// limit is what stops guessing one account's password from many
/// addresses (and behind a proxy the portal sees one address); the web
/// layer may add per-address keys through [`Limits::check`] and
/// [`Limits::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed attempts allowed per key within the window (5).
    pub max_failures: i64,
    /// The window (60 s).
    pub window_seconds: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_failures: 5,
            window_seconds: 60,
        }
    }
}

/// The outcome recorded for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Accepted.
    Ok,
    /// Checked and wrong: counts toward the lockout.
    Failed,
}

impl Limits {
    /// Refuses (and records the refusal) when `key` has had
    /// `max_failures` failed attempts in the last `window_seconds`.
    /// Refused attempts do not count as failures: an attacker hammering
    /// a locked account does not keep its owner out for longer than the
    /// window after the last real failure.
    pub fn check(&self, store: &mut Store, key: &str, now: i64) -> Result<()> {
        self.check_counting(store, key, now, 0)
    }

    /// [`Limits::check`], with `pending` attempts admitted but not yet
    /// recorded counted as failures (see [`PendingSignIns`]).
    pub(crate) fn check_counting(
        &self,
        store: &mut Store,
        key: &str,
        now: i64,
        pending: i64,
    ) -> Result<()> {
        let failures = store.portal_failures_since(key, now - self.window_seconds + 1)?;
        if failures.len() as i64 + pending.max(0) >= self.max_failures {
            store.portal_record_attempt(key, now, "refused")?;
            // the lockout ends when the max_failures-th latest failure
            // leaves the window; attempts still pending end within a
            // second or so
            let edge = (self.max_failures.max(1) - 1 - pending.max(0))
                .try_into()
                .ok()
                .and_then(|i: usize| failures.get(i).copied());
            return Err(PortalError::Locked {
                retry_after_seconds: edge.map_or(1, |e| (e + self.window_seconds - now).max(1)),
            });
        }
        Ok(())
    }

    /// Records an attempt's outcome under `key`.
    pub fn record(&self, store: &mut Store, key: &str, now: i64, a: Attempt) -> Result<()> {
        let outcome = match a {
            Attempt::Ok => "ok",
            Attempt::Failed => "failed",
        };
        store.portal_record_attempt(key, now, outcome)?;
        Ok(())
    }
}

/// Session lifetimes: from `[portal] session_idle_minutes` and
/// `session_max_hours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends (seconds; default 30 min).
    pub idle_seconds: i64,
    /// A session ends this long after sign-in whatever its use (seconds;
    /// default 12 h).
    pub max_seconds: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_seconds: 30 * 60,
            max_seconds: 12 * 3600,
        }
    }
}

impl SessionPolicy {
    /// From the configuration's minutes and hours.
    pub fn from_config(idle_minutes: u32, max_hours: u32) -> SessionPolicy {
        SessionPolicy {
            idle_seconds: i64::from(idle_minutes) * 60,
            max_seconds: i64::from(max_hours) * 3600,
        }
    }
}

/// The portal's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Portal {
    /// Sign-in and invitation limits.
    pub limits: Limits,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
}

// ---- tokens and hashes ------------------------------------------------------

/// A fresh 256-bit random token, URL-safe base64 without padding (43
/// characters): fits a path segment and a cookie as it is.
pub fn random_token() -> Result<Secret> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|_| PortalError::Invalid("the system's random source failed".into()))?;
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
    ))
}

/// SHA-256 of a token (hex): what the store keeps. A plain hash is
/// enough (unlike passwords): the token has 256 random bits, so there is
/// nothing to guess from the hash.
pub fn token_hash(token: &str) -> String {
    veil_ledger::hex(&Sha256::digest(token.as_bytes()))
}

/// The longest password accepted: argon2 hashes any length, but a
/// megabyte typed into a form should not cost a megabyte of hashing.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Checks the password policy: 12 to 1024 characters. Length, not
/// composition rules: NIST SP 800-63B.
pub fn check_password(password: &Secret) -> Result<()> {
    let n = password.expose().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(PortalError::WeakPassword(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.expose().len() > MAX_PASSWORD_LEN {
        return Err(PortalError::WeakPassword(format!(
            "a password has at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

/// Burns the time of one verification for an unknown subject, so the
/// time a refusal takes does not say whether the account exists.
fn verify_nothing(password: &Secret) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let h = DUMMY.get_or_init(|| {
        hash_password(&Secret::new("veil portal dummy password".into())).unwrap_or_default()
    });
    let _ = verify_password(password, h);
}

/// A unix time as the ledger writes times (RFC 3339 UTC).
fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

// ---- TOTP -------------------------------------------------------------------

/// An enrollment in progress: show `uri` (as a QR code) or `secret_base32`
/// to the person, then [`confirm_totp`] with `nonce` and a code from
/// their app. Nothing is stored until then, so an abandoned enrollment
/// never locks anyone out.
#[derive(Debug)]
pub struct TotpEnrollment {
    /// What [`confirm_totp`] needs back (useless without the site key).
    pub nonce: Secret,
    /// The secret, base32, for typing into an app.
    pub secret_base32: Secret,
    /// `otpauth://totp/...` for a QR code.
    pub uri: Secret,
}

/// Which kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A patient (subject: the keyed patient reference).
    Patient,
    /// A member of staff (subject: the account name).
    Staff,
}

impl Kind {
    /// `patient` or `staff`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Staff => "staff",
        }
    }
}

fn totp_for(site: &Site, kind: Kind, subject: &str, nonce: &str) -> Result<totp_rs::TOTP> {
    let mut data = Vec::new();
    data.extend_from_slice(kind.as_str().as_bytes());
    data.push(0);
    data.extend_from_slice(subject.as_bytes());
    data.push(0);
    data.extend_from_slice(nonce.as_bytes());
    let secret = site.portal_mac("totp", &data)[..20].to_vec();
    // the account name is what the app shows: never the patient ID
    let account = match kind {
        Kind::Patient => "patient portal".to_string(),
        Kind::Staff => format!("console {subject}"),
    };
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        Some("Veil".into()),
        account,
    )
    .map_err(|_| PortalError::Invalid("TOTP parameters".into()))
}

fn totp_ok(totp: &totp_rs::TOTP, code: &str, now: i64) -> bool {
    let code = code.trim();
    code.len() == 6
        && code.bytes().all(|b| b.is_ascii_digit())
        && now >= 30
        && totp.check(code, now as u64)
}

/// Starts a TOTP enrollment for an account (see [`TotpEnrollment`]).
pub fn start_totp(site: &Site, kind: Kind, subject: &str) -> Result<TotpEnrollment> {
    let nonce = random_token()?;
    let t = totp_for(site, kind, subject, nonce.expose())?;
    Ok(TotpEnrollment {
        secret_base32: Secret::new(t.get_secret_base32()),
        uri: Secret::new(t.get_url()),
        nonce,
    })
}

/// Completes an enrollment: `code` must be valid for the secret derived
/// from `nonce` at `now`. From then on the account's sign-in needs a
/// code. A staff enrollment is a ledger entry.
pub fn confirm_totp(
    site: &mut Site,
    kind: Kind,
    subject: &str,
    nonce: &Secret,
    code: &Secret,
    now: i64,
) -> Result<()> {
    let t = totp_for(site, kind, subject, nonce.expose())?;
    if !totp_ok(&t, code.expose(), now) {
        return Err(PortalError::BadCredentials);
    }
    let n = nonce.expose().to_string();
    let sub = subject.to_string();
    match kind {
        Kind::Patient => {
            if !site.store.portal_set_totp("patient", &sub, Some(&n))? {
                return Err(PortalError::Invalid("no such account".into()));
            }
        }
        Kind::Staff => {
            let e = staff::entry(subject, "second factor (TOTP) enrolled".into(), None, now);
            site.log_decisions(vec![e], |s, _| {
                if s.portal_set_totp("staff", &sub, Some(&n))? {
                    Ok(())
                } else {
                    Err(StoreError::Invalid("no such staff account".into()))
                }
            })?;
        }
    }
    Ok(())
}

/// The account a sign-in checks: `(password_hash, totp_nonce)`, `None`
/// for an unknown subject or a disabled member of staff (which fail the
/// same way, in the same time).
type Account = Option<(String, Option<String>)>;

fn load_account(site: &mut Site, kind: Kind, subject: &str) -> Result<Account> {
    Ok(match kind {
        Kind::Patient => site
            .store
            .portal_patient(subject)?
            .map(|a| (a.password_hash, a.totp_nonce)),
        Kind::Staff => site
            .store
            .portal_staff(subject)?
            .filter(|a| !a.disabled)
            .map(|a| (a.password_hash, a.totp_nonce)),
    })
}

/// The limiter's key of a subject: `patient:<ref>` or `staff:<name>`.
fn limit_key(kind: Kind, subject: &str) -> String {
    format!("{}:{subject}", kind.as_str())
}

/// Sign-ins admitted by [`Limits`] whose outcome is not recorded yet,
/// per limiter key: the web layers verify passwords outside the site's
/// lock (see [`SignIn`]), so several attempts on one account can be
/// between their check and their record at once; each counts as a
/// failure until recorded, so no burst of parallel guesses gets past
/// `max_failures`.
#[derive(Debug, Default)]
pub(crate) struct PendingSignIns(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl PendingSignIns {
    fn count(&self, key: &str) -> i64 {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).copied().unwrap_or(0)
    }

    fn add(&self, key: &str, d: i64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        *n += d;
        if *n <= 0 {
            m.remove(key);
        }
    }
}

/// A sign-in attempt counted in [`PendingSignIns`] until dropped.
#[derive(Debug)]
struct Pending {
    set: std::sync::Arc<PendingSignIns>,
    key: String,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.set.add(&self.key, -1);
    }
}

/// A sign-in in three steps, so that the password's verification (argon2:
/// 19 MiB and tens of milliseconds) runs outside the site's lock, where it
/// does not hold up every other page: [`SignIn::begin`] under the lock
/// (the limiter's check, the stored hash read), [`SignIn::verify`]
/// without it, [`SignIn::finish`] under it again (the outcome recorded,
/// the second factor checked). [`authenticate`] runs the three in a row.
#[derive(Debug)]
pub(crate) struct SignIn {
    key: String,
    kind: Kind,
    subject: String,
    account: Account,
    _pending: Option<Pending>,
}

impl SignIn {
    /// The limiter's check (a locked account is refused without checking
    /// the password, and the refusal recorded), counting `pending`
    /// attempts as failures; then the account as stored.
    pub(crate) fn begin(
        site: &mut Site,
        limits: &Limits,
        pending: Option<&std::sync::Arc<PendingSignIns>>,
        kind: Kind,
        subject: &str,
        now: i64,
    ) -> Result<SignIn> {
        let key = limit_key(kind, subject);
        let in_flight = pending.map_or(0, |p| p.count(&key));
        limits.check_counting(&mut site.store, &key, now, in_flight)?;
        let account = load_account(site, kind, subject)?;
        let pending = pending.map(|p| {
            p.add(&key, 1);
            Pending {
                set: p.clone(),
                key: key.clone(),
            }
        });
        Ok(SignIn {
            key,
            kind,
            subject: subject.to_string(),
            account,
            _pending: pending,
        })
    }

    /// The subject signing in (patient reference or staff name).
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether `password` matches the hash read by [`SignIn::begin`]; an
    /// unknown subject burns the same time. Needs no lock.
    pub(crate) fn verify(&self, password: &Secret) -> bool {
        match &self.account {
            Some((hash, _)) => verify_password(password, hash),
            None => {
                verify_nothing(password);
                false
            }
        }
    }

    /// Records the outcome under the limiter's key and checks the second
    /// factor when enrolled. The account is read again: a password
    /// replaced (an invitation redeemed, which ends the sessions) or an
    /// account disabled while the old hash was being verified refuses
    /// the sign-in, as it would have had the steps run in one go.
    pub(crate) fn finish(
        self,
        site: &mut Site,
        limits: &Limits,
        verified: bool,
        code: Option<&Secret>,
        now: i64,
    ) -> Result<()> {
        let current = load_account(site, self.kind, &self.subject)?;
        let nonce = match (&self.account, current) {
            (Some((read, _)), Some((hash, nonce))) if verified && *read == hash => nonce,
            _ => {
                limits.record(&mut site.store, &self.key, now, Attempt::Failed)?;
                return Err(PortalError::BadCredentials);
            }
        };
        if let Some(nonce) = nonce {
            let Some(code) = code else {
                // the password was right: not a failure, the form asks for
                // the code next
                return Err(PortalError::TotpRequired);
            };
            let t = totp_for(site, self.kind, &self.subject, &nonce)?;
            if !totp_ok(&t, code.expose(), now) {
                limits.record(&mut site.store, &self.key, now, Attempt::Failed)?;
                return Err(PortalError::BadCredentials);
            }
        }
        limits.record(&mut site.store, &self.key, now, Attempt::Ok)?;
        Ok(())
    }
}

/// Checks the password, then the second factor when enrolled, under the
/// limiter's key, in one go (the caller holds the site: the CLI, tests).
fn authenticate(
    site: &mut Site,
    limits: &Limits,
    kind: Kind,
    subject: &str,
    password: &Secret,
    code: Option<&Secret>,
    now: i64,
) -> Result<()> {
    let s = SignIn::begin(site, limits, None, kind, subject, now)?;
    let ok = s.verify(password);
    s.finish(site, limits, ok, code, now)
}

// ---- invitations ------------------------------------------------------------

/// Staff-issued, one-time, expiring invitations to set a portal password.
pub struct Invitation;

impl Invitation {
    /// Issues an invitation for a patient, valid `expires_days` days from
    /// `now`; returns its token (shown once, as the link). Only the
    /// token's SHA-256 and the keyed patient reference are stored.
    /// Issuing is a staff action: `by` (the operator, or the console's
    /// signed-in name) is logged in the ledger with the patient
    /// reference, in the invitation's transaction.
    pub fn issue(
        site: &mut Site,
        patient_id: &Phi<String>,
        expires_days: u32,
        by: &str,
        now: i64,
    ) -> Result<Secret> {
        if patient_id.expose().trim().is_empty() {
            return Err(PortalError::Invalid("the patient ID is empty".into()));
        }
        if !(1..=90).contains(&expires_days) {
            return Err(PortalError::Invalid(
                "an invitation expires after 1 to 90 days".into(),
            ));
        }
        let token = random_token()?;
        let row = InvitationRow {
            token_hash: token_hash(token.expose()),
            patient_ref: site.patient_ref(patient_id),
            created_at: now,
            expires_at: now + i64::from(expires_days) * 86_400,
            used_at: None,
        };
        let e = staff::entry(
            by,
            format!("portal invitation issued (expires in {expires_days} days)"),
            Some(row.patient_ref.clone()),
            now,
        );
        site.log_decisions(vec![e], |s, _| s.portal_insert_invitation(&row))?;
        Ok(token)
    }

    /// Redeems an invitation: sets the patient's password (creating the
    /// account, or replacing a lost password) and marks the invitation
    /// used, in one transaction. Ends the patient's other sessions when a
    /// password is replaced. Returns the patient reference.
    ///
    /// Failures (unknown, used, expired) count toward the lockout of the
    /// invitation's key, like wrong passwords.
    pub fn redeem(
        site: &mut Site,
        limits: &Limits,
        token: &Secret,
        password: &Secret,
        now: i64,
    ) -> Result<String> {
        let r = Invitation::redeem_begin(site, limits, token, password, now)?;
        let hash = hash_password(password)?;
        Invitation::redeem_finish(site, limits, r, &hash, now)
    }

    /// [`Invitation::redeem`]'s first half, under the site's lock: the
    /// password policy, the limiter, the invitation read and refused when
    /// unknown, used or expired. The password is then hashed without the
    /// lock (argon2: tens of milliseconds that would hold up every other
    /// page) and [`Invitation::redeem_finish`] stores it.
    pub(crate) fn redeem_begin(
        site: &mut Site,
        limits: &Limits,
        token: &Secret,
        password: &Secret,
        now: i64,
    ) -> Result<Redeeming> {
        check_password(password)?;
        let th = token_hash(token.expose());
        let key = format!("invitation:{th}");
        limits.check(&mut site.store, &key, now)?;
        let inv = site.store.portal_invitation(&th)?;
        let refused = match inv {
            None => PortalError::InvitationUnknown,
            Some(i) if i.used_at.is_some() => PortalError::InvitationUsed,
            Some(i) if i.expires_at <= now => PortalError::InvitationExpired,
            Some(i) => {
                return Ok(Redeeming {
                    token_hash: th,
                    key,
                    patient_ref: i.patient_ref,
                })
            }
        };
        limits.record(&mut site.store, &key, now, Attempt::Failed)?;
        Err(refused)
    }

    /// [`Invitation::redeem`]'s second half, under the site's lock again:
    /// `hash` (the password's) stored and the invitation marked used in
    /// one transaction, which uses the invitation only if it is still
    /// unused: of two redemptions racing past [`Invitation::redeem_begin`],
    /// one wins and the other is refused as used.
    pub(crate) fn redeem_finish(
        site: &mut Site,
        limits: &Limits,
        r: Redeeming,
        hash: &str,
        now: i64,
    ) -> Result<String> {
        let Redeeming {
            token_hash: th,
            key,
            patient_ref: pref,
        } = r;
        let used = site.store.transaction(|s| {
            if !s.portal_use_invitation(&th, now)? {
                return Ok(false);
            }
            s.portal_set_patient_password(&pref, hash, now)?;
            s.portal_delete_sessions_of("patient", &pref)?;
            Ok(true)
        })?;
        if !used {
            // redeemed by a concurrent request between the read and here
            limits.record(&mut site.store, &key, now, Attempt::Failed)?;
            return Err(PortalError::InvitationUsed);
        }
        limits.record(&mut site.store, &key, now, Attempt::Ok)?;
        Ok(pref)
    }
}

/// An invitation between [`Invitation::redeem_begin`] and
/// [`Invitation::redeem_finish`].
#[derive(Debug)]
pub(crate) struct Redeeming {
    token_hash: String,
    key: String,
    patient_ref: String,
}

// ---- patient sign-in --------------------------------------------------------

/// Signs a patient in with their patient ID, password and (when enrolled)
/// a TOTP code; returns a new session. The limiter's key is the keyed
/// patient reference, so even the attempts table holds no ID.
pub fn sign_in_patient(
    site: &mut Site,
    portal: &Portal,
    patient_id: &Phi<String>,
    password: &Secret,
    code: Option<&Secret>,
    now: i64,
) -> Result<NewSession> {
    let pref = site.patient_ref(patient_id);
    authenticate(
        site,
        &portal.limits,
        Kind::Patient,
        &pref,
        password,
        code,
        now,
    )?;
    Sessions::create(&mut site.store, &portal.sessions, Kind::Patient, &pref, now)
}

// ---- sessions ---------------------------------------------------------------

/// A session just created: the token goes into the cookie (HttpOnly,
/// SameSite=Strict), the CSRF token into every form.
#[derive(Debug)]
pub struct NewSession {
    /// The session token (only its hash is stored).
    pub token: Secret,
    /// The CSRF token.
    pub csrf: Secret,
    /// The absolute end (unix seconds).
    pub expires_at: i64,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Patient or staff.
    pub kind: Kind,
    /// The patient reference or the staff name.
    pub subject: String,
    /// The CSRF token forms must carry.
    pub csrf: Secret,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_seen_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Session operations.
pub struct Sessions;

impl Sessions {
    /// Creates a session for a subject signed in at `now`.
    pub fn create(
        store: &mut Store,
        policy: &SessionPolicy,
        kind: Kind,
        subject: &str,
        now: i64,
    ) -> Result<NewSession> {
        let (row, new) = Sessions::prepare(policy, kind, subject, now)?;
        store.portal_insert_session(&row)?;
        Ok(new)
    }

    /// A new session's row and tokens, not yet stored: for callers that
    /// store it inside their own transaction (a staff sign-in, with its
    /// ledger entry).
    pub(crate) fn prepare(
        policy: &SessionPolicy,
        kind: Kind,
        subject: &str,
        now: i64,
    ) -> Result<(SessionRow, NewSession)> {
        let token = random_token()?;
        let csrf = random_token()?;
        let expires_at = now + policy.max_seconds;
        let row = SessionRow {
            token_hash: token_hash(token.expose()),
            kind: kind.as_str().into(),
            subject: subject.into(),
            created_at: now,
            last_seen_at: now,
            expires_at,
            csrf_token: csrf.expose().clone(),
        };
        Ok((
            row,
            NewSession {
                token,
                csrf,
                expires_at,
            },
        ))
    }

    /// The live session for a token at `now`: `None` when unknown, idle
    /// for `idle_seconds` or past its absolute end (an expired session is
    /// deleted on the way).
    pub fn lookup(
        store: &mut Store,
        policy: &SessionPolicy,
        token: &str,
        now: i64,
    ) -> Result<Option<Session>> {
        let th = token_hash(token);
        let Some(r) = store.portal_session(&th)? else {
            return Ok(None);
        };
        if now >= r.expires_at || now - r.last_seen_at >= policy.idle_seconds {
            store.portal_delete_session(&th)?;
            return Ok(None);
        }
        let kind = match r.kind.as_str() {
            "patient" => Kind::Patient,
            "staff" => Kind::Staff,
            _ => return Err(StoreError::Corrupt("portal_sessions.kind".into()).into()),
        };
        Ok(Some(Session {
            kind,
            subject: r.subject,
            csrf: Secret::new(r.csrf_token),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
        }))
    }

    /// Marks a session used at `now` (its idle time starts again).
    pub fn touch(store: &mut Store, token: &str, now: i64) -> Result<bool> {
        Ok(store.portal_touch_session(&token_hash(token), now)?)
    }

    /// Ends a session (sign-out).
    pub fn revoke(store: &mut Store, token: &str) -> Result<bool> {
        Ok(store.portal_delete_session(&token_hash(token))?)
    }

    /// Whether a form's CSRF token matches the session's, compared in
    /// constant time (through the hashes: equal-length inputs to a plain
    /// comparison, so its early exit says nothing about the token).
    pub fn csrf_ok(session: &Session, form_token: &str) -> bool {
        Sha256::digest(session.csrf.expose().as_bytes()) == Sha256::digest(form_token.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_replaced_during_verification_refuses_the_old_one() {
        let home = veil_test::scratch("portal-signin-steps");
        Site::init(None, &home).unwrap();
        let mut site = Site::open(None, &home).unwrap();
        let limits = Limits::default();
        let pid = Phi::new("STEPS-PATIENT-1".to_string());
        let pref = site.patient_ref(&pid);
        let now = 1_800_000_000;
        let old = Secret::new("the old long password".into());
        let new = Secret::new("the new long password".into());
        let t = Invitation::issue(&mut site, &pid, 14, "test", now).unwrap();
        Invitation::redeem(&mut site, &limits, &t, &old, now).unwrap();
        let pending = std::sync::Arc::new(PendingSignIns::default());
        // the old password's check begins (the stored hash read)...
        let s = SignIn::begin(
            &mut site,
            &limits,
            Some(&pending),
            Kind::Patient,
            &pref,
            now,
        )
        .unwrap();
        assert_eq!(pending.count(&limit_key(Kind::Patient, &pref)), 1);
        // ...the password is replaced meanwhile...
        let t = Invitation::issue(&mut site, &pid, 14, "test", now).unwrap();
        Invitation::redeem(&mut site, &limits, &t, &new, now).unwrap();
        // ...so the old one, right against the hash read, is refused
        assert!(s.verify(&old));
        assert!(matches!(
            s.finish(&mut site, &limits, true, None, now),
            Err(PortalError::BadCredentials)
        ));
        assert_eq!(pending.count(&limit_key(Kind::Patient, &pref)), 0);
        assert_eq!(
            site.store
                .portal_failures_since(&limit_key(Kind::Patient, &pref), now)
                .unwrap()
                .len(),
            1
        );
        // and the new one signs in
        let s = SignIn::begin(
            &mut site,
            &limits,
            Some(&pending),
            Kind::Patient,
            &pref,
            now,
        )
        .unwrap();
        assert!(s.verify(&new));
        s.finish(&mut site, &limits, true, None, now).unwrap();
    }
}
