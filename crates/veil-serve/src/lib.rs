//! `veil serve`: the gateway as a long-running process (issue 18).
//!
//! Crate `veil-gateway` is the service without the network (spool, queue,
//! per-study decision and delivery); `veil-dimse` and `veil-dicomweb` are
//! the network without policy. This crate joins them and owns what only a
//! process has: listeners, a tick every second, Prometheus metrics, and
//! the signals that stop it. The `veil` CLI parses flags and calls
//! [`serve`]; nothing here prints.
//!
//! # Order of start and stop
//!
//! Start: the configuration is read and checked (errors name the field),
//! the destinations are made (token files read), the listener's TLS
//! configuration is loaded (`[dicom] tls`), [`Service::open`] checks
//! each route against the store and recovers the spool, and only then do
//! the DICOM and HTTP listeners accept: an instance can be acknowledged
//! only by an intake over a recovered spool.
//!
//! Stop (SIGTERM or SIGINT): the listeners stop accepting and in-flight
//! associations and requests finish (each received instance is spooled
//! and answered), then one last tick runs and the process exits 0. What is
//! still queued (a study not yet stable, a delivery waiting for its
//! backoff) is durable and resumes at the next start. A second signal
//! during the drain exits at once with status 1; `kill -9` at any moment
//! loses nothing either (see `veil-gateway`'s crash-safety argument).

mod deliver;
mod intake;
mod pull;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use veil_dicomweb::{Background, Metrics, ServerConfig, TokenHash, Tokens};
use veil_dimse::{Scp, ScpConfig};
use veil_gateway::{
    make_destinations, Config, ConfigError, CourierParts, Service, StudyEvent, SystemClock,
};
use veil_release::Site;
use veil_store::queue::QueueState;

pub use deliver::{destinations, DicomDestination, StowDestination};
pub use intake::{failure_reason, DimseIntake, IntakePool, WebIntake};
pub use pull::{pull, read_accession_list, AccessionOutcome, PullError};

/// What `veil serve` is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// `veil.toml`.
    pub config: PathBuf,
    /// The store from `--db` / `VEIL_DB_URL` (`[store] url` wins).
    pub db: Option<String>,
    /// `$VEIL_HOME` (keys, default store and spool).
    pub home: PathBuf,
}

/// Why `veil serve` did not start or stopped with an error. Messages name
/// configuration fields and error kinds, never a value from an instance.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `veil.toml` (including what is checked against the store).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway core (site, store, spool).
    #[error(transparent)]
    Gateway(#[from] veil_gateway::Error),
    /// The site could not be opened (keys, store).
    #[error(transparent)]
    Release(#[from] veil_release::Error),
    /// The DICOM listener.
    #[error("dicom: {0}")]
    Dimse(#[from] veil_dimse::DimseError),
    /// The HTTP listener.
    #[error("http.listen: {0}")]
    Http(#[from] veil_dicomweb::ServerError),
    /// The patient portal's listener.
    #[error("portal.listen: {0}")]
    Portal(#[from] veil_portal::web::WebError),
    /// The staff console's listener.
    #[error("console.listen: {0}")]
    Console(veil_portal::web::WebError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0:?}")]
    Signals(std::io::ErrorKind),
}

/// How often an idle service steps (marks stable studies ready, decides,
/// delivers). A quarter second is finer than any `study_stable_seconds`
/// and cheap when nothing is due (a few indexed queries). A tick that did
/// work is followed by the next at once: a backlog is worked off without
/// pauses.
const TICK: Duration = Duration::from_millis(250);

/// Runs the gateway until SIGTERM or SIGINT; returns after a clean drain.
pub fn serve(opts: &Options) -> Result<(), ServeError> {
    let cfg = Config::load(&opts.config)?;
    let db = cfg.store_url.clone().or_else(|| opts.db.clone());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // a second signal while draining: exit at once (status 1)
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| ServeError::Signals(e.kind()))?;
    }

    let timeout = Duration::from_secs(cfg.dicom.timeout_seconds.max(1));
    let nets = RefCell::new(destinations(&cfg)?);
    // DICOM TLS on the listener: with `ca`, senders must present a
    // certificate it signed (mutual TLS, what DICOM TLS peers expect)
    let tls = cfg
        .dicom
        .tls
        .as_ref()
        .map(|t| veil_dimse::tls::server_config(&t.cert, &t.key, t.ca.as_deref()))
        .transpose()
        .map_err(|e| ConfigError::Field {
            field: "dicom.tls".into(),
            message: e.to_string(),
        })?;
    let site = Site::open(db.as_deref(), &opts.home)?;
    let mut svc = Service::open(cfg.clone(), site, Box::new(SystemClock), &|r| {
        nets.borrow_mut().remove(&r.name)
    })?;
    svc.set_jobs(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    // couriers deliver while the ticks decide: each its own store
    // connection and its own associations
    let mut couriers = Vec::new();
    for _ in 0..cfg.queue.parallel_deliveries {
        let nets = RefCell::new(destinations(&cfg)?);
        couriers.push(CourierParts {
            store: Site::open(db.as_deref(), &opts.home)?.store,
            clock: Box::new(SystemClock),
            destinations: make_destinations(&cfg, &|r| nets.borrow_mut().remove(&r.name))?,
        });
    }
    svc.deliver_concurrently(couriers)?;
    let metrics = Arc::new(Metrics::new());
    let pool = Arc::new(IntakePool::new(cfg.clone(), db.clone(), opts.home.clone()));

    let dicom_addr = SocketAddr::new(cfg.dicom.bind, cfg.dicom.port);
    let listener = TcpListener::bind(dicom_addr).map_err(|e| ConfigError::Field {
        field: "dicom.port".into(),
        message: format!("cannot listen on {dicom_addr}: {:?}", e.kind()),
    })?;
    let scp = Scp::start(
        listener,
        ScpConfig {
            allowed_calling_aes: cfg.dicom.allowed_calling_aes.clone(),
            called_aes: cfg.routes.iter().map(|r| r.called_ae.clone()).collect(),
            max_pdu_length: cfg.dicom.max_pdu,
            max_associations: usize::try_from(cfg.dicom.max_associations).unwrap_or(usize::MAX),
            artim_timeout: timeout,
            idle_timeout: timeout,
            tls,
        },
        Arc::new(DimseIntake {
            pool: pool.clone(),
            metrics: metrics.clone(),
        }),
    )?;
    let http = match &cfg.http {
        Some(h) => {
            let hashes = h
                .tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    TokenHash::from_hex(t, i).map_err(|e| ConfigError::Field {
                        field: format!("http.tokens[{i}]"),
                        message: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut sc = ServerConfig::new(
                cfg.routes.iter().map(|r| r.name.clone()).collect(),
                Tokens::new(hashes),
            );
            sc.metrics_open = h.metrics_open;
            Some(Background::start(
                h.listen,
                sc,
                Arc::new(WebIntake { pool: pool.clone() }),
                metrics.clone(),
            )?)
        }
        None => None,
    };
    let web = start_web(&cfg, db.as_deref(), &opts.home)?;
    tracing::info!(
        dicom = %scp.local_addr(),
        http = ?http.as_ref().map(|h| h.local_addr()),
        portal = ?web.iter().find(|w| w.0 == "portal").map(|w| w.1.local_addr()),
        console = ?web.iter().find(|w| w.0 == "console").map(|w| w.1.local_addr()),
        routes = cfg.routes.len(),
        "veil serve: ready"
    );

    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let busy = step(&mut svc, &metrics);
            next = if busy {
                Instant::now()
            } else {
                Instant::now() + TICK
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    tracing::info!("veil serve: stopping (no new associations or requests; draining)");
    scp.shutdown();
    if let Some(h) = http {
        h.shutdown()?;
    }
    for (_, w) in web {
        w.shutdown()?;
    }
    step(&mut svc, &metrics);
    // what the last ticks handed to the courier is delivered before exit
    if let Err(e) = svc.drain() {
        tracing::error!(error = %e, "delivery at shutdown failed; resumed at the next start");
    }
    tracing::info!("veil serve: stopped");
    Ok(())
}

/// The web listeners of `veil.toml` (issue 19), each on its own thread
/// and address, named: the patient portal (`[portal]`) and the staff
/// console (`[console]`, its own router and listener: staff only, never
/// on the portal's address), stopped with the others on SIGTERM.
///
/// Each gets its own [`Site`] (its own store connection), so a page never
/// waits for a tick. With `[portal] tls` the portal serves HTTPS itself
/// (rustls); without, a reverse proxy in front terminates TLS
/// (docs/portal.md), and `public_url` says whether patients are on HTTPS
/// (then the cookies are `Secure`).
/// HTTPS on a web listener itself (`[portal] tls`, `[console] tls`): the
/// same rustls (ring) loading as the DICOM listener's, without client
/// certificates; an error names `field`.
fn web_tls(
    t: Option<&veil_gateway::PortalTlsConfig>,
    field: &str,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ServeError> {
    t.map(|t| veil_dimse::tls::server_config(&t.cert, &t.key, None))
        .transpose()
        .map_err(|e| {
            ConfigError::Field {
                field: field.into(),
                message: e.to_string(),
            }
            .into()
        })
}

fn start_web(
    cfg: &Config,
    db: Option<&str>,
    home: &std::path::Path,
) -> Result<Vec<(&'static str, veil_portal::web::Background)>, ServeError> {
    let mut out = Vec::new();
    if let Some(p) = &cfg.portal {
        let tls = web_tls(p.tls.as_ref(), "portal.tls")?;
        let web = veil_portal::web::WebConfig {
            portal: veil_portal::Portal {
                sessions: veil_portal::SessionPolicy::from_config(
                    p.session_idle_minutes,
                    p.session_max_hours,
                ),
                ..Default::default()
            },
            secure_cookies: tls.is_some() || p.public_url.starts_with("https://"),
        };
        let app = veil_portal::web::router(Site::open(db, home)?, web);
        out.push((
            "portal",
            veil_portal::web::Background::start_with(p.listen, app, "veil-portal", tls)?,
        ));
    }
    if let Some(c) = &cfg.console {
        // staff only, on its own address (an internal interface), with
        // its own store connection; HTTPS itself with `tls`, or behind a
        // proxy that terminates it (`public_url` says so)
        let tls = web_tls(c.tls.as_ref(), "console.tls")?;
        let f = cfg.flags;
        let console = veil_portal::console::ConsoleConfig {
            flags: veil_portal::FlagRules {
                burst_releases: f.burst_releases,
                burst_window_hours: f.burst_window_hours,
                volume_factor: f.volume_factor,
                volume_baseline_days: f.volume_baseline_days,
                volume_min_count: f.volume_min_count,
                lookup_without_reason: f.lookup_without_reason,
                release_after_withdrawal: f.release_after_withdrawal,
            },
            secure_cookies: tls.is_some()
                || c.public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")),
            review: c.review.clone(),
            ..Default::default()
        };
        let app = veil_portal::console::router(Site::open(db, home)?, console);
        out.push((
            "console",
            veil_portal::web::Background::start_with(c.listen, app, "veil-console", tls)
                .map_err(ServeError::Console)?,
        ));
    }
    Ok(out)
}

/// One tick, and the metrics it moves; whether it did any work. A failed
/// tick (the store or the spool) is logged and the next one resumes from
/// the committed state.
fn step(svc: &mut Service, metrics: &Metrics) -> bool {
    let busy = match svc.tick() {
        Ok(rep) => {
            let busy = !rep.events.is_empty() || rep.ready > 0 || rep.cleared > 0;
            for e in &rep.events {
                match e {
                    StudyEvent::Released { route } => metrics.study_released(route),
                    StudyEvent::Refused { route } => metrics.study_refused(route),
                    StudyEvent::Failed {
                        route,
                        delivery: true,
                    } => metrics.delivery_failed(route),
                    StudyEvent::Failed { .. } => {}
                    StudyEvent::Delivered {
                        route,
                        took,
                        since_last_received,
                    } => {
                        metrics.observe_delivery(route, *took);
                        metrics.observe_study_latency(Duration::from_secs(*since_last_received));
                    }
                }
            }
            busy
        }
        Err(e) => {
            tracing::error!(error = %e, "tick failed; retrying at the next one");
            false
        }
    };
    match svc.site().store.queue_counts() {
        Ok(counts) => {
            let (mut open, mut parked) = (0u64, 0u64);
            for (_, state, n) in counts {
                let n = u64::try_from(n).unwrap_or(0);
                match state {
                    QueueState::Receiving
                    | QueueState::Ready
                    | QueueState::Decided
                    | QueueState::Delivering => open += n,
                    QueueState::DeadLetter => parked += n,
                    _ => {}
                }
            }
            metrics.set_queue_depth(open);
            metrics.set_dead_letters(parked);
        }
        Err(e) => tracing::warn!(error = %e, "queue counts for metrics failed"),
    }
    busy
}
