//! The HTTP listener: STOW-RS in, `/healthz`, `/metrics`.
//!
//! Routing: a request names its route either in the path,
//! `POST /routes/{route}/dicom-web/studies` (what a sender such as
//! Orthanc's DICOMweb client is configured with, one base URL per route),
//! or with `POST /dicom-web/studies` and an `X-Veil-Route: {route}`
//! header. An unknown route is 404 before any body is read.
//!
//! Authentication: every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>`. `/metrics` too, unless
//! [`ServerConfig::metrics_open`] is set: the counts are by route name and
//! say how much a site sends, which is not for anyone on the network, but
//! a Prometheus on a trusted segment may be easier to run without a token.
//!
//! Durability: each part is handed to the [`InstanceSink`] in turn (on a
//! blocking thread, since storing fsyncs), and the response is written
//! only after the last one returned, so a 200 means every referenced
//! instance is durable.
//!
//! Limits: request and instance sizes (413), concurrent STOW-RS requests
//! (503, `Retry-After`), and a body idle timeout (408). Header-phase
//! timeouts are not set (axum's `serve` has none); a connection that never
//! sends a request costs a socket but does not delay shutdown. TLS is not
//! served here: listen on loopback or behind a TLS-terminating proxy.

use crate::auth::{Access, Tokens};
use crate::meta;
use crate::metrics::{Metrics, CONTENT_TYPE as METRICS_TYPE};
use crate::stow::{FailureReason, SopRef, StowResponse};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The header naming the route on `POST /dicom-web/studies`.
pub const ROUTE_HEADER: &str = "x-veil-route";

/// An instance received over STOW-RS, for the sink to store.
pub struct ReceivedInstance {
    /// The part's bytes: a PS3.10 file as sent.
    pub bytes: Vec<u8>,
    /// What its File Meta says (already checked present).
    pub meta: meta::FileMeta,
    /// SOP Class UID of the data set (the File Meta's if the data set
    /// could not be read here): what the response references.
    pub sop_class_uid: String,
    /// SOP Instance UID of the data set, likewise.
    pub sop_instance_uid: String,
}

impl std::fmt::Debug for ReceivedInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedInstance")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// What the server does with a received instance: the gateway's durable
/// intake. `store` returns `Ok` only once the instance is on disk and
/// fsynced; the STOW-RS response waits for it. It may be called again
/// with an instance already stored (a sender retrying after a lost
/// response), so it must be idempotent on the SOP Instance UID.
pub trait InstanceSink: Send + Sync + 'static {
    /// Stores `instance` received on `route`, or says why not.
    fn store(&self, route: &str, instance: ReceivedInstance) -> Result<(), FailureReason>;
}

impl<F> InstanceSink for F
where
    F: Fn(&str, ReceivedInstance) -> Result<(), FailureReason> + Send + Sync + 'static,
{
    fn store(&self, route: &str, instance: ReceivedInstance) -> Result<(), FailureReason> {
        self(route, instance)
    }
}

/// The server's settings (from `veil.toml`'s `[http]` and routes).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Route names that accept STOW-RS.
    pub routes: Vec<String>,
    /// Accepted bearer tokens (hashed). Empty refuses every request but
    /// `/healthz` (and `/metrics` when open).
    pub tokens: Tokens,
    /// Serve `/metrics` without a token.
    pub metrics_open: bool,
    /// Largest request body, all parts together (413 above it).
    pub max_request_bytes: u64,
    /// Largest single part (413 above it): one instance is held in memory
    /// while it is stored, so this bounds memory per request.
    pub max_instance_bytes: u64,
    /// STOW-RS requests served at once; more are answered 503 with
    /// `Retry-After`. Each holds up to one instance in memory, so this and
    /// `max_instance_bytes` bound the server's memory.
    pub max_concurrent_requests: usize,
    /// Longest wait for the next bytes of a request body (408 after it):
    /// a sender that stalls must not hold a connection, or a shutdown that
    /// waits for in-flight requests, forever.
    pub idle_timeout: std::time::Duration,
}

impl ServerConfig {
    /// Defaults sized for CT/MR series: 4 GiB a request, 1 GiB an instance.
    pub fn new(routes: Vec<String>, tokens: Tokens) -> ServerConfig {
        ServerConfig {
            routes,
            tokens,
            metrics_open: false,
            max_request_bytes: 4 << 30,
            max_instance_bytes: 1 << 30,
            max_concurrent_requests: 16,
            idle_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound (in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed (the listener broke).
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The background thread's runtime could not start or panicked.
    #[error("HTTP server thread: {0}")]
    Thread(String),
}

struct Shared {
    config: ServerConfig,
    slots: Arc<tokio::sync::Semaphore>,
    sink: Arc<dyn InstanceSink>,
    metrics: Arc<Metrics>,
}

/// A bound, not yet serving, HTTP server.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Router,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks one; see [`Server::local_addr`]).
    pub async fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        sink: Arc<dyn InstanceSink>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests)),
            config,
            sink,
            metrics,
        });
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .route("/dicom-web/studies", post(stow_by_header))
            .route("/routes/{route}/dicom-web/studies", post(stow_by_path))
            .with_state(shared);
        Ok(Server { listener, app })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has one.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (their instances are stored and answered)
    /// and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        tracing::info!(addr = %self.local_addr(), "HTTP listening");
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve)?;
        tracing::info!("HTTP stopped");
        Ok(())
    }
}

/// A server on its own thread and tokio runtime, for a caller that is not
/// async (the gateway's service loop, tests).
#[derive(Debug)]
pub struct Background {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Background {
    /// Binds `addr` and serves on a new thread; returns once bound.
    pub fn start(
        addr: SocketAddr,
        config: ServerConfig,
        sink: Arc<dyn InstanceSink>,
        metrics: Arc<Metrics>,
    ) -> Result<Background, ServerError> {
        // Two workers suffice: they only move bytes and wait; storing runs
        // on tokio's blocking pool, and the gateway's CPU belongs to deid.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ServerError::Thread(e.to_string()))?;
        let server = runtime.block_on(Server::bind(addr, config, sink, metrics))?;
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("veil-http".into())
            .spawn(move || {
                runtime.block_on(server.run(async {
                    let _ = stopped.await;
                }))
            })
            .map_err(|e| ServerError::Thread(e.to_string()))?;
        Ok(Background {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, waits for in-flight requests, joins the thread.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| ServerError::Thread("panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    s.metrics.http_request("healthz", 200);
    (StatusCode::OK, "ok\n").into_response()
}

fn access(s: &Shared, headers: &HeaderMap, route: Option<&str>) -> Access {
    let a = s.config.tokens.access_header(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        route,
    );
    if a != Access::Granted {
        s.metrics.auth_failure();
    }
    a
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    access(s, headers, None) == Access::Granted
}

fn unauthorized(s: &Shared, endpoint: &'static str) -> Response {
    s.metrics.http_request(endpoint, 401);
    tracing::warn!(endpoint, "request without a valid bearer token refused");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

async fn metrics_text(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.config.metrics_open && !authorized(&s, &headers) {
        return unauthorized(&s, "metrics");
    }
    s.metrics.http_request("metrics", 200);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, METRICS_TYPE)],
        s.metrics.encode(),
    )
        .into_response()
}

async fn stow_by_path(
    State(s): State<Arc<Shared>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    stow(s, Some(route), headers, body).await
}

async fn stow_by_header(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let route = headers
        .get(ROUTE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    stow(s, route, headers, body).await
}

fn plain(s: &Shared, status: StatusCode, why: &'static str) -> Response {
    s.metrics.http_request("stow", status.as_u16());
    tracing::warn!(status = status.as_u16(), why, "STOW-RS request refused");
    (status, format!("{why}\n")).into_response()
}

/// The boundary of a `multipart/related; type="application/dicom"` body,
/// or the status that refuses it.
fn boundary(headers: &HeaderMap) -> Result<String, (StatusCode, &'static str)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or((StatusCode::UNSUPPORTED_MEDIA_TYPE, "no Content-Type"))?;
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be multipart/related",
        ));
    }
    let mut boundary = None;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "boundary" => boundary = Some(v.to_string()),
            "type" if !v.eq_ignore_ascii_case("application/dicom") => {
                return Err((
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "only type=\"application/dicom\" is accepted",
                ))
            }
            _ => {}
        }
    }
    boundary
        .filter(|b| !b.is_empty())
        .ok_or((StatusCode::BAD_REQUEST, "multipart boundary missing"))
}

/// Whether a part's own Content-Type (if any) is application/dicom
/// (parameters such as transfer-syntax allowed).
fn part_is_dicom(headers: &HeaderMap) -> bool {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(ct) => ct
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/dicom")),
    }
}

async fn stow(s: Arc<Shared>, route: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    match access(&s, &headers, route.as_deref()) {
        Access::Granted => {}
        Access::Denied => return unauthorized(&s, "stow"),
        Access::WrongRoute => {
            return plain(
                &s,
                StatusCode::FORBIDDEN,
                "this token may not post to this route",
            )
        }
    }
    let Some(route) = route.filter(|r| s.config.routes.iter().any(|k| k == r)) else {
        return plain(&s, StatusCode::NOT_FOUND, "no such route");
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.config.max_request_bytes) {
        return plain(&s, StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let boundary = match boundary(&headers) {
        Ok(b) => b,
        Err((status, why)) => return plain(&s, status, why),
    };
    // Held until the response is built: the slot is the memory budget.
    let Ok(_slot) = s.slots.clone().try_acquire_owned() else {
        s.metrics.http_request("stow", 503);
        tracing::warn!(route = %route, "STOW-RS request refused: all slots busy");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "busy, retry later\n",
        )
            .into_response();
    };
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(s.config.max_request_bytes)
            .per_field(s.config.max_instance_bytes),
    );
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let mut response = StowResponse::default();
    let mut parts = 0usize;
    loop {
        let mut field =
            match tokio::time::timeout(s.config.idle_timeout, multipart.next_field()).await {
                Ok(Ok(Some(f))) => f,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return multipart_error(&s, &route, &response, e),
                Err(_) => return plain(&s, StatusCode::REQUEST_TIMEOUT, "request body stalled"),
            };
        parts += 1;
        let dicom = part_is_dicom(field.headers());
        let mut bytes = Vec::new();
        loop {
            match tokio::time::timeout(s.config.idle_timeout, field.chunk()).await {
                Ok(Ok(Some(c))) => bytes.extend_from_slice(&c),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return multipart_error(&s, &route, &response, e),
                Err(_) => return plain(&s, StatusCode::REQUEST_TIMEOUT, "request body stalled"),
            }
        }
        let unnamed = SopRef {
            class_uid: String::new(),
            instance_uid: String::new(),
        };
        if !dicom {
            refuse(
                &s,
                &route,
                &mut response,
                unnamed,
                FailureReason::CannotUnderstand,
            );
            continue;
        }
        let meta = match meta::read(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(route = %route, part = parts, error = %e, "STOW-RS part is not DICOM");
                refuse(
                    &s,
                    &route,
                    &mut response,
                    unnamed,
                    FailureReason::CannotUnderstand,
                );
                continue;
            }
        };
        let sink = s.sink.clone();
        let r = route.clone();
        let (sop, stored) = tokio::task::spawn_blocking(move || {
            let (class_uid, instance_uid) = meta::dataset_uids(&bytes)
                .unwrap_or_else(|| (meta.sop_class_uid.clone(), meta.sop_instance_uid.clone()));
            let sop = SopRef {
                class_uid: class_uid.clone(),
                instance_uid: instance_uid.clone(),
            };
            let stored = sink.store(
                &r,
                ReceivedInstance {
                    bytes,
                    meta,
                    sop_class_uid: class_uid,
                    sop_instance_uid: instance_uid,
                },
            );
            (sop, stored)
        })
        .await
        .unwrap_or_else(|_| {
            let unnamed = SopRef {
                class_uid: String::new(),
                instance_uid: String::new(),
            };
            (unnamed, Err(FailureReason::ProcessingFailure))
        });
        match stored {
            Ok(()) => {
                s.metrics.instance_received(&route);
                response.referenced.push(sop);
            }
            Err(why) => refuse(&s, &route, &mut response, sop, why),
        }
    }
    s.metrics.observe_stow(started.elapsed());
    let status = if parts == 0 {
        return plain(&s, StatusCode::BAD_REQUEST, "no parts in the request");
    } else if response.failed.is_empty() {
        StatusCode::OK
    } else if response.referenced.is_empty() {
        StatusCode::CONFLICT
    } else {
        StatusCode::ACCEPTED
    };
    tracing::info!(
        route = %route,
        stored = response.referenced.len(),
        failed = response.failed.len(),
        status = status.as_u16(),
        "STOW-RS request answered"
    );
    dicom_json(&s, status, &response)
}

fn refuse(s: &Shared, route: &str, response: &mut StowResponse, sop: SopRef, why: FailureReason) {
    s.metrics.instance_failed(route, why.label());
    tracing::warn!(
        route,
        reason = why.label(),
        code = why.code(),
        "STOW-RS instance refused"
    );
    response.failed.push((sop, why));
}

fn dicom_json(s: &Shared, status: StatusCode, response: &StowResponse) -> Response {
    s.metrics.http_request("stow", status.as_u16());
    (
        status,
        [(header::CONTENT_TYPE, "application/dicom+json")],
        response.to_json(),
    )
        .into_response()
}

/// A broken or oversized body. Instances stored before the break stay
/// stored (they are durable and the sink is idempotent); the sender sees
/// the whole request fail and retries it.
fn multipart_error(s: &Shared, route: &str, response: &StowResponse, e: multer::Error) -> Response {
    let (status, why) = match e {
        multer::Error::StreamSizeExceeded { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        multer::Error::FieldSizeExceeded { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "an instance is too large")
        }
        _ => (StatusCode::BAD_REQUEST, "malformed multipart body"),
    };
    tracing::warn!(
        route,
        stored_before = response.referenced.len(),
        status = status.as_u16(),
        why,
        "STOW-RS body refused"
    );
    s.metrics.http_request("stow", status.as_u16());
    (status, format!("{why}\n")).into_response()
}
