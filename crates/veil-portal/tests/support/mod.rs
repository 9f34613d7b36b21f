//! What the web tests share: log capture (one global subscriber per test
//! binary) and a client with a cookie jar that drives a router through
//! `tower::ServiceExt::oneshot`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

/// A router and the runtime that drives it.
pub trait Target {
    fn app(&self) -> Router;
    fn rt(&self) -> &tokio::runtime::Runtime;
}

// ---- log capture ---------------------------------------------------------------

#[derive(Clone)]
pub struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary (one global subscriber: the
/// handlers log on runtime and blocking-pool threads).
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = Buf(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || b.clone())
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
}

// ---- a site and a client ---------------------------------------------------------

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A browser: a cookie jar.
#[derive(Default)]
pub struct Client {
    pub jar: HashMap<String, String>,
}

impl Client {
    pub fn send(
        &mut self,
        p: &impl Target,
        method: &str,
        uri: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b = b.header(header::COOKIE, c.join("; "));
        }
        let body = match form {
            Some(f) => {
                b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut s = form_urlencoded::Serializer::new(String::new());
                for (k, v) in f {
                    s.append_pair(k, v);
                }
                Body::from(s.finish())
            }
            None => Body::empty(),
        };
        let req = b.body(body).unwrap();
        let app = p.app();
        let (status, headers, body) = p.rt().block_on(async move {
            let r = app.oneshot(req).await.unwrap();
            let (parts, body) = r.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (parts.status, parts.headers, bytes)
        });
        for c in headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn get(&mut self, p: &impl Target, uri: &str) -> Reply {
        self.send(p, "GET", uri, None)
    }

    pub fn post(&mut self, p: &impl Target, uri: &str, form: &[(&str, &str)]) -> Reply {
        self.send(p, "POST", uri, Some(form))
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(page: &Reply) -> String {
        let i = page
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field: {}", page.body));
        let rest = &page.body[i + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// The value of the page's first hidden field `name`.
pub fn hidden(page: &Reply, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let i = page
        .body
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name}: {}", page.body));
    let rest = &page.body[i + pat.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}
