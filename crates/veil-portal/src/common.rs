//! What the patient portal ([`crate::web`]) and the staff console
//! ([`crate::console`]) share: the security headers and request log, the
//! store on the blocking pool, cookies, CSRF (the session's token, or a
//! double-submit cookie before sign-in), sessions, sign-out and the bare
//! pages (403, 500). Each web layer implements [`Shared`] for its state:
//! its cookie names, its layout, its session policy; the rules are here
//! once, so the two cannot drift apart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};
use veil_release::Site;

use crate::{
    confirm_totp, random_token, start_totp, Kind, PortalError, Secret, Session, SessionPolicy,
    Sessions,
};

/// The Content-Security-Policy of every response: scripts, styles and
/// everything else from the listener's own origin, no plugins, no
/// framing, forms only to itself.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The stylesheet of the portal and the console, served as
/// `/static/portal.css` by both.
pub const PORTAL_CSS: &str = include_str!("../web/portal.css");

/// The clock: unix seconds. Injected so tests can expire sessions.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(crate) fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A web layer's state, as the shared pieces need it.
pub(crate) trait Shared: Send + Sync + 'static {
    /// The session cookie's name (before any `__Host-` prefix). The
    /// portal's and the console's differ: cookies are per host, not per
    /// port, so a patient's session must never be sent to the console.
    const SESSION: &'static str;
    /// The pre-sign-in CSRF cookie's name.
    const PRE_CSRF: &'static str;
    /// Which listener, in the request log.
    const LISTENER: &'static str;
    /// Whose sessions this listener accepts.
    const KIND: Kind;
    /// The site, one connection behind a mutex.
    fn site(&self) -> &Mutex<Site>;
    /// Now (unix seconds).
    fn now(&self) -> i64;
    /// Reached over HTTPS: `Secure`, `__Host-` cookies and HSTS.
    fn secure(&self) -> bool;
    /// Session lifetimes.
    fn sessions(&self) -> SessionPolicy;
    /// A page in this listener's layout, for a signed-in `session`.
    fn page(title: &str, session: &Session, body: Markup) -> Markup;
}

/// Sets the security headers, and logs the listener, the route template
/// and the status (never the path itself, nor a query: a path may hold
/// an invitation token).
pub(crate) async fn security_headers<S: Shared>(
    State(st): State<Arc<S>>,
    req: Request,
    next: Next,
) -> Response {
    let secure = st.secure();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let method = req.method().clone();
    let started = Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if secure {
        // reached over HTTPS (a proxy's): browsers keep to HTTPS for a year
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    tracing::info!(
        listener = S::LISTENER,
        method = %method,
        route = %route,
        status = res.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "web request"
    );
    res
}

/// Runs `f` on the blocking pool with the site and the current time.
pub(crate) async fn with_site<S: Shared, T: Send + 'static>(
    st: &Arc<S>,
    f: impl FnOnce(&mut Site, i64) -> T + Send + 'static,
) -> Result<T, Response> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || {
        let now = st.now();
        let mut site = st.site().lock().unwrap_or_else(|e| e.into_inner());
        f(&mut site, now)
    })
    .await
    .map_err(|_| server_error())
}

/// Runs password hashing or verification (`f`) on the blocking pool
/// outside the site's lock, at most [`crate::hashing_slots`] at once:
/// argon2 is CPU-bound and fills 19 MiB, so a burst of sign-ins waits
/// here, as tasks, rather than on threads of the blocking pool, and does
/// not hold up the other pages' store work while it hashes.
pub(crate) async fn hashing<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let gate = GATE.get_or_init(|| tokio::sync::Semaphore::new(crate::hashing_slots()));
    let _permit = gate.acquire().await.map_err(|_| server_error())?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| server_error())
}

/// What a page of one listener carries around its body: its product name
/// (the brand and the title's suffix), its navigation (label and links,
/// shown with a sign-out form when signed in) and its footer.
pub(crate) struct Frame<'a> {
    pub product: &'a str,
    pub brand: &'a str,
    pub nav_label: &'a str,
    pub links: &'a [(&'a str, &'a str)],
    /// A module script to load (`/static/proof.js`), if the page needs one.
    pub script: Option<&'a str>,
}

impl Frame<'_> {
    /// The page: the same head, skip link, header and landmarks on the
    /// portal and the console (one place for what axe-core checks);
    /// `csrf` is the session's token when signed in.
    pub(crate) fn page(
        &self,
        title: &str,
        csrf: Option<&str>,
        body: Markup,
        footer: Markup,
    ) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (self.product) }
                    link rel="stylesheet" href="/static/portal.css";
                    @if let Some(src) = self.script {
                        script type="module" src=(src) {}
                    }
                }
                body {
                    a class="skip" href="#main" { "Skip to main content" }
                    header class="site" {
                        p class="brand" { (self.brand) }
                        @if let Some(csrf) = csrf {
                            nav aria-label=(self.nav_label) {
                                ul {
                                    @for (href, text) in self.links {
                                        li { a href=(href) { (text) } }
                                    }
                                    li {
                                        form method="post" action="/signout" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                    footer class="site" { (footer) }
                }
            }
        }
    }
}

/// A page without navigation (errors before or outside a session).
pub(crate) fn bare_page(status: StatusCode, title: &str, body: Markup) -> Response {
    html_response(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) }
                    link rel="stylesheet" href="/static/portal.css";
                }
                body {
                    main id="main" tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        },
    )
}

pub(crate) fn server_error() -> Response {
    tracing::error!("web: a request failed inside (store or site)");
    bare_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        html! { p { "The page could not be shown. Please try again later." } },
    )
}

pub(crate) fn internal(e: PortalError) -> Response {
    // store and site errors name tables and kinds, never values
    tracing::error!(error = %e, "web: store or site error");
    server_error()
}

pub(crate) fn forbidden() -> Response {
    bare_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        html! {
            p { "The form was sent without its security token, or with an old one. "
                "Please go back, reload the page and try again." }
            p { a href="/signin" { "Sign in" } }
        },
    )
}

pub(crate) fn cookie_name<S: Shared>(st: &S, base: &str) -> String {
    if st.secure() {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub(crate) fn set_cookie<S: Shared>(
    st: &S,
    base: &str,
    value: &str,
    max_age: Option<i64>,
) -> HeaderValue {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict",
        cookie_name(st, base)
    );
    if st.secure() {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The form's fields (first value of each name).
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

/// Compares in time independent of where the strings differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub(crate) fn html_response(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        m.into_string(),
    )
        .into_response()
}

pub(crate) fn with_cookies(
    mut r: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for c in cookies {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

pub(crate) fn error_box(msg: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = msg {
            div class="error" role="alert" id="form-error" { p { (m) } }
        }
    }
}

/// The signed-in session of this listener's kind (touched: its idle time
/// restarts), with its token; or the redirect to the sign-in page.
pub(crate) async fn session<S: Shared>(
    st: &Arc<S>,
    headers: &HeaderMap,
) -> Result<(Session, String), Response> {
    let Some(token) = cookie_value(headers, &cookie_name(st.as_ref(), S::SESSION)) else {
        return Err(redirect("/signin"));
    };
    let policy = st.sessions();
    let t = token.clone();
    let found = with_site(st, move |site, now| live_session(site, &policy, &t, now))
        .await?
        .map_err(internal)?;
    match found {
        Some(s) if s.kind == S::KIND => Ok((s, token)),
        _ => Err(redirect("/signin")),
    }
}

/// The live session for `token`, touched (see [`session`]); for callers
/// that look it up inside their own trip to the site.
pub(crate) fn live_session(
    site: &mut Site,
    policy: &SessionPolicy,
    token: &str,
    now: i64,
) -> crate::Result<Option<Session>> {
    let s = Sessions::lookup(&mut site.store, policy, token, now)?;
    // already touched this second (a page and the pages it links to,
    // under load): the write would store the same time again, and each
    // write is a commit with an fsync under the site's lock
    if s.as_ref().is_some_and(|s| s.last_seen_at < now) {
        Sessions::touch(&mut site.store, token, now)?;
    }
    Ok(s)
}

/// Whether the form carries the session's CSRF token.
pub(crate) fn csrf_ok(session: &Session, f: &HashMap<String, String>) -> bool {
    Sessions::csrf_ok(session, f.get("csrf").map(|s| s.as_str()).unwrap_or(""))
}

/// A pre-session CSRF token: the cookie's, or a new one (then set).
pub(crate) fn pre_csrf<S: Shared>(st: &S, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(v) = cookie_value(headers, &cookie_name(st, S::PRE_CSRF)) {
        if v.len() == 43 {
            return (v, None);
        }
    }
    let t = random_token()
        .map(|s| s.expose().clone())
        .unwrap_or_default();
    let c = set_cookie(st, S::PRE_CSRF, &t, None);
    (t, Some(c))
}

pub(crate) fn pre_csrf_ok<S: Shared>(
    st: &S,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> bool {
    match (
        cookie_value(headers, &cookie_name(st, S::PRE_CSRF)),
        f.get("csrf"),
    ) {
        (Some(c), Some(v)) => !c.is_empty() && same(&c, v),
        _ => false,
    }
}

/// The session cookie for a new session.
pub(crate) fn session_cookie<S: Shared>(st: &S, token: &str) -> HeaderValue {
    set_cookie(st, S::SESSION, token, Some(st.sessions().max_seconds))
}

/// `POST /signout`: ends the session (CSRF checked) and clears the cookie.
pub(crate) async fn signout<S: Shared>(st: Arc<S>, headers: HeaderMap, body: Bytes) -> Response {
    let clear = set_cookie(st.as_ref(), S::SESSION, "", Some(0));
    let (session, token) = match session(&st, &headers).await {
        Ok(s) => s,
        // no live session (expired, or signed out in another tab): there
        // is nothing to end and nothing a forged request could do, so
        // the person lands where a signed-out person belongs
        Err(_) => return with_cookies(redirect("/signin"), [clear]),
    };
    if !csrf_ok(&session, &form(&body)) {
        return forbidden();
    }
    if let Err(r) = with_site(&st, move |site, _| {
        Sessions::revoke(&mut site.store, &token)
    })
    .await
    {
        return r;
    }
    with_cookies(redirect("/signin"), [clear])
}

/// A refusal for too many failed sign-ins: 429 with `Retry-After`.
pub(crate) fn locked(mut r: Response, retry_after_seconds: i64) -> Response {
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// What a sign-in form says when locked.
pub(crate) fn locked_text(retry_after_seconds: i64) -> String {
    format!("Too many failed attempts. Please wait {retry_after_seconds} seconds and try again.")
}

pub(crate) async fn portal_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PORTAL_CSS,
    )
        .into_response()
}

// ---- TOTP enrollment (the portal's and the console's) ---------------------------

fn totp_page<S: Shared>(
    session: &Session,
    e: &crate::TotpEnrollment,
    error: Option<&str>,
) -> Markup {
    S::page(
        "Add a sign-in code",
        session,
        html! {
            p { "With a code from an authenticator app, someone who learns your password still cannot sign in." }
            ol {
                li { "In your authenticator app, add an account by typing this key:" }
            }
            p class="secret" { code { (e.secret_base32.expose()) } }
            details {
                summary { "Or use this setup link" }
                p class="secret" { code { (e.uri.expose()) } }
            }
            (error_box(error))
            form method="post" action="/totp" {
                input type="hidden" name="csrf" value=(session.csrf.expose());
                input type="hidden" name="nonce" value=(e.nonce.expose());
                div class="field" {
                    label for="code" { "The 6-digit code your app shows now" }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" maxlength="6" required;
                }
                button type="submit" { "Turn on sign-in codes" }
            }
            p { a href="/" { "Not now" } }
        },
    )
}

/// `GET /totp`: a new key to add to an authenticator app.
pub(crate) async fn totp_form<S: Shared>(State(st): State<Arc<S>>, headers: HeaderMap) -> Response {
    let (session, _) = match session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let subject = session.subject.clone();
    match with_site(&st, move |site, _| start_totp(site, S::KIND, &subject)).await {
        Ok(Ok(e)) => html_response(StatusCode::OK, totp_page::<S>(&session, &e, None)),
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}

/// `POST /totp`: the key's nonce and a code; the code turns TOTP on.
pub(crate) async fn totp_submit<S: Shared>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _) = match session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form(&body);
    if !csrf_ok(&session, &f) {
        return forbidden();
    }
    let nonce = Secret::new(f.get("nonce").cloned().unwrap_or_default());
    let code = Secret::new(f.get("code").cloned().unwrap_or_default());
    let subject = session.subject.clone();
    let r = with_site(&st, move |site, now| {
        confirm_totp(site, S::KIND, &subject, &nonce, &code, now)
    })
    .await;
    match r {
        Ok(Ok(())) => redirect("/"),
        Ok(Err(PortalError::BadCredentials)) => {
            // a fresh key: the old nonce came from the form, and is not
            // trusted to be shown again
            let subject = session.subject.clone();
            match with_site(&st, move |site, _| start_totp(site, S::KIND, &subject)).await {
                Ok(Ok(e)) => html_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    totp_page::<S>(
                        &session,
                        &e,
                        Some(
                            "That code did not match. Add this new key to your app and try again.",
                        ),
                    ),
                ),
                Ok(Err(e)) => internal(e),
                Err(r) => r,
            }
        }
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}
