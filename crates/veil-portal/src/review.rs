//! The staff console's review queue: the objects waiting in the review
//! folders named by `[console] review`, each with its thumbnails, for a
//! reviewer to approve (into the OUT it was de-identified for) or reject
//! (deleted).
//!
//! Why here and not a new queue: `veil deid` and `veil release` already
//! hold objects in review folders with an index of why
//! (`veil_pipeline::review`), and `veil review approve|reject` decide them
//! through `Site::review_decide`, which writes the signed ledger entry
//! naming the reviewer before it moves or deletes anything. The console
//! is one more door onto that workflow: the same index, the same
//! decision code, the reviewer being the signed-in member of staff.
//!
//! Pictures: where the pixel stage redacted text it left before/after
//! thumbnails in the folder (`.pixel-review/`), shown side by side; any
//! other held object is shown as held (its first frame: what approving
//! would release). They are site-local (the "before" shows the text), so
//! they are served only to signed-in staff, `no-store`, and only for an
//! object the folder's index lists.

use std::path::{Path as FsPath, PathBuf};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use veil_pipeline::review as queue;

use crate::common::{internal, redirect, with_site};
use crate::console::{may_handle_flags, not_found, page, staff, staff_change, St, Staff};

/// Objects listed per folder on one page; the rest are counted.
const SHOWN_PER_FOLDER: usize = 50;
/// Longer side of a rendered "as held" picture (pixels).
const PICTURE_SIDE: u32 = 256;

/// What the queue page shows of one folder.
struct Folder {
    items: Vec<queue::Waiting>,
    /// The folder could not be read (missing, permissions).
    unreadable: bool,
    /// Items with the pixel stage's before/after thumbnails.
    with_pixels: std::collections::BTreeSet<String>,
}

fn read_folder(dir: &FsPath) -> Folder {
    match queue::waiting(dir) {
        Ok(items) => {
            let with_pixels = items
                .iter()
                .take(SHOWN_PER_FOLDER)
                .filter(|w| queue::pixel_review_pictures(dir, &w.item).is_some())
                .map(|w| w.item.clone())
                .collect();
            Folder {
                items,
                unreadable: false,
                with_pixels,
            }
        }
        Err(_) => Folder {
            items: Vec::new(),
            unreadable: true,
            with_pixels: Default::default(),
        },
    }
}

/// Objects waiting in all configured folders (the dashboard's count).
pub(crate) async fn waiting_count(dirs: &[PathBuf]) -> usize {
    let dirs = dirs.to_vec();
    tokio::task::spawn_blocking(move || {
        dirs.iter()
            .map(|d| queue::waiting(d).map(|w| w.len()).unwrap_or(0))
            .sum()
    })
    .await
    .unwrap_or(0)
}

/// The query's `item` (and `which`), URL-decoded.
fn query(q: Option<String>, key: &str) -> Option<String> {
    q.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

fn folder_of(st: &St, n: &str) -> Option<(usize, PathBuf)> {
    let i: usize = n.parse().ok()?;
    st.cfg.review.get(i).map(|d| (i, d.clone()))
}

fn picture_url(folder: usize, item: &str, which: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("item", item)
        .append_pair("which", which)
        .finish();
    format!("/review/{folder}/picture?{q}")
}

/// GET /review: every configured folder and what waits in it.
pub(crate) async fn queue_page(State(st): State<St>, headers: HeaderMap) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let dirs = st.cfg.review.clone();
    let folders = tokio::task::spawn_blocking(move || {
        dirs.iter().map(|d| read_folder(d)).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let can = may_handle_flags(s.role);
    page(
        "Review queue",
        &s,
        html! {
            p { "Objects held back from release because they may carry burned-in text, are documents, "
                "or failed a check. Approving moves an object into the output folder it was made for; "
                "rejecting deletes it. Each decision is first written to the signed ledger with your name. "
                strong { "Site-local: " } "the “before” pictures show the text that was found." }
            @if folders.is_empty() {
                p { "No review folder is configured. Name them in " code { "veil.toml" } ": "
                    code { "[console] review = [\"/path/to/OUT.review\"]" } "." }
            }
            @for (i, f) in folders.iter().enumerate() {
                section aria-labelledby=(format!("folder-{i}")) {
                    h2 id=(format!("folder-{i}")) { "Review folder " (i + 1) }
                    @if f.unreadable {
                        p { "This folder cannot be read (missing, or not readable by the service)." }
                    } @else if f.items.is_empty() {
                        p { "Nothing waits here." }
                    } @else {
                        p { (f.items.len()) " waiting"
                            @if f.items.len() > SHOWN_PER_FOLDER { "; the first " (SHOWN_PER_FOLDER) " are shown" }
                            "." }
                        ul class="entries" {
                            @for (j, w) in f.items.iter().take(SHOWN_PER_FOLDER).enumerate() {
                                li {
                                    article aria-labelledby=(format!("item-{i}-{j}")) {
                                        h3 id=(format!("item-{i}-{j}")) { code { (w.item) } }
                                        dl {
                                            dt { "Why it is held" }
                                            dd { (w.reason.as_deref().unwrap_or("not in the folder's review index (put there by hand, or by an older run)")) }
                                        }
                                        div class="pictures" {
                                            @if f.with_pixels.contains(&w.item) {
                                                figure {
                                                    img src=(picture_url(i, &w.item, "before")) alt="Before: the first cleaned frame as found, the text outlined" loading="lazy";
                                                    figcaption { "Before (text outlined)" }
                                                }
                                                figure {
                                                    img src=(picture_url(i, &w.item, "after")) alt="After: the same frame with the text blanked" loading="lazy";
                                                    figcaption { "After" }
                                                }
                                            } @else {
                                                figure {
                                                    img src=(picture_url(i, &w.item, "held")) alt="The held object's first frame, as approving would release it" loading="lazy";
                                                    figcaption { "As held (what approving releases)" }
                                                }
                                            }
                                        }
                                        @if w.reason.is_none() {
                                            p { "Decide this file by hand: it is not in the review index." }
                                        } @else if can {
                                            form method="post" action=(format!("/review/{i}")) {
                                                input type="hidden" name="csrf" value=(s.session.csrf.expose());
                                                input type="hidden" name="item" value=(w.item);
                                                button type="submit" name="decision" value="approve" { "Approve" }
                                                " "
                                                button type="submit" name="decision" value="reject" { "Reject" }
                                            }
                                        } @else {
                                            p { "Reviewers and administrators approve or reject." }
                                        }
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

/// GET /review/{folder}/picture?item=&which=before|after|held.
pub(crate) async fn picture(
    State(st): State<St>,
    Path(n): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let s = match staff(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (Some((_, dir)), Some(item), Some(which)) = (
        folder_of(&st, &n),
        query(q.clone(), "item"),
        query(q, "which"),
    ) else {
        return not_found(Some(&s));
    };
    let png = tokio::task::spawn_blocking(move || -> Option<Vec<u8>> {
        // only what the index lists: the folder may hold other files
        let index = queue::load(&dir).ok()??;
        index.items.get(&item)?;
        match which.as_str() {
            "before" | "after" => {
                let (b, a) = queue::pixel_review_pictures(&dir, &item)?;
                std::fs::read(if which == "before" { b } else { a }).ok()
            }
            "held" => queue::held_picture(&dir, &item, PICTURE_SIDE),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten();
    match png {
        Some(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        None => not_found(Some(&s)),
    }
}

/// POST /review/{folder}: `item`, `decision=approve|reject`.
pub(crate) async fn decide(
    State(st): State<St>,
    Path(n): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match staff_change(
        &st,
        &headers,
        &body,
        may_handle_flags,
        "Reviewers and administrators approve or reject held objects.",
        ("/review", "Back to the review queue"),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let approve = match f.get("decision").map(|d| d.as_str()) {
        Some("approve") => true,
        Some("reject") => false,
        _ => return not_found(Some(&s)),
    };
    let (Some((_, dir)), Some(item)) = (folder_of(&st, &n), f.get("item").cloned()) else {
        return not_found(Some(&s));
    };
    let reviewer = s.session.subject.clone();
    match with_site(&st, move |site, _| {
        site.review_decide(&dir, &[item], false, approve, &reviewer)
    })
    .await
    {
        Ok(Ok(_)) => redirect("/review"),
        // decided meanwhile, not in the index, or OUT refused it: say so
        Ok(Err(veil_release::Error::Invalid(m))) => refused(&s, &m),
        Ok(Err(e)) => internal(e.into()),
        Err(r) => r,
    }
}

/// The decision was refused by the workflow (the reason names rules and
/// pseudonymous paths, never values: see `Site::review_decide`).
fn refused(s: &Staff, reason: &str) -> Response {
    let mut r = page(
        "Decision not carried out",
        s,
        html! {
            p { "Nothing was moved or deleted: " (reason) }
            p { a href="/review" { "Back to the review queue" } }
        },
    );
    *r.status_mut() = StatusCode::CONFLICT;
    r
}
