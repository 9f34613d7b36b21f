//! The patient portal's web pages (issue 19): an axum [`Router`] over the
//! functions of this crate, and [`Background`] to serve it from a
//! synchronous caller (`veil serve`).
//!
//! Why server-rendered HTML from maud templates: the pages must work
//! without JavaScript (the proof check aside), and maud escapes every
//! interpolated value by construction, so a recipient named
//! `<script>…` is text, never markup. Nothing here adds a rule to the
//! core: invitations, passwords, TOTP, sessions and limits are the
//! crate's; this module maps them to forms, cookies and status codes.
//!
//! Security, in one place (see docs/portal.md), and shared with the
//! staff console ([`crate::console`]) through the private module
//! `common`, so the two cannot drift apart:
//! - every response carries the Content-Security-Policy [`CSP`] (no inline
//!   script or style: the CSS and `proof.js` are files), `nosniff`,
//!   `Referrer-Policy: no-referrer` and, on pages, `Cache-Control:
//!   no-store`; over HTTPS also HSTS;
//! - the session cookie is `HttpOnly; SameSite=Strict; Path=/`, and
//!   `__Host-` prefixed and `Secure` when the portal is reached over
//!   HTTPS ([`WebConfig::secure_cookies`]);
//! - every POST carries a CSRF token: the session's once signed in, a
//!   double-submit cookie before (sign-in, invitation); without it, 403;
//! - every object is looked up under the signed-in patient's reference:
//!   another patient's entry is 404, as is a position with no entry;
//! - logs hold the route template (`/invite/{token}`, never the token),
//!   the method and the status: nothing typed, no patient ID.
//!
//! The store is synchronous: each handler's store work runs on tokio's
//! blocking pool (at most [`BLOCKING_THREADS`] threads) under one
//! mutex-guarded [`Site`] (one connection; the portal's traffic is
//! small). Passwords are hashed and verified outside that mutex, a few at
//! a time (`common::hashing`, [`crate::hashing_slots`]), so a burst of
//! sign-ins neither holds up the pages nor multiplies argon2's 19 MiB.
//! "Where my images went" and an entry's proof read a [`crate::LedgerCache`]
//! kept in the state: each request reads only the rows appended since the
//! last one, the patient's entries come from its per-patient index, and
//! proofs from its leaf hashes (`scripts/bench-portal.sh` measures it).
//!
//! HTTPS: [`Background::start_with`] serves TLS itself (rustls) when given
//! a server configuration; without one, a reverse proxy terminates TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped};
use veil_core::Phi;
use veil_ledger::{Entry, Event};
use veil_release::Site;

use crate::common::{
    error_box, forbidden, form, hashing, html_response, internal, locked, locked_text, portal_css,
    pre_csrf, pre_csrf_ok, redirect, same, security_headers, session_cookie, system_clock,
    with_cookies, with_site, Frame, Shared,
};
pub use crate::common::{Clock, CSP, PORTAL_CSS};
use crate::{
    Invitation, Kind, PendingSignIns, Portal, PortalError, Secret, Session, SessionPolicy,
    Sessions, SignIn,
};

/// What "verified" says, as `proof.js` writes it.
const VERIFIED: &str = "verified against the hospital's signed log";

/// The web layer's settings.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Limits and session lifetimes.
    pub portal: Portal,
    /// Whether patients reach the portal over HTTPS (the listener's own
    /// TLS, or a proxy's: `public_url` starts with `https://`). Then the
    /// cookies are `Secure` and `__Host-` prefixed, which a browser only
    /// accepts over HTTPS; over plain HTTP (a test on loopback) they would
    /// be dropped, so they are plain there.
    pub secure_cookies: bool,
}

pub(crate) struct AppState {
    site: Mutex<Site>,
    /// The ledger as last read (see [`crate::cache`]); locked after
    /// `site`, never before.
    cache: Mutex<crate::LedgerCache>,
    /// Sign-ins between their check and their record (see [`SignIn`]).
    pending: Arc<PendingSignIns>,
    cfg: WebConfig,
    clock: Clock,
}

pub(crate) type St = Arc<AppState>;

impl Shared for AppState {
    const SESSION: &'static str = "veil_session";
    const PRE_CSRF: &'static str = "veil_csrf";
    const LISTENER: &'static str = "portal";
    const KIND: Kind = Kind::Patient;
    fn site(&self) -> &Mutex<Site> {
        &self.site
    }
    fn now(&self) -> i64 {
        (self.clock)()
    }
    fn secure(&self) -> bool {
        self.cfg.secure_cookies
    }
    fn sessions(&self) -> SessionPolicy {
        self.cfg.portal.sessions
    }
    fn page(title: &str, session: &Session, body: Markup) -> Markup {
        layout(title, Some(session), false, body)
    }
}

/// The portal's router over `site`, on the system clock.
pub fn router(site: Site, cfg: WebConfig) -> Router {
    router_with_clock(site, cfg, Arc::new(system_clock))
}

/// The portal's router with an injected clock (tests).
pub fn router_with_clock(site: Site, cfg: WebConfig, clock: Clock) -> Router {
    let st = Arc::new(AppState {
        site: Mutex::new(site),
        cache: Mutex::new(crate::LedgerCache::new()),
        pending: Arc::default(),
        cfg,
        clock,
    });
    Router::new()
        .route("/", get(list))
        .route("/invite/{token}", get(invite_form).post(invite_submit))
        .route("/signin", get(signin_form).post(signin_submit))
        .route(
            "/signout",
            axum::routing::post(|State(st): State<St>, h: HeaderMap, b: Bytes| {
                crate::common::signout(st, h, b)
            }),
        )
        .route(
            "/totp",
            get(crate::common::totp_form::<AppState>).post(crate::common::totp_submit::<AppState>),
        )
        .route("/entries/{position}", get(entry_page))
        .route("/lookups", get(lookups))
        .merge(crate::patient::routes())
        .route("/about-proofs", get(about_proofs))
        .route("/static/proof.js", get(proof_js))
        .route("/static/portal.css", get(portal_css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found_handler)
        .layer(middleware::from_fn_with_state(
            st.clone(),
            security_headers::<AppState>,
        ))
        .with_state(st)
}

/// The signed-in patient's session (touched: its idle time restarts),
/// or the redirect to the sign-in page.
pub(crate) async fn patient_session(
    st: &St,
    headers: &HeaderMap,
) -> Result<(Session, String), Response> {
    crate::common::session(st, headers).await
}

// ---- helpers ------------------------------------------------------------------

pub(crate) fn not_found(session: Option<&Session>) -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        "Page not found",
        session,
        html! {
            p { "There is nothing here. The address may be mistyped, or the record is not yours." }
            p { a href="/" { "Back to where my images went" } }
        },
    )
}

async fn not_found_handler() -> Response {
    not_found(None)
}

// ---- layout -------------------------------------------------------------------

pub(crate) fn layout(title: &str, session: Option<&Session>, script: bool, body: Markup) -> Markup {
    let frame = Frame {
        product: "Patient portal",
        brand: "Patient portal",
        nav_label: "Portal",
        links: &[
            ("/", "Where my images went"),
            ("/choices", "My sharing choices"),
            ("/requests", "Sharing requests"),
            ("/lookups", "Who looked at my record"),
            ("/history", "Download my history"),
            ("/about-proofs", "What “verified” means"),
        ],
        script: script.then_some("/static/proof.js"),
    };
    let footer = html! {
        p { "Your hospital's privacy gateway. " a href="/about-proofs" { "How records are proved" } }
    };
    frame.page(
        title,
        session.map(|s| s.csrf.expose().as_str()),
        body,
        footer,
    )
}

pub(crate) fn page_response(
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    body: Markup,
) -> Response {
    html_response(status, layout(title, session, false, body))
}

// ---- static -------------------------------------------------------------------

async fn proof_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        veil_ledger::PROOF_JS,
    )
        .into_response()
}

// ---- invitation ---------------------------------------------------------------

fn invite_page(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Set your password",
        None,
        false,
        html! {
            p { "Your hospital invited you to see where your medical images were sent. "
                "Choose a password to finish." }
            (error_box(error))
            form method="post" {
                input type="hidden" name="csrf" value=(csrf);
                div class="field" {
                    label for="password" { "New password" }
                    p class="hint" id="password-hint" { "At least 12 characters. A few words you will remember work well." }
                    input id="password" name="password" type="password" autocomplete="new-password"
                        required minlength="12" maxlength="1024" aria-describedby="password-hint";
                }
                div class="field" {
                    label for="password2" { "Type the password again" }
                    input id="password2" name="password2" type="password" autocomplete="new-password" required;
                }
                button type="submit" { "Set password and sign in" }
            }
        },
    )
}

async fn invite_form(
    State(st): State<St>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    // a used or expired link says so at once, before a password is typed;
    // a read only (the redemption counts failures): the token has 256
    // random bits, there is nothing to probe
    let th = crate::token_hash(&token);
    let inv = match with_site(&st, move |site, now| {
        site.store
            .portal_invitation(&th)
            .map(|i| i.map(|i| (i.used_at.is_some(), i.expires_at <= now)))
    })
    .await
    {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => return internal(e.into()),
        Err(r) => return r,
    };
    let refused = match inv {
        None => Some(PortalError::InvitationUnknown),
        Some((true, _)) => Some(PortalError::InvitationUsed),
        Some((_, true)) => Some(PortalError::InvitationExpired),
        Some(_) => None,
    };
    if let Some(e) = refused {
        return invitation_refused(e);
    }
    let (csrf, cookie) = pre_csrf(st.as_ref(), &headers);
    with_cookies(
        html_response(StatusCode::OK, invite_page(&csrf, None)),
        cookie,
    )
}

async fn invite_submit(
    State(st): State<St>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if !pre_csrf_ok(st.as_ref(), &headers, &f) {
        return forbidden();
    }
    let csrf = f.get("csrf").cloned().unwrap_or_default();
    let password = Secret::new(f.get("password").cloned().unwrap_or_default());
    let again = f.get("password2").cloned().unwrap_or_default();
    if !same(password.expose(), &again) {
        return html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            invite_page(
                &csrf,
                Some("The two passwords differ. Please type them again."),
            ),
        );
    }
    let r = match redeem(&st, Secret::new(token), password).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match r {
        Ok(s) => with_cookies(
            redirect("/"),
            [session_cookie(st.as_ref(), s.token.expose())],
        ),
        Err(PortalError::WeakPassword(m)) => html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            invite_page(&csrf, Some(&m)),
        ),
        Err(
            e @ (PortalError::InvitationUnknown
            | PortalError::InvitationUsed
            | PortalError::InvitationExpired
            | PortalError::Locked { .. }),
        ) => invitation_refused(e),
        Err(e) => internal(e),
    }
}

/// Redeems the invitation and signs the patient in: checked under the
/// site's lock, the password hashed outside it ([`hashing`]), stored
/// under it again (see [`Invitation::redeem_begin`]).
async fn redeem(
    st: &St,
    token: Secret,
    password: Secret,
) -> Result<crate::Result<crate::NewSession>, Response> {
    let portal = st.cfg.portal;
    let pw = Secret::new(password.expose().clone());
    let begun = with_site(st, move |site, now| {
        Invitation::redeem_begin(site, &portal.limits, &token, &pw, now)
    })
    .await?;
    let r = match begun {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let hash = match hashing(move || crate::hash_password(&password)).await? {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    with_site(st, move |site, now| {
        let pref = Invitation::redeem_finish(site, &portal.limits, r, &hash, now)?;
        Sessions::create(&mut site.store, &portal.sessions, Kind::Patient, &pref, now)
    })
    .await
}

fn invitation_refused(e: PortalError) -> Response {
    let status = if matches!(e, PortalError::Locked { .. }) {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    };
    page_response(
        status,
        "This invitation cannot be used",
        None,
        html! {
            p { (e.to_string()) "." }
            p { "If you already set a password, " a href="/signin" { "sign in" } ". "
                "If you forgot it, ask the hospital for a new invitation." }
        },
    )
}

// ---- sign-in and sign-out -----------------------------------------------------

fn signin_page(csrf: &str, error: Option<&str>, ask_code: bool) -> Markup {
    layout(
        "Sign in",
        None,
        false,
        html! {
            p { "Sign in to see where your medical images were sent and who looked at your record." }
            (error_box(error))
            form method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                div class="field" {
                    label for="patient_id" { "Patient ID" }
                    p class="hint" id="pid-hint" { "As printed on your hospital letter." }
                    input id="patient_id" name="patient_id" type="text" autocomplete="username"
                        required aria-describedby="pid-hint";
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                }
                div class="field" {
                    label for="code" { "Code from your authenticator app" }
                    p class="hint" id="code-hint" {
                        @if ask_code { "Your account needs this code: enter the 6 digits your app shows." }
                        @else { "Only if you set one up; otherwise leave empty." }
                    }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" maxlength="6" aria-describedby="code-hint";
                }
                button type="submit" { "Sign in" }
            }
            p { "Forgot your password? Ask the hospital for a new invitation." }
        },
    )
}

async fn signin_form(State(st): State<St>, headers: HeaderMap) -> Response {
    let (csrf, cookie) = pre_csrf(st.as_ref(), &headers);
    with_cookies(
        html_response(StatusCode::OK, signin_page(&csrf, None, false)),
        cookie,
    )
}

async fn signin_submit(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    if !pre_csrf_ok(st.as_ref(), &headers, &f) {
        return forbidden();
    }
    let csrf = f.get("csrf").cloned().unwrap_or_default();
    // spaces around a pasted ID are not part of it
    let pid = Phi::new(
        f.get("patient_id")
            .map(|v| v.trim().to_string())
            .unwrap_or_default(),
    );
    let password = Secret::new(f.get("password").cloned().unwrap_or_default());
    let code = f
        .get("code")
        .filter(|c| !c.trim().is_empty())
        .map(|c| Secret::new(c.clone()));
    let r = match sign_in(&st, pid, password, code).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match r {
        Ok(s) => with_cookies(
            redirect("/"),
            [session_cookie(st.as_ref(), s.token.expose())],
        ),
        Err(PortalError::TotpRequired) => html_response(
            StatusCode::UNAUTHORIZED,
            signin_page(
                &csrf,
                Some("Please enter the code from your authenticator app as well."),
                true,
            ),
        ),
        Err(PortalError::BadCredentials) => html_response(
            StatusCode::UNAUTHORIZED,
            signin_page(
                &csrf,
                Some("Sign-in refused: wrong patient ID, password or code."),
                false,
            ),
        ),
        Err(PortalError::Locked {
            retry_after_seconds,
        }) => locked(
            html_response(
                StatusCode::OK,
                signin_page(&csrf, Some(&locked_text(retry_after_seconds)), false),
            ),
            retry_after_seconds,
        ),
        Err(e) => internal(e),
    }
}

/// Signs a patient in ([`crate::sign_in_patient`]'s steps): the limiter
/// and the stored hash under the site's lock, the password verified
/// outside it ([`hashing`]), the outcome recorded and the session made
/// under it again (see [`SignIn`]).
async fn sign_in(
    st: &St,
    pid: Phi<String>,
    password: Secret,
    code: Option<Secret>,
) -> Result<crate::Result<crate::NewSession>, Response> {
    let portal = st.cfg.portal;
    let pending = st.pending.clone();
    let begun = with_site(st, move |site, now| {
        let pref = site.patient_ref(&pid);
        SignIn::begin(
            site,
            &portal.limits,
            Some(&pending),
            Kind::Patient,
            &pref,
            now,
        )
    })
    .await?;
    let s = match begun {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let (s, ok) = hashing(move || {
        let ok = s.verify(&password);
        (s, ok)
    })
    .await?;
    with_site(st, move |site, now| {
        let pref = s.subject().to_string();
        s.finish(site, &portal.limits, ok, code.as_ref(), now)?;
        Sessions::create(&mut site.store, &portal.sessions, Kind::Patient, &pref, now)
    })
    .await
}

// ---- where my images went -----------------------------------------------------

/// Entries a patient sees on "Where my images went": releases and
/// refusals (consent changes, staff actions and the rest are the site's
/// bookkeeping; lookups have their own page).
fn shown(e: &Entry) -> bool {
    matches!(e.event, Event::Release | Event::Refusal)
}

/// What a patient reads for an entry, gathered with the store.
pub(crate) struct EntryView {
    pub(crate) position: u64,
    date: String,
    released: bool,
    recipient: String,
    category: Option<String>,
    purpose: String,
    studies: u64,
    images: u64,
    checks: &'static str,
    reason: String,
    in_signed_log: bool,
    details: StudyDetails,
}

/// The studies an entry is about and what the recipient received, in
/// plain language, from [`crate::portal_history`] (the site-local study
/// index and the recipe summary pinned at release).
#[derive(Debug, Default)]
struct StudyDetails {
    /// One line per study ("2026-03-03 · CT, MR · HEAD WO CONTRAST · 2 images").
    studies: Vec<String>,
    /// What the recipient received, one sentence each; empty when not
    /// known (the recipe changed since, or a refusal).
    received: Vec<String>,
}

/// The patient's history by ledger position: computed once per page
/// (from the ledger cache's per-patient index), then looked up per entry
/// by [`study_details`].
pub(crate) type History = std::collections::BTreeMap<u64, crate::HistoryItem>;

pub(crate) fn history(
    site: &mut Site,
    cache: &crate::LedgerCache,
    pref: &str,
) -> crate::Result<History> {
    Ok(crate::portal_history_cached(site, cache, pref)?
        .into_iter()
        .map(|h| (h.position, h))
        .collect())
}

/// `YYYYMMDD` as `YYYY-MM-DD` (as given when it is not eight digits).
pub(crate) fn study_date(d: &str) -> String {
    if d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])
    } else {
        d.to_string()
    }
}

/// One line per study: date, modalities, description, images.
pub(crate) fn study_line(s: &crate::HistoryStudy) -> String {
    let mut parts = Vec::new();
    parts.push(if s.date.is_empty() {
        "date not recorded".to_string()
    } else {
        study_date(&s.date)
    });
    if !s.modalities.is_empty() {
        parts.push(s.modalities.join(", "));
    }
    if !s.description.is_empty() {
        parts.push(s.description.clone());
    }
    parts.push(counted(s.instances.max(0) as u64, "image", "images"));
    parts.join(" · ")
}

/// Fills [`StudyDetails`] for an entry from the page's history.
fn study_details(hist: &History, position: u64) -> StudyDetails {
    match hist.get(&position) {
        Some(h) => StudyDetails {
            studies: h.studies.iter().map(study_line).collect(),
            received: h.received.clone(),
        },
        None => StudyDetails::default(),
    }
}

fn checks_text(v: &str) -> &'static str {
    match v {
        "pass" => "passed",
        "fail" => "found a problem (the images were not sent)",
        "not-run" => "not run",
        _ => "not applicable",
    }
}

fn view(
    site: &mut Site,
    position: u64,
    e: &Entry,
    in_signed_log: bool,
    hist: &History,
) -> crate::Result<EntryView> {
    let category = site.store.recipient(&e.recipient)?.and_then(|r| r.category);
    Ok(EntryView {
        position,
        date: e.time.get(..10).unwrap_or(&e.time).to_string(),
        released: e.event == Event::Release,
        recipient: e.recipient.clone(),
        category,
        purpose: e.purpose.clone(),
        studies: u64::from(e.study_ref.is_some()),
        images: e.instances,
        checks: checks_text(&e.verification),
        reason: e.reason.clone(),
        in_signed_log,
        details: study_details(hist, position),
    })
}

/// The patient's entries as shown, from the refreshed `cache`.
///
/// "In the hospital's signed log" is what [`Site::disclosures_by_ref`]
/// reported: the head signature stored with the last entry verifies over
/// the log's size and root, and the entry is in that tree. The inclusion
/// half holds by construction here (the root is computed from the very
/// hashes the entry's path would be), so the signed head carries the
/// claim, as it did there; the cache recomputes it whenever the log
/// grows or is found rewritten.
pub(crate) fn patient_views(
    site: &mut Site,
    cache: &crate::LedgerCache,
    pref: &str,
) -> crate::Result<Vec<EntryView>> {
    let hist = history(site, cache, pref)?;
    let mut out = Vec::new();
    for &pos in cache.positions_of(pref) {
        let Some(e) = cache.entry(pos) else { continue };
        if shown(e) {
            out.push(view(site, pos, e, cache.head_ok(), &hist)?);
        }
    }
    Ok(out)
}

/// Runs `f` on the site with the ledger cache brought up to date (see
/// [`crate::cache`]): what every page about the patient's entries reads.
pub(crate) async fn with_cache<T: Send + 'static>(
    st: &St,
    f: impl FnOnce(&mut Site, &crate::LedgerCache, i64) -> crate::Result<T> + Send + 'static,
) -> Result<crate::Result<T>, Response> {
    let st2 = st.clone();
    with_site(st, move |site, now| {
        let mut cache = st2.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.refresh(site, now)?;
        f(site, &cache, now)
    })
    .await
}

/// The signed-in patient's session (touched) and `f`, in one trip to the
/// site: one wait for the blocking pool and the site's lock, rather than
/// one for the session and one for the page (what the pages patients
/// browse most do); the redirect to the sign-in page without a session.
pub(crate) async fn with_session<T: Send + 'static>(
    st: &St,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Site, &Session, i64) -> crate::Result<T> + Send + 'static,
) -> Result<(Session, crate::Result<T>), Response> {
    let Some(token) = crate::common::cookie_value(
        headers,
        &crate::common::cookie_name(st.as_ref(), AppState::SESSION),
    ) else {
        return Err(redirect("/signin"));
    };
    let policy = st.sessions();
    let r = with_site(st, move |site, now| -> crate::Result<Option<_>> {
        let session = match crate::common::live_session(site, &policy, &token, now)? {
            Some(s) if s.kind == AppState::KIND => s,
            _ => return Ok(None),
        };
        let r = f(site, &session, now);
        Ok(Some((session, r)))
    })
    .await?;
    match r {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(redirect("/signin")),
        Err(e) => Err(internal(e)),
    }
}

/// [`with_session`], with `f` over the ledger cache brought up to date
/// (as [`with_cache`]).
pub(crate) async fn with_session_cache<T: Send + 'static>(
    st: &St,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Site, &crate::LedgerCache, &Session, i64) -> crate::Result<T> + Send + 'static,
) -> Result<(Session, crate::Result<T>), Response> {
    let st2 = st.clone();
    with_session(st, headers, move |site, session, now| {
        let mut cache = st2.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.refresh(site, now)?;
        f(site, &cache, session, now)
    })
    .await
}

/// What a recipient received, in one sentence (the list page; the entry
/// page lists every sentence).
fn received_text(v: &EntryView) -> String {
    match v.details.received.first() {
        Some(first) if v.details.received.len() == 1 => first.clone(),
        Some(first) => format!("{first} (and more: see the entry)"),
        None => "Copies of the images with your name and other details that identify you removed or replaced.".into(),
    }
}

pub(crate) fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn event_text(v: &EntryView) -> &'static str {
    if v.released {
        "Sent"
    } else {
        "Not sent (refused)"
    }
}

async fn list(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = with_session_cache(&st, &headers, move |site, cache, session, _| {
        let pref = &session.subject;
        let views = patient_views(site, cache, pref)?;
        let totp = site
            .store
            .portal_patient(pref)?
            .is_some_and(|a| a.totp_nonce.is_some());
        Ok((views, totp))
    })
    .await;
    let (session, (views, totp)) = match r {
        Ok((s, Ok(v))) => (s, v),
        Ok((_, Err(e))) => return internal(e),
        Err(r) => return r,
    };
    html_response(
        StatusCode::OK,
        layout(
            "Where my images went",
            Some(&session),
            false,
            html! {
                @if !totp {
                    aside class="notice" aria-labelledby="totp-h" {
                        h2 id="totp-h" { "Protect your account" }
                        p { "Add a code from an authenticator app to your sign-in. "
                            a href="/totp" { "Add a sign-in code" } }
                    }
                }
                p { "Every time the hospital sent your images to someone, or decided not to, it is listed here, newest first." }
                @if views.is_empty() {
                    p { "Nothing yet: your images have not been sent to anyone." }
                } @else {
                    ul class="entries" {
                        @for v in views.iter().rev() {
                            li {
                                article aria-labelledby=(format!("e{}", v.position)) {
                                    h2 id=(format!("e{}", v.position)) {
                                        a href=(format!("/entries/{}", v.position)) {
                                            (event_text(v)) " to " (v.recipient)
                                        }
                                    }
                                    dl {
                                        dt { "Date" } dd { time datetime=(v.date) { (v.date) } }
                                        dt { "Recipient" } dd { (v.recipient)
                                            @if let Some(c) = &v.category { " (" (c) ")" } }
                                        dt { "Purpose" } dd { (v.purpose) }
                                        dt { "Studies" } dd {
                                            @if v.details.studies.is_empty() {
                                                (counted(v.studies, "study", "studies")) ", " (counted(v.images, "image", "images"))
                                            } @else {
                                                ul { @for s in &v.details.studies { li { (s) } } }
                                            }
                                        }
                                        @if v.released {
                                            dt { "What the recipient received" } dd { (received_text(v)) }
                                        }
                                        dt { "Checks on the images" } dd { (v.checks) }
                                        dt { "In the hospital's signed log" } dd {
                                            @if v.in_signed_log { "yes" } @else { "not confirmed" } }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

async fn entry_page(
    State(st): State<St>,
    Path(position): Path<String>,
    headers: HeaderMap,
) -> Response {
    let position = position.parse::<u64>().ok();
    let r = with_session_cache(&st, &headers, move |site, cache, session, _| {
        let Some(position) = position else {
            return Ok(None);
        };
        // authorized here: only the patient's own entries are candidates
        let pref = &session.subject;
        let views = patient_views(site, cache, pref)?;
        let Some(v) = views.into_iter().find(|v| v.position == position) else {
            return Ok(None);
        };
        let proof = cache.proof(site, position);
        let flag = crate::patient::entry_flag(site, pref, position)?;
        Ok(Some((v, proof, flag)))
    })
    .await;
    let (session, (v, proof, flag)) = match r {
        Ok((s, Ok(Some(x)))) => (s, x),
        Ok((s, Ok(None))) => return not_found(Some(&s)),
        Ok((_, Err(e))) => return internal(e),
        Err(r) => return r,
    };
    let title = format!("{} to {}", event_text(&v), v.recipient);
    html_response(
        StatusCode::OK,
        layout(
            &title,
            Some(&session),
            proof.is_ok(),
            html! {
                dl {
                    dt { "Date" } dd { time datetime=(v.date) { (v.date) } }
                    dt { "What happened" } dd { (event_text(&v)) }
                    dt { "Recipient" } dd { (v.recipient)
                        @if let Some(c) = &v.category { " (" (c) ")" } }
                    dt { "Purpose" } dd { (v.purpose) }
                    dt { "Studies" } dd {
                        @if v.details.studies.is_empty() {
                            (counted(v.studies, "study", "studies")) ", " (counted(v.images, "image", "images"))
                            "; study details are not recorded for this entry"
                        } @else {
                            ul { @for s in &v.details.studies { li { (s) } } }
                        }
                    }
                    dt { "What the recipient received" } dd {
                        @if !v.released {
                            "Nothing."
                        } @else if v.details.received.is_empty() {
                            (received_text(&v))
                        } @else {
                            ul { @for r in &v.details.received { li { (r) } } }
                        }
                    }
                    @if !v.released {
                        dt { "Why not" } dd { (v.reason) }
                    }
                    dt { "Checks on the images" } dd { (v.checks) }
                }
                // marked for proof.js only with a bundle: without one it
                // would report "could NOT be verified" under the notice
                section class="proof" data-veil-proof[proof.is_ok()] aria-labelledby="proof-h" {
                    h2 id="proof-h" { "Is this record in the hospital's signed log?" }
                    @match &proof {
                        Ok(b) => {
                            script type="application/json" {
                                (PreEscaped(proof_json(b)))
                            }
                            p data-veil-proof-result role="status" aria-live="polite" {
                                "This check runs in your browser and needs JavaScript."
                            }
                        }
                        Err(e) => {
                            p role="status" { "No proof is available yet: " (proof_unavailable(e)) }
                        }
                    }
                    p { a href="/about-proofs" { "What “verified” means and how to check it yourself" } }
                }
                (crate::patient::report_section(&session, v.position, flag.as_ref(), None))
            },
        ),
    )
}

/// The bundle as JSON for a `<script type="application/json">` data
/// block: `<` written `\u003c`, so no text in an entry can close the
/// block (`</script>`) or open a comment; JSON reads it back as `<`.
pub fn proof_json(b: &veil_ledger::ProofBundle) -> String {
    serde_json::to_string(b)
        .unwrap_or_default()
        .replace('<', "\\u003c")
}

fn proof_unavailable(e: &veil_ledger::ProofError) -> &'static str {
    use veil_ledger::ProofError::*;
    match e {
        NoCheckpoint | NotCovered { .. } => {
            "the hospital signs its log regularly, and has not signed it since this record was added."
        }
        _ => "the hospital's log needs checking; please contact the hospital.",
    }
}

// ---- about proofs -------------------------------------------------------------

async fn about_proofs(State(st): State<St>, headers: HeaderMap) -> Response {
    let session = patient_session(&st, &headers).await.ok().map(|s| s.0);
    let key = match with_site(&st, |site, _| site.ledger_verifier().to_string()).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    html_response(
        StatusCode::OK,
        layout(
            "What “verified” means",
            session.as_ref(),
            false,
            html! {
                p { "Every time the hospital sends your images, or refuses to, it writes a record in a log. "
                    "The log is built so that a record cannot be changed or removed later without it showing: "
                    "each record is sealed into a summary that the hospital signs with its key." }
                p { "When a record says “" (VERIFIED) "”, your browser itself checked, "
                    "without trusting the portal's word, that the record is part of the log the hospital signed." }
                h2 { "What the check cannot tell you" }
                p { "The check proves the record is in a log signed with the key below. "
                    "It cannot prove that the key is the hospital's: compare it with the key "
                    "the hospital publishes elsewhere, for example on its letters or its website." }
                h2 { "The hospital's verifier key" }
                p class="secret" { code { (key) } }
                h2 { "Checking a proof yourself" }
                p { "Each record's proof is a small file anyone can check with free tools. It holds:" }
                ul {
                    li { "the record exactly as written in the log;" }
                    li { "the path of hashes from the record to the top of the log (RFC 6962);" }
                    li { "the signed summary of the log (a signed note: size, top hash, Ed25519 signature);" }
                    li { "the verifier key above." }
                }
                ol {
                    li { "Check that the verifier key is the one the hospital publishes." }
                    li { "Check the signature of the summary with that key." }
                    li { "Hash the record (SHA-256 of a zero byte and the record), then combine it with each hash of the path "
                         "(SHA-256 of a one byte, the left hash and the right hash); the result must equal the summary's top hash, "
                         "and the summary's size must cover the record's position." }
                }
                p { "The hospital's staff can give you the proof file of any record "
                    "(command " code { "veil ledger proof --position N --json" } ")." }
            },
        ),
    )
}

// ---- who looked at my record --------------------------------------------------

async fn lookups(State(st): State<St>, headers: HeaderMap) -> Response {
    let r = with_session(&st, &headers, |site, session, _| {
        Ok(site.store.portal_lookups_for(&session.subject)?)
    })
    .await;
    let (session, rows) = match r {
        Ok((s, Ok(r))) => (s, r),
        Ok((_, Err(e))) => return internal(e),
        Err(r) => return r,
    };
    html_response(
        StatusCode::OK,
        layout(
            "Who looked at my record",
            Some(&session),
            false,
            html! {
                p { "Each time a member of the hospital's staff looked up your record in the privacy gateway, "
                    "it is listed here with their role. Every look-up is also written in the hospital's signed log." }
                @if rows.is_empty() {
                    p { "No one has looked up your record." }
                } @else {
                    table {
                        caption { "Look-ups of your record, newest first" }
                        thead { tr { th scope="col" { "Date and time (UTC)" } th scope="col" { "Staff role" } } }
                        tbody {
                            @for (role, at) in rows.iter().rev() {
                                tr {
                                    td { (crate::rfc3339(*at).replace('T', " ").replace('Z', "")) }
                                    td { (role_text(role)) }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

fn role_text(r: &str) -> &str {
    match r {
        "admin" => "administrator",
        "reviewer" => "reviewer",
        "auditor" => "auditor",
        other => other,
    }
}

// ---- serving ------------------------------------------------------------------

/// Why the portal could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {kind:?}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error's kind.
        kind: std::io::ErrorKind,
    },
    /// Serving failed, or the thread could not start.
    #[error("portal server: {0}")]
    Serve(String),
}

/// Serves `app` on `listener` until `shutdown` completes; in-flight
/// requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| WebError::Serve(e.to_string()))
}

/// The most threads of a listener's blocking pool: the store work of
/// each request (serialized by the site mutex) and password hashing
/// ([`crate::hashing_slots`] at most). A few more than the hashing slots,
/// so page requests still find threads while passwords are hashed.
pub const BLOCKING_THREADS: usize = 8;

/// A web listener on its own thread and tokio runtime, for a synchronous
/// caller (`veil serve`). Generic over the router so the staff console
/// can be started the same way on its own address.
#[derive(Debug)]
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), WebError>>>,
}

impl Background {
    /// Binds `addr` and serves `app` on a new thread named `name`;
    /// returns once bound.
    pub fn start(addr: SocketAddr, app: Router, name: &str) -> Result<Background, WebError> {
        Background::start_with(addr, app, name, None)
    }

    /// As [`Background::start`], over HTTPS with `tls` when given.
    pub fn start_with(
        addr: SocketAddr,
        app: Router,
        name: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Background, WebError> {
        // two workers: pages are small; store work runs on the blocking
        // pool. That pool is capped (tokio's default is 512 threads):
        // every store task waits on the one site mutex, so with 200
        // patients at once there were 200 threads, each holding a stack
        // and a malloc arena, and none faster for it; beyond the cap,
        // tasks wait in tokio's queue, which costs nothing
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_all()
            .build()
            .map_err(|e| WebError::Serve(e.to_string()))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|e| WebError::Bind {
                addr,
                kind: e.kind(),
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| WebError::Serve(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    match tls {
                        None => serve(listener, app, shutdown).await,
                        Some(tls) => {
                            let l = TlsListener::new(listener, tls)
                                .map_err(|e| WebError::Serve(e.to_string()))?;
                            axum::serve(l, app)
                                .with_graceful_shutdown(shutdown)
                                .await
                                .map_err(|e| WebError::Serve(e.to_string()))
                        }
                    }
                })
            })
            .map_err(|e| WebError::Serve(e.to_string()))?;
        Ok(Background {
            addr: local,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, joins the thread.
    pub fn shutdown(mut self) -> Result<(), WebError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), WebError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| WebError::Serve("the portal thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

/// A listener that hands axum TLS streams: TCP connections are accepted
/// here and each handshake runs in its own task (with a time limit), so a
/// client that stalls mid-handshake delays no one else.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    fn new(
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        // out of descriptors and the like: back off briefly
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = tx.send((s, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { rx, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // the accepting task never ends while the runtime runs
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
