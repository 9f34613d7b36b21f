//! The staff console's account pages: every member of staff sees who has
//! an account, with which role and whether it has a sign-in code; an
//! administrator adds accounts and disables or re-enables them.
//!
//! Why in the console and not only `veil staff add`: a departing member
//! of staff must be shut out at once by whoever is on duty, without a
//! shell on the server; disabling ends the account's sessions in the
//! same transaction ([`crate::set_staff_disabled`]). Each change is a
//! `staff-action` ledger entry naming the administrator. An administrator
//! cannot disable their own account, so a site cannot lock its last
//! administrator out from the console by mistake (`veil staff enable`
//! undoes any disabling from the server).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};

use crate::common::{error_box, internal, redirect, with_site};
use crate::console::{not_found, page, role_text, staff, staff_change, St, Staff};
use crate::{add_staff, set_staff_disabled, PortalError, Role, Secret};

fn is_admin(s: &Staff) -> bool {
    s.role == Role::Admin
}

/// An administrator's change: see [`staff_change`].
async fn admin_change(
    st: &St,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Staff, std::collections::HashMap<String, String>), Response> {
    staff_change(
        st,
        headers,
        body,
        |r| r == Role::Admin,
        "Administrators add, disable and enable staff accounts.",
        ("/staff", "Back to the staff accounts"),
    )
    .await
}

/// GET /staff.
pub(crate) async fn list_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    render(&st, &s, StatusCode::OK, None).await
}

async fn render(st: &St, s: &Staff, status: StatusCode, error: Option<&str>) -> Response {
    let rows = match with_site(st, |site, _| site.store.portal_staff_all()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return internal(e.into()),
        Err(r) => return r,
    };
    let admin = is_admin(s);
    let me = s.session.subject.clone();
    let mut r = page(
        "Staff accounts",
        s,
        html! {
            (error_box(error))
            table {
                caption { "Console accounts" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Role" }
                    th scope="col" { "Sign-in code" } th scope="col" { "Status" }
                    @if admin { th scope="col" { "Change" } }
                } }
                tbody {
                    @for a in &rows {
                        tr {
                            td { (a.subject) }
                            td { (a.role.as_deref().and_then(Role::parse).map(role_text).unwrap_or("—")) }
                            td { @if a.totp_nonce.is_some() { "yes" } @else { "no" } }
                            td { @if a.disabled { "disabled" } @else { "active" } }
                            @if admin {
                                td {
                                    @if a.subject == me {
                                        "(you)"
                                    } @else {
                                        form method="post" action=(format!("/staff/{}", a.subject)) {
                                            input type="hidden" name="csrf" value=(s.session.csrf.expose());
                                            @if a.disabled {
                                                button type="submit" name="action" value="enable"
                                                    aria-label=(format!("Enable {}", a.subject)) { "Enable" }
                                            } @else {
                                                button type="submit" name="action" value="disable"
                                                    aria-label=(format!("Disable {}", a.subject)) { "Disable" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if admin { (add_form(s)) }
            @else { p { "Administrators add, disable and enable accounts." } }
        },
    );
    *r.status_mut() = status;
    r
}

fn add_form(s: &Staff) -> Markup {
    html! {
        section aria-labelledby="add-h" {
            h2 id="add-h" { "Add an account" }
            p { "Give the password to the person in person or by phone; they can add a sign-in code once signed in. "
                "The addition is written to the signed ledger with your name." }
            form method="post" action="/staff" {
                input type="hidden" name="csrf" value=(s.session.csrf.expose());
                div class="field" {
                    label for="name" { "Staff name" }
                    p class="hint" id="name-hint" { "1 to 64 letters, digits, dots, underscores or hyphens." }
                    input id="name" name="name" type="text" autocomplete="off" required maxlength="64"
                        pattern="[A-Za-z0-9._-]{1,64}" aria-describedby="name-hint";
                }
                div class="field" {
                    label for="role" { "Role" }
                    select id="role" name="role" {
                        option value="auditor" { "auditor (reads)" }
                        option value="reviewer" { "reviewer (also handles flags and reviews)" }
                        option value="admin" { "administrator (also manages accounts)" }
                    }
                }
                div class="field" {
                    label for="password" { "Password" }
                    p class="hint" id="pw-hint" { "At least 12 characters." }
                    input id="password" name="password" type="password" autocomplete="new-password"
                        required minlength="12" aria-describedby="pw-hint";
                }
                div class="field" {
                    label for="password2" { "Type the password again" }
                    input id="password2" name="password2" type="password" autocomplete="new-password" required;
                }
                button type="submit" { "Add the account" }
            }
        }
    }
}

/// POST /staff: an administrator adds an account.
pub(crate) async fn add(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match admin_change(&st, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = f
        .get("name")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let Some(role) = f.get("role").and_then(|r| Role::parse(r)) else {
        return render(&st, &s, StatusCode::BAD_REQUEST, Some("Choose a role.")).await;
    };
    let password = Secret::new(f.get("password").cloned().unwrap_or_default());
    if f.get("password2").map(String::as_str) != Some(password.expose()) {
        return render(
            &st,
            &s,
            StatusCode::BAD_REQUEST,
            Some("The two passwords differ: nothing was added."),
        )
        .await;
    }
    let by = s.session.subject.clone();
    match with_site(&st, move |site, now| {
        add_staff(site, &name, role, &password, &by, now)
    })
    .await
    {
        Ok(Ok(_)) => redirect("/staff"),
        // the name's form, an existing account, a short password: say which
        Ok(Err(PortalError::Invalid(m) | PortalError::WeakPassword(m))) => {
            render(&st, &s, StatusCode::BAD_REQUEST, Some(&m)).await
        }
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}

/// POST /staff/{name}: `action=disable|enable`.
pub(crate) async fn change(
    State(st): State<St>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match admin_change(&st, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let disabled = match f.get("action").map(String::as_str) {
        Some("disable") => true,
        Some("enable") => false,
        _ => return not_found(Some(&s)),
    };
    if name == s.session.subject {
        return render(
            &st,
            &s,
            StatusCode::CONFLICT,
            Some("You cannot disable or enable your own account here."),
        )
        .await;
    }
    let by = s.session.subject.clone();
    match with_site(&st, move |site, now| -> crate::Result<bool> {
        if site.store.portal_staff(&name)?.is_none() {
            return Ok(false);
        }
        set_staff_disabled(site, &name, disabled, &by, now).map(|_| true)
    })
    .await
    {
        Ok(Ok(true)) => redirect("/staff"),
        Ok(Ok(false)) => not_found(Some(&s)),
        Ok(Err(e)) => internal(e),
        Err(r) => r,
    }
}
