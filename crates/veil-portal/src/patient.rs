//! The patient portal's pages beyond the list (issue 19): my sharing
//! choices, sharing requests, reporting an entry, and downloading my
//! history (a FHIR AuditEvent bundle, and a printable page). Handlers
//! only: the rules are [`crate::choices`] and [`crate::flags`]; the
//! middleware, sessions, CSRF and layout are `web.rs`'s.
//!
//! Every POST checks the session's CSRF token (403 without it); every
//! object is looked up under the signed-in patient's reference (another
//! patient's entry or request is 404); nothing typed and no patient
//! reference reaches a log (errors are logged by kind only).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use veil_consent::{Decision, SiteDefault};
use veil_ledger::Event;
use veil_store::portal::FlagRow;

use crate::choices::{self, Choice, RequestState, SharingRequest};
use crate::common::{forbidden, form, html_response, internal, redirect, with_site};
use crate::web::{
    counted, history, layout, not_found, page_response, patient_session, study_line, St,
};
use crate::{PortalError, Session, Sessions};

/// The routes of this module (merged into [`crate::web::router`]).
pub(crate) fn routes() -> Router<St> {
    Router::new()
        .route("/choices", get(choices_page).post(choices_submit))
        .route("/requests", get(requests_page))
        .route("/requests/{position}", post(request_answer))
        .route("/entries/{position}/report", post(report_submit))
        .route("/history", get(history_page))
        .route("/history/audit.json", get(history_download))
}

fn csrf_ok(session: &Session, f: &std::collections::HashMap<String, String>) -> bool {
    Sessions::csrf_ok(session, f.get("csrf").map(|s| s.as_str()).unwrap_or(""))
}

fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf.expose()); }
}

/// A purpose code in words (`ai-training` → "AI training").
pub(crate) fn purpose_text(p: &str) -> String {
    match p {
        "ai-training" => "AI training".into(),
        "research" => "Research".into(),
        "treatment" => "Treatment".into(),
        "quality" => "Quality improvement".into(),
        other => {
            let s = other.replace(['-', '_'], " ");
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

fn default_text(d: Option<SiteDefault>) -> &'static str {
    match d {
        Some(SiteDefault::OptOut) => "shared unless you say no (opt-out)",
        Some(SiteDefault::OptIn) | None => "not shared unless you say yes (opt-in)",
    }
}

/// The site default in two words, for the "follow the default" option.
fn default_short(d: Option<SiteDefault>) -> &'static str {
    match d {
        Some(SiteDefault::OptOut) => "shared",
        Some(SiteDefault::OptIn) | None => "not shared",
    }
}

fn scope_text(c: &Choice) -> String {
    match &c.category {
        Some(cat) => format!(
            "{}, recipients of the kind “{cat}”",
            purpose_text(&c.purpose)
        ),
        None => format!("{}, every recipient", purpose_text(&c.purpose)),
    }
}

// ---- my sharing choices -------------------------------------------------------

fn choices_body(session: &Session, list: &[Choice], saved: Option<Markup>) -> Markup {
    html! {
        @if let Some(m) = saved { (m) }
        p { "For each purpose, you can say whether the hospital may share your images. "
            "The hospital has a default for each purpose; your choice replaces it. "
            "A choice applies to the next time the hospital shares images: "
            "what was already sent stays with the recipient, who is told when you stop sharing." }
        @if list.is_empty() {
            p { "The hospital shares images for no purpose at the moment: there is nothing to choose." }
        }
        @for (i, c) in list.iter().enumerate() {
            form method="post" action="/choices" class="choice" {
                (csrf_field(session))
                input type="hidden" name="purpose" value=(c.purpose);
                input type="hidden" name="category" value=(c.category.clone().unwrap_or_default());
                fieldset {
                    legend { (scope_text(c)) }
                    p { "Hospital default: " (default_text(c.default)) "." }
                    p { "Now: "
                        strong { @if c.shared { "shared" } @else { "not shared" } }
                        @if c.by_patient { " (your choice)" } @else { " (hospital default)" } "." }
                    p {
                        "If you stop sharing: "
                        @if c.recipients_told.is_empty() {
                            "no one has received your images for this, so no one needs to be told."
                        } @else if c.recipients_told.len() == 1 {
                            "this recipient will be told: " (c.recipients_told[0]) "."
                        } @else {
                            "these " (c.recipients_told.len()) " recipients will be told: "
                            (c.recipients_told.join(", ")) "."
                        }
                    }
                    div class="radio" {
                        input type="radio" name="choice" value="permit" id=(format!("c{i}-permit"))
                            checked[c.by_patient && c.shared];
                        label for=(format!("c{i}-permit")) { "Share my images" }
                    }
                    div class="radio" {
                        input type="radio" name="choice" value="deny" id=(format!("c{i}-deny"))
                            checked[c.by_patient && !c.shared];
                        label for=(format!("c{i}-deny")) { "Do not share my images" }
                    }
                    div class="radio" {
                        input type="radio" name="choice" value="default" id=(format!("c{i}-default"))
                            checked[!c.by_patient];
                        label for=(format!("c{i}-default")) { "Follow the hospital's default (" (default_short(c.default)) ")" }
                    }
                    button type="submit" { "Save my choice for " (scope_text(c)) }
                }
            }
        }
    }
}

async fn choices_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pref = session.subject.clone();
    let list = match with_site(&st, move |site, _| choices::choices(site, &pref)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    page_response(
        StatusCode::OK,
        "My sharing choices",
        Some(&session),
        choices_body(&session, &list, None),
    )
}

async fn choices_submit(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form(&body);
    if !csrf_ok(&session, &f) {
        return forbidden();
    }
    let decision = match f.get("choice").map(String::as_str) {
        Some("permit") => Some(Decision::Permit),
        Some("deny") => Some(Decision::Deny),
        Some("default") => None,
        _ => {
            return page_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "My sharing choices",
                Some(&session),
                html! {
                    div class="error" role="alert" { p { "Please choose “Share my images”, “Do not share my images” or the hospital's default." } }
                    p { a href="/choices" { "Back to my sharing choices" } }
                },
            )
        }
    };
    let purpose = f.get("purpose").cloned().unwrap_or_default();
    let category = f.get("category").cloned().filter(|c| !c.is_empty());
    let pref = session.subject.clone();
    let r = with_site(&st, move |site, _| -> crate::Result<_> {
        let notify = match choices::set_choice(site, &pref, &purpose, category.as_deref(), decision)
        {
            Ok(n) => n,
            Err(PortalError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let told: Vec<String> = notify
            .into_iter()
            .filter(|n| n.purpose == purpose)
            .map(|n| n.recipient)
            .collect();
        let list = choices::choices(site, &pref)?;
        // a deny, or back to a default that does not share
        let stopped = !list
            .iter()
            .any(|c| c.purpose == purpose && c.category == category && c.shared);
        Ok(Some((told, list, stopped)))
    })
    .await;
    let (told, list, stopped) = match r {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return not_found(Some(&session)),
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let saved = html! {
        div class="notice" role="status" {
            p { strong { "Your choice is saved." } " It applies from the next time the hospital shares images." }
            @if stopped && !told.is_empty() {
                p { "The hospital will tell these recipients that you stopped sharing: " (told.join(", ")) "." }
            }
        }
    };
    page_response(
        StatusCode::OK,
        "My sharing choices",
        Some(&session),
        choices_body(&session, &list, Some(saved)),
    )
}

// ---- sharing requests ---------------------------------------------------------

fn state_text(s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => "waiting for your answer",
        RequestState::Approved => "you said yes",
        RequestState::Declined => "you said no",
    }
}

fn request_item(session: &Session, r: &SharingRequest) -> Markup {
    let id = format!("r{}", r.position);
    html! {
        li {
            article aria-labelledby=(id) {
                h3 id=(id) { (r.recipient) " asks for your images for " (purpose_text(&r.purpose)) }
                dl {
                    dt { "Recipient" } dd { (r.recipient) @if let Some(c) = &r.category { " (" (c) ")" } }
                    dt { "Purpose" } dd { (purpose_text(&r.purpose)) }
                    dt { "Studies waiting" } dd { (counted(r.studies as u64, "study", "studies")) }
                    dt { "Last asked" } dd { time datetime=(r.date) { (r.date) } }
                    dt { "Answer" } dd { (state_text(r.state)) }
                }
                @if r.state == RequestState::Pending {
                    form method="post" action=(format!("/requests/{}", r.position)) {
                        (csrf_field(session))
                        button type="submit" name="decision" value="approve" {
                            "Yes, share with " (r.recipient) }
                        " "
                        button type="submit" name="decision" value="decline" class="secondary" {
                            "No, do not share with " (r.recipient) }
                    }
                }
            }
        }
    }
}

async fn requests_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pref = session.subject.clone();
    let list = match with_site(&st, move |site, _| choices::requests(site, &pref)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    let (pending, answered): (Vec<_>, Vec<_>) =
        list.iter().partition(|r| r.state == RequestState::Pending);
    page_response(
        StatusCode::OK,
        "Sharing requests",
        Some(&session),
        html! {
            p { "Some purposes need your permission first. When the hospital was asked to send your images "
                "for one of them and you had not said yes, it did not send them: the request waits here. "
                "If you say yes, the images are included the next time the hospital sends to that recipient "
                "for that purpose; if you say no, they are not sent." }
            h2 { "Waiting for your answer" }
            @if pending.is_empty() {
                p { "No request is waiting." }
            } @else {
                ul class="entries" { @for r in &pending { (request_item(&session, r)) } }
            }
            @if !answered.is_empty() {
                h2 { "Answered" }
                ul class="entries" { @for r in &answered { (request_item(&session, r)) } }
                p { "You can change an answer on " a href="/choices" { "my sharing choices" } "." }
            }
        },
    )
}

async fn request_answer(
    State(st): State<St>,
    Path(position): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form(&body);
    if !csrf_ok(&session, &f) {
        return forbidden();
    }
    let Ok(position) = position.parse::<u64>() else {
        return not_found(Some(&session));
    };
    let approve = match f.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("decline") => false,
        _ => return not_found(Some(&session)),
    };
    let pref = session.subject.clone();
    match with_site(&st, move |site, _| {
        choices::answer_request(site, &pref, position, approve)
    })
    .await
    {
        Ok(Ok(true)) => redirect("/requests"),
        Ok(Ok(false)) => not_found(Some(&session)),
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}

// ---- report something unusual -------------------------------------------------

/// The patient's latest report on the entry at `position`, if any.
pub(crate) fn entry_flag(
    site: &mut veil_release::Site,
    pref: &str,
    position: u64,
) -> crate::Result<Option<FlagRow>> {
    Ok(site
        .store
        .portal_flags_for(pref)?
        .into_iter()
        .filter(|f| f.source == "patient" && f.ledger_seq == Some(position as i64))
        .max_by_key(|f| f.created_at))
}

fn flag_status_text(s: &str) -> &'static str {
    match s {
        "open" => "received; the hospital's privacy team has not closed it yet",
        "handled" => "looked into by the hospital's privacy team, who acted on it",
        "dismissed" => "looked into by the hospital's privacy team: nothing needed to be done",
        _ => "recorded",
    }
}

/// The entry page's "Report something unusual" section: the latest
/// report's status, and the form.
pub(crate) fn report_section(
    session: &Session,
    position: u64,
    flag: Option<&FlagRow>,
    error: Option<&str>,
) -> Markup {
    html! {
        section id="report" aria-labelledby="report-h" {
            h2 id="report-h" { "Report something unusual" }
            @if let Some(f) = flag {
                p role="status" { "Your report: " strong { (flag_status_text(&f.status)) } "." }
            }
            @if flag.is_none_or(|f| f.status != "open") {
                p { "If this entry looks wrong to you, tell the hospital's privacy team. They will look into it." }
                @if let Some(m) = error {
                    div class="error" role="alert" id="reason-error" { p { (m) } }
                }
                form method="post" action=(format!("/entries/{position}/report")) {
                    (csrf_field(session))
                    div class="field" {
                        label for="reason" { "What looks unusual?" }
                        p class="hint" id="reason-hint" {
                            "A few words are enough (at most " (crate::flags::MAX_REPORT_CHARS) " characters). "
                            "Please do not write your patient ID." }
                        @if error.is_some() {
                            textarea id="reason" name="reason" rows="4" required
                                maxlength=(crate::flags::MAX_REPORT_CHARS)
                                aria-invalid="true"
                                aria-describedby="reason-hint reason-error" {}
                        } @else {
                            textarea id="reason" name="reason" rows="4" required
                                maxlength=(crate::flags::MAX_REPORT_CHARS)
                                aria-describedby="reason-hint" {}
                        }
                    }
                    button type="submit" { "Send my report" }
                }
            }
        }
    }
}

async fn report_submit(
    State(st): State<St>,
    Path(position): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = form(&body);
    if !csrf_ok(&session, &f) {
        return forbidden();
    }
    let Ok(position) = position.parse::<u64>() else {
        return not_found(Some(&session));
    };
    let reason = f.get("reason").cloned().unwrap_or_default();
    let pref = session.subject.clone();
    let r = crate::web::with_cache(
        &st,
        move |site, cache, now| -> crate::Result<Option<bool>> {
            // authorized first: only an entry the patient sees is reportable
            let own = crate::web::patient_views(site, cache, &pref)?
                .iter()
                .any(|v| v.position == position);
            if !own {
                return Ok(None);
            }
            match crate::flags::report(site, &pref, position, &reason, now) {
                Ok(_) => Ok(Some(true)),
                Err(PortalError::Invalid(_)) => Ok(Some(false)),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    match r {
        Ok(Ok(Some(true))) => redirect(&format!("/entries/{position}#report")),
        Ok(Ok(Some(false))) => page_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Report something unusual",
            Some(&session),
            html! {
                (report_section(&session, position, None,
                    Some(&format!("Please write what looks unusual, in 1 to {} characters.",
                        crate::flags::MAX_REPORT_CHARS))))
                p { a href=(format!("/entries/{position}")) { "Back to the entry" } }
            },
        ),
        Ok(Ok(None)) => not_found(Some(&session)),
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}

// ---- download my history ------------------------------------------------------

/// The events of "download my history": what "where my images went"
/// lists, and consent changes and retention deletions (staff actions are
/// not: their roles are on "who looked at my record").
fn downloaded(e: Event) -> bool {
    matches!(
        e,
        Event::Release | Event::Refusal | Event::ConsentChange | Event::RetentionDelete
    )
}

fn event_words(e: Event) -> &'static str {
    match e {
        Event::Release => "Sent",
        Event::Refusal => "Not sent (refused)",
        Event::ConsentChange => "Sharing choice recorded",
        Event::RetentionDelete => "Copy deleted after its keeping period",
        _ => "Other",
    }
}

async fn history_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pref = session.subject.clone();
    let items = match crate::web::with_cache(&st, move |site, cache, _| history(site, cache, &pref))
        .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    html_response(
        StatusCode::OK,
        layout(
            "My history",
            Some(&session),
            false,
            html! {
                p class="noprint" {
                    "Everything the hospital's signed log records about your images: what was sent, "
                    "what was not, and your sharing choices. Print this page, or "
                    a href="/history/audit.json" download="my-history.json" {
                        "download it as a file (FHIR AuditEvent, JSON)" }
                    " for another system." }
                @if items.is_empty() {
                    p { "Nothing is recorded about your images yet." }
                } @else {
                    // scrolls sideways on a phone, as a region a keyboard can reach
                    div class="table-scroll" role="region" aria-label="My history table" tabindex="0" {
                    table class="history" {
                        caption { "My history, oldest first" }
                        thead { tr {
                            th scope="col" { "Date (UTC)" }
                            th scope="col" { "What happened" }
                            th scope="col" { "Recipient" }
                            th scope="col" { "Purpose" }
                            th scope="col" { "Studies" }
                            th scope="col" { "Record number" }
                        } }
                        tbody {
                            @for h in items.values() {
                                tr {
                                    td { (h.time.get(..10).unwrap_or(&h.time)) }
                                    td { (event_words(h.event))
                                        @if h.event == Event::Refusal && !h.reason.is_empty() {
                                            br; span class="hint" { (h.reason) } } }
                                    td { (h.recipient) }
                                    td { @if !h.purpose.is_empty() { (purpose_text(&h.purpose)) } }
                                    td {
                                        @for s in &h.studies { (study_line(s)) br; }
                                    }
                                    td { (h.position) }
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

async fn history_download(State(st): State<St>, headers: HeaderMap) -> Response {
    let (session, _) = match patient_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let pref = session.subject.clone();
    let r = with_site(&st, move |site, _| -> crate::Result<serde_json::Value> {
        let d = site.disclosures_by_ref(&pref)?;
        let entries: Vec<veil_ledger::Entry> = d
            .entries
            .into_iter()
            .filter(|x| downloaded(x.entry.event))
            .map(|x| {
                let mut e = x.entry;
                e.seq = x.position;
                e
            })
            .collect();
        Ok(veil_ledger::audit::fhir_audit_bundle(&entries))
    })
    .await;
    let bundle = match r {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return internal(e),
        Err(r) => return r,
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/fhir+json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"my-history.json\"",
            ),
        ],
        serde_json::to_string_pretty(&bundle).unwrap_or_default(),
    )
        .into_response()
}
