//! The staff console's web pages (issue 19): an axum [`Router`] served on
//! its own listener (`[console] listen`, staff only, never with the
//! portal), started like the portal with [`crate::web::Background`].
//!
//! Pages: sign-in (staff name, password, the TOTP code when enrolled),
//! the dashboard ([`crate::dashboard`]: queue, releases and refusals per
//! day, open flags, the ledger's head, last checkpoint and a verification
//! run now), the patient search (records the lookup, which the patient
//! sees with the role only, and runs the lookup rule), flags (list,
//! filter, handle or dismiss) and the recipient registry.
//!
//! Security is the portal's, from the same code ([`crate::common`]): CSP
//! without inline script or style, `nosniff`, no referrer, `no-store`;
//! CSRF on every form (403 without it); an `HttpOnly; SameSite=Strict`
//! cookie named `veil_staff_session` (the portal's is `veil_session`:
//! cookies are per host, not per port); sign-in limits per staff name;
//! logs with the route template and status only. Roles are checked here,
//! on the server, for every action: an auditor reads, a reviewer and an
//! admin also handle flags ([`crate::flags::handle`] checks again).
//!
//! The patient search is a POST: it writes a lookup (ledger entry and
//! the patient's row), so it carries the CSRF token like every change,
//! and the patient ID stays out of URLs, browser history and proxy logs.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use veil_core::Phi;
use veil_ledger::Event;
use veil_release::Site;

use crate::common::{
    csrf_ok, error_box, forbidden, form, hashing, html_response, internal, locked, locked_text,
    portal_css, pre_csrf, pre_csrf_ok, redirect, security_headers, session_cookie, system_clock,
    with_cookies, with_site, Clock, Frame, Shared,
};
use crate::flags::{self, FlagRules, Outcome};
use crate::staff::staff_session;
use crate::{
    portal_history, record_lookup, Kind, PendingSignIns, Portal, PortalError, Role, Secret,
    Session, SessionPolicy, SignIn,
};

/// The console's settings.
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// Limits and session lifetimes.
    pub portal: Portal,
    /// Whether staff reach the console over HTTPS (then `Secure`,
    /// `__Host-` cookies and HSTS); see [`crate::web::WebConfig`].
    pub secure_cookies: bool,
    /// The flag rules run by the dashboard, the flag list and after each
    /// lookup.
    pub flags: FlagRules,
    /// The review folders shown under "Review queue" (`[console] review`).
    pub review: Vec<std::path::PathBuf>,
}

pub(crate) struct ConsoleState {
    site: Mutex<Site>,
    /// Sign-ins between their check and their record (see [`SignIn`]).
    pending: Arc<PendingSignIns>,
    pub(crate) cfg: ConsoleConfig,
    clock: Clock,
    /// What the dashboard and the flag rules read, kept between views;
    /// all three locked after `site`, never before.
    memo: Mutex<Memo>,
}

/// How often (seconds) the flag rules run again on a ledger that did not
/// change: their windows ("releases today", "in the last N hours") move
/// with the clock, so a quiet ledger can still cross a threshold.
pub const FLAG_RULES_EVERY_SECS: i64 = 60;

/// The console's memory between views (see [`crate::cache`]).
///
/// Why: the dashboard verified all of the ledger and the flag rules
/// re-read it on every view. The verification is now kept per (ledger
/// size, root, latest checkpoint, rebuilds of the cache): an append, a
/// new checkpoint or a rewrite the cache detects runs it again, and the
/// dashboard says when it ran. The flag rules run when the ledger grew
/// since their last run or [`FLAG_RULES_EVERY_SECS`] passed; the other
/// inputs they read raise flags on their own path (a patient's report
/// raises its flag when filed, a lookup runs `evaluate_lookups` at once),
/// and every flag is keyed, so running them less often raises the same
/// flags, at most that many seconds later for a clock-driven window.
#[derive(Default)]
struct Memo {
    cache: crate::LedgerCache,
    /// (size, root, checkpoint signature, rebuilds) → report, at.
    verified: Option<(VerifyKey, veil_ledger::VerifyReport, i64)>,
    /// (ledger size, at) of the last flag rules run.
    flags_run: Option<(u64, i64)>,
}

type VerifyKey = (u64, veil_ledger::Hash, Option<String>, u64);

impl Memo {
    fn refresh(&mut self, site: &mut Site, now: i64) -> crate::Result<()> {
        self.cache.refresh(site, now)
    }

    /// Runs the flag rules when due (see [`Memo`]).
    fn flags(&mut self, site: &mut Site, rules: &FlagRules, now: i64) -> crate::Result<()> {
        let due = match self.flags_run {
            None => true,
            Some((size, at)) => {
                size != self.cache.len() || now - at >= FLAG_RULES_EVERY_SECS || now < at
            }
        };
        if due {
            flags::evaluate(site, rules, now)?;
            self.flags_run = Some((self.cache.len(), now));
        }
        Ok(())
    }

    /// The verification of the ledger as cached, run again when its key
    /// changed.
    fn verified(
        &mut self,
        site: &mut Site,
        now: i64,
    ) -> crate::Result<(veil_ledger::VerifyReport, i64)> {
        let key: VerifyKey = (
            self.cache.len(),
            self.cache.root(),
            self.cache.checkpoint().map(|c| c.signature.clone()),
            self.cache.rebuilds(),
        );
        match &self.verified {
            Some((k, r, at)) if *k == key => Ok((r.clone(), *at)),
            _ => {
                let r = site.verify_ledger()?;
                self.verified = Some((key, r.clone(), now));
                Ok((r, now))
            }
        }
    }
}

pub(crate) type St = Arc<ConsoleState>;

impl Shared for ConsoleState {
    const SESSION: &'static str = "veil_staff_session";
    const PRE_CSRF: &'static str = "veil_staff_csrf";
    const LISTENER: &'static str = "console";
    const KIND: Kind = Kind::Staff;
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
        layout(title, Some((session, None)), body)
    }
}

/// The console's router over `site`, on the system clock.
pub fn router(site: Site, cfg: ConsoleConfig) -> Router {
    router_with_clock(site, cfg, Arc::new(system_clock))
}

/// The console's router with an injected clock (tests).
pub fn router_with_clock(site: Site, cfg: ConsoleConfig, clock: Clock) -> Router {
    let st = Arc::new(ConsoleState {
        site: Mutex::new(site),
        pending: Arc::default(),
        cfg,
        clock,
        memo: Mutex::new(Memo::default()),
    });
    Router::new()
        .route("/", get(dashboard_page))
        .route("/signin", get(signin_form).post(signin_submit))
        .route(
            "/signout",
            post(|State(st): State<St>, h: HeaderMap, b: Bytes| crate::common::signout(st, h, b)),
        )
        .route("/patients", get(search_form).post(search_submit))
        .route("/flags", get(flags_page))
        .route("/flags/{id}", post(flag_submit))
        .route("/recipients", get(recipients_page))
        .route(
            "/staff",
            get(crate::accounts::list_page).post(crate::accounts::add),
        )
        .route("/staff/{name}", post(crate::accounts::change))
        .route("/review", get(crate::review::queue_page))
        .route("/review/{folder}", post(crate::review::decide))
        .route("/review/{folder}/picture", get(crate::review::picture))
        .route(
            "/totp",
            get(crate::common::totp_form::<ConsoleState>)
                .post(crate::common::totp_submit::<ConsoleState>),
        )
        .route("/static/portal.css", get(portal_css))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { not_found(None) })
        .layer(middleware::from_fn_with_state(
            st.clone(),
            security_headers::<ConsoleState>,
        ))
        .with_state(st)
}

// ---- session and role -----------------------------------------------------------

/// A signed-in member of staff: the session and the account's role now
/// (read per request: a role changed or an account disabled counts at
/// once).
pub(crate) struct Staff {
    pub(crate) session: Session,
    pub(crate) role: Role,
}

/// A change posted by a member of staff: signed in, the CSRF token
/// checked (403 without it), and the role allowed by `may` (else the 403
/// page saying `who` may, with a link `back`). Returns the staff member
/// and the decoded form.
pub(crate) async fn staff_change(
    st: &St,
    headers: &HeaderMap,
    body: &Bytes,
    may: fn(Role) -> bool,
    who: &str,
    back: (&str, &str),
) -> Result<(Staff, std::collections::HashMap<String, String>), Response> {
    let s = staff(st, headers).await?;
    let f = form(body);
    if !csrf_ok(&s.session, &f) {
        return Err(forbidden());
    }
    if !may(s.role) {
        return Err(role_forbidden(&s, who, back));
    }
    Ok((s, f))
}

pub(crate) async fn staff(st: &St, headers: &HeaderMap) -> Result<Staff, Response> {
    let (session, _) = crate::common::session(st, headers).await?;
    let name = session.subject.clone();
    let role = with_site(st, move |site, _| site.store.portal_staff(&name))
        .await?
        .map_err(|e| internal(e.into()))?
        .filter(|a| !a.disabled)
        .and_then(|a| a.role)
        .and_then(|r| Role::parse(&r));
    match role {
        Some(role) => Ok(Staff { session, role }),
        None => Err(redirect("/signin")),
    }
}

pub(crate) fn may_handle_flags(r: Role) -> bool {
    matches!(r, Role::Admin | Role::Reviewer)
}

/// 403 for a change the role may not make: `who` says who may
/// ("Reviewers and administrators handle flags."), `back` is the page
/// to return to and its link text.
pub(crate) fn role_forbidden(s: &Staff, who: &str, back: (&str, &str)) -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        layout(
            "Not allowed for your role",
            signed_in(s),
            html! {
                p { "Your role (" (role_text(s.role)) ") can read this console but not make this change. "
                    (who) }
                p { a href=(back.0) { (back.1) } }
            },
        ),
    )
}

pub(crate) fn role_text(r: Role) -> &'static str {
    match r {
        Role::Admin => "administrator",
        Role::Reviewer => "reviewer",
        Role::Auditor => "auditor",
    }
}

// ---- layout -----------------------------------------------------------------------

/// The console's page: `signed_in` is the session and, where known,
/// the role (the footer names both).
fn layout(title: &str, signed_in: Option<(&Session, Option<Role>)>, body: Markup) -> Markup {
    const FRAME: Frame<'static> = Frame {
        product: "Staff console",
        brand: "Veil staff console",
        nav_label: "Console",
        links: &[
            ("/", "Dashboard"),
            ("/patients", "Patient search"),
            ("/flags", "Flags"),
            ("/review", "Review"),
            ("/recipients", "Recipients"),
            ("/staff", "Staff"),
        ],
        script: None,
    };
    let footer = html! {
        @if let Some((s, role)) = signed_in {
            p { "Signed in as " (s.subject)
                @if let Some(r) = role { " (" (role_text(r)) ")" }
                ". Every search and every change is written to the signed ledger. "
                a href="/totp" { "Add a sign-in code" } }
        } @else {
            p { "Staff only. Every sign-in is written to the signed ledger." }
        }
    };
    let csrf = signed_in.map(|(s, _)| s.csrf.expose().as_str());
    FRAME.page(title, csrf, body, footer)
}

fn signed_in(s: &Staff) -> Option<(&Session, Option<Role>)> {
    Some((&s.session, Some(s.role)))
}

pub(crate) fn page(title: &str, staff: &Staff, body: Markup) -> Response {
    html_response(StatusCode::OK, layout(title, signed_in(staff), body))
}

pub(crate) fn not_found(staff: Option<&Staff>) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        layout(
            "Page not found",
            staff.and_then(signed_in),
            html! {
                p { "There is nothing here." }
                p { a href="/" { "Back to the dashboard" } }
            },
        ),
    )
}

/// A keyed patient reference, shortened for display (it is not PHI: a
/// keyed hash; the first 12 hex digits tell rows apart).
fn short_ref(r: &str) -> &str {
    r.get(..12).unwrap_or(r)
}

/// A DICOM date (`YYYYMMDD`) as `YYYY-MM-DD`; anything else as it is.
fn study_date(d: &str) -> String {
    match (d.get(..4), d.get(4..6), d.get(6..8)) {
        (Some(y), Some(m), Some(day)) if d.len() == 8 => format!("{y}-{m}-{day}"),
        _ => d.to_string(),
    }
}

fn date_time(unix: i64) -> String {
    crate::rfc3339(unix).replace('T', " ").replace('Z', "")
}

// ---- sign-in ------------------------------------------------------------------------

fn signin_page(csrf: &str, error: Option<&str>, ask_code: bool) -> Markup {
    layout(
        "Staff sign-in",
        None,
        html! {
            (error_box(error))
            form method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                div class="field" {
                    label for="name" { "Staff name" }
                    input id="name" name="name" type="text" autocomplete="username" required;
                }
                div class="field" {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                }
                div class="field" {
                    label for="code" { "Code from your authenticator app" }
                    p class="hint" id="code-hint" {
                        @if ask_code { "Your account needs this code: enter the 6 digits your app shows." }
                        @else { "Only if your account has one; otherwise leave empty." }
                    }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" maxlength="6" aria-describedby="code-hint";
                }
                button type="submit" { "Sign in" }
            }
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
    let name = f
        .get("name")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let password = Secret::new(f.get("password").cloned().unwrap_or_default());
    let code = f
        .get("code")
        .filter(|c| !c.trim().is_empty())
        .map(|c| Secret::new(c.clone()));
    // sign_in_staff's steps: the password verified outside the site's
    // lock (see SignIn)
    let portal = st.cfg.portal;
    let pending = st.pending.clone();
    let begun = with_site(&st, move |site, now| {
        SignIn::begin(
            site,
            &portal.limits,
            Some(&pending),
            Kind::Staff,
            &name,
            now,
        )
    })
    .await;
    let r = match begun {
        Ok(Ok(s)) => match hashing(move || {
            let ok = s.verify(&password);
            (s, ok)
        })
        .await
        {
            Ok((s, ok)) => {
                with_site(&st, move |site, now| {
                    let name = s.subject().to_string();
                    s.finish(site, &portal.limits, ok, code.as_ref(), now)?;
                    staff_session(site, &portal, &name, now)
                })
                .await
            }
            Err(resp) => Err(resp),
        },
        Ok(Err(e)) => Ok(Err(e)),
        Err(resp) => Err(resp),
    };
    let r = match r {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let refused = |status: StatusCode, msg: &str, ask_code: bool| {
        html_response(status, signin_page(&csrf, Some(msg), ask_code))
    };
    match r {
        Ok(s) => with_cookies(
            redirect("/"),
            [session_cookie(st.as_ref(), s.token.expose())],
        ),
        Err(PortalError::TotpRequired) => refused(
            StatusCode::UNAUTHORIZED,
            "Please enter the code from your authenticator app as well.",
            true,
        ),
        Err(PortalError::BadCredentials) => refused(
            StatusCode::UNAUTHORIZED,
            "Sign-in refused: wrong name, password or code.",
            false,
        ),
        Err(PortalError::Locked {
            retry_after_seconds,
        }) => locked(
            refused(StatusCode::OK, &locked_text(retry_after_seconds), false),
            retry_after_seconds,
        ),
        Err(e) => internal(e),
    }
}

// ---- dashboard --------------------------------------------------------------------

async fn dashboard_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rules = st.cfg.flags;
    let st2 = st.clone();
    let d = match with_site(&st, move |site, now| -> crate::Result<_> {
        let mut memo = st2.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.refresh(site, now)?;
        // the rules run when due (see `Memo`): a flag is raised once (keyed)
        memo.flags(site, &rules, now)?;
        let (report, at) = memo.verified(site, now)?;
        crate::dashboard_cached(site, &memo.cache, &report, at, now)
    })
    .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let waiting = crate::review::waiting_count(&st.cfg.review).await;
    let recent: Vec<_> = d.per_day.iter().rev().take(7).collect();
    page(
        "Dashboard",
        &s,
        html! {
            section aria-labelledby="ledger-h" {
                h2 id="ledger-h" { "Ledger" }
                dl {
                    dt { "Verification" }
                    dd data-ledger-ok=(d.ledger_ok) {
                        @if d.ledger_ok { "passed" }
                        @else {
                            strong { "FAILED" }
                            @if let Some(p) = d.first_bad_position { " at position " (p) }
                        }
                        " (run " (date_time(d.verified_at)) " UTC, when the ledger last changed)"
                    }
                    dt { "Entries" } dd { (d.ledger_size) }
                    dt { "Head (root hash)" } dd class="secret" { code { (d.ledger_root) } }
                    dt { "Last signed checkpoint" } dd {
                        @match &d.last_checkpoint { Some(t) => (t), None => "none yet" }
                    }
                }
            }
            section aria-labelledby="flags-h" {
                h2 id="flags-h" { "Flags" }
                p { a href="/flags" { (d.open_flags) " open " (if d.open_flags == 1 { "flag" } else { "flags" }) } }
            }
            section aria-labelledby="queue-h" {
                h2 id="queue-h" { "Gateway queue" }
                @if d.queue.is_empty() {
                    p { "No study in the gateway's queue." }
                } @else {
                    table {
                        caption { "Studies per state" }
                        thead { tr { th scope="col" { "State" } th scope="col" { "Studies" } } }
                        tbody {
                            @for (state, n) in &d.queue {
                                tr { td { (state) } td { (n) } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="days-h" {
                h2 id="days-h" { "Releases and refusals" }
                table {
                    caption { "The last 7 days (UTC), newest first" }
                    thead { tr { th scope="col" { "Day" } th scope="col" { "Releases" } th scope="col" { "Refusals" } } }
                    tbody {
                        @for c in &recent {
                            tr { td { (c.date) } td { (c.releases) } td { (c.refusals) } }
                        }
                    }
                }
            }
            section aria-labelledby="review-h" {
                h2 id="review-h" { "Review queue" }
                @if st.cfg.review.is_empty() {
                    p { "No review folder is configured (" code { "[console] review" } ")." }
                } @else {
                    p { a href="/review" { (waiting) " " (if waiting == 1 { "object waits" } else { "objects wait" }) " for review" } }
                }
            }
        },
    )
}

// ---- patient search ---------------------------------------------------------------

fn search_box(s: &Staff) -> Markup {
    html! {
        p { "A search is written to the signed ledger with your name, and the patient sees, "
            "under “Who looked at my record”, that a member of staff with your role looked." }
        form method="post" action="/patients" role="search" {
            input type="hidden" name="csrf" value=(s.session.csrf.expose());
            div class="field" {
                label for="patient_id" { "Patient ID" }
                input id="patient_id" name="patient_id" type="text" autocomplete="off" required maxlength="64";
            }
            button type="submit" { "Search" }
        }
    }
}

async fn search_form(State(st): State<St>, headers: HeaderMap) -> Response {
    match staff(&st, &headers).await {
        Ok(s) => page("Patient search", &s, search_box(&s)),
        Err(r) => r,
    }
}

fn event_text(e: &Event) -> &'static str {
    match e {
        Event::Release => "released",
        Event::Refusal => "refused",
        Event::ConsentChange => "consent changed",
        Event::RetentionDelete => "deleted (retention)",
        _ => "other",
    }
}

async fn search_submit(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form(&body);
    if !csrf_ok(&s.session, &f) {
        return forbidden();
    }
    let pid = f
        .get("patient_id")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    if pid.is_empty() {
        return page("Patient search", &s, search_box(&s));
    }
    let shown_id = pid.clone();
    let session = s.session.clone();
    let rules = st.cfg.flags;
    let r = with_site(&st, move |site, now| -> crate::Result<_> {
        let pid = Phi::new(pid);
        record_lookup(site, &session, &pid, now)?;
        flags::evaluate_lookups(site, &rules, now)?;
        let pref = site.patient_ref(&pid);
        let history = portal_history(site, &pref)?;
        let flags = site.store.portal_flags_for(&pref)?;
        Ok((pref, history, flags))
    })
    .await;
    let (pref, history, flags) = match r {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let open = flags.iter().filter(|f| f.status == "open").count();
    page(
        "Patient search",
        &s,
        html! {
            (search_box(&s))
            section aria-labelledby="result-h" {
                h2 id="result-h" { "Patient " (shown_id) }
                p { "Keyed reference " code { (short_ref(&pref)) } ". "
                    "This search was recorded. "
                    @if open > 0 { a href="/flags" { (open) " open flag(s) about this patient" } "." }
                }
                @if history.is_empty() {
                    p { "No release, refusal or consent change about this patient in the ledger." }
                } @else {
                    table {
                        caption { "History, newest first" }
                        thead { tr {
                            th scope="col" { "Position" } th scope="col" { "Time (UTC)" }
                            th scope="col" { "What" } th scope="col" { "Recipient" }
                            th scope="col" { "Purpose" } th scope="col" { "Studies" }
                            th scope="col" { "Checks / reason" }
                        } }
                        tbody {
                            @for h in history.iter().rev() {
                                tr {
                                    td { (h.position) }
                                    td { (h.time.replace('T', " ").replace('Z', "")) }
                                    td { (event_text(&h.event)) }
                                    td { (h.recipient)
                                        @if let Some(c) = &h.recipient_category { " (" (c) ")" } }
                                    td { (h.purpose) }
                                    td {
                                        @for st in &h.studies {
                                            (study_date(&st.date)) " " (st.modalities.join("/")) " " (st.description)
                                            " (" (st.instances) ")" br;
                                        }
                                    }
                                    td {
                                        @if h.event == Event::Release { (h.verification) }
                                        @else { (h.reason) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

// ---- flags ------------------------------------------------------------------------

async fn flags_page(State(st): State<St>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let wanted = q.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "status")
            .map(|(_, v)| v.into_owned())
    });
    let status = match wanted.as_deref() {
        None | Some("") | Some("open") => Some("open"),
        Some("handled") => Some("handled"),
        Some("dismissed") => Some("dismissed"),
        Some(_) => None,
    };
    let rules = st.cfg.flags;
    let st2 = st.clone();
    let rows = match with_site(&st, move |site, now| -> crate::Result<_> {
        let mut memo = st2.memo.lock().unwrap_or_else(|e| e.into_inner());
        memo.refresh(site, now)?;
        memo.flags(site, &rules, now)?;
        flags::list(site, status)
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let can = may_handle_flags(s.role);
    let current = status.unwrap_or("all");
    page(
        "Flags",
        &s,
        html! {
            form method="get" action="/flags" {
                div class="field" {
                    label for="status" { "Show" }
                    select id="status" name="status" {
                        @for (v, t) in [("open", "open flags"), ("handled", "handled"), ("dismissed", "dismissed"), ("all", "all flags")] {
                            option value=(v) selected[current == v] { (t) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                p { "No flag to show." }
            } @else {
                ul class="entries" {
                    @for f in rows.iter().rev() {
                        li {
                            article aria-labelledby=(format!("f-{}", f.id)) {
                                h2 id=(format!("f-{}", f.id)) {
                                    @match &f.rule_name { Some(r) => { "Rule: " (r) }, None => "Patient report" }
                                }
                                dl {
                                    dt { "Raised" } dd { (date_time(f.created_at)) " UTC" }
                                    dt { "Patient (keyed reference)" } dd { code { (short_ref(&f.patient_ref)) } }
                                    @if let Some(p) = f.ledger_seq { dt { "Ledger position" } dd { (p) } }
                                    dt { "Why" } dd { (f.reason) }
                                    dt { "Status" } dd { (f.status) }
                                }
                                @if f.status == "open" && can {
                                    form method="post" action=(format!("/flags/{}", f.id)) {
                                        input type="hidden" name="csrf" value=(s.session.csrf.expose());
                                        button type="submit" name="outcome" value="handled" { "Mark handled" }
                                        " "
                                        button type="submit" name="outcome" value="dismissed" { "Dismiss" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn flag_submit(
    State(st): State<St>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match staff_change(
        &st,
        &headers,
        &body,
        may_handle_flags,
        "Reviewers and administrators handle flags.",
        ("/flags", "Back to the flags"),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let outcome = match f.get("outcome").map(|v| v.as_str()) {
        Some("handled") => Outcome::Handled,
        Some("dismissed") => Outcome::Dismissed,
        _ => return not_found(Some(&s)),
    };
    let name = s.session.subject.clone();
    match with_site(&st, move |site, now| {
        flags::handle(site, &name, &id, outcome, now)
    })
    .await
    {
        Ok(Ok(_)) => redirect("/flags"),
        // closed meanwhile, or no such flag
        Ok(Err(PortalError::Invalid(_))) => not_found(Some(&s)),
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}

// ---- recipients ---------------------------------------------------------------------

async fn recipients_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let rows = match with_site(&st, |site, _| site.store.recipients()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return internal(e.into()),
        Err(r) => return r,
    };
    page(
        "Recipients",
        &s,
        html! {
            @if rows.is_empty() {
                p { "No recipient is registered (" code { "veil recipient add" } ")." }
            } @else {
                table {
                    caption { "Registered recipients" }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Category" }
                        th scope="col" { "Purposes" } th scope="col" { "Recipe" }
                        th scope="col" { "Retention (days)" }
                    } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { (r.name) }
                                td { (r.category.as_deref().unwrap_or("—")) }
                                td { (r.purposes.join(", ")) }
                                td { (r.recipe_label) }
                                td { (r.retention_days) }
                            }
                        }
                    }
                }
            }
        },
    )
}
