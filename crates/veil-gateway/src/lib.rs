//! The gateway core behind `veil serve` (issue 18), without the network.
//!
//! Studies arrive instance by instance (the DIMSE C-STORE SCP or DICOMweb
//! STOW-RS hands each to [`Intake::receive`]), wait in a durable
//! [`spool::Spool`], and are tracked per route in the store's queue
//! ([`veil_store::queue`]). [`Service::tick`] moves them on: a study that
//! received nothing for its route's `study_stable_seconds` is decided by
//! exactly the code `veil release` runs (`veil_release::Site::decide_study`:
//! consent, de-identification with the recipient's recipe and key,
//! verification failing closed, one ledger entry per decision), then its
//! outputs are delivered through the route's [`Destination`], retried with
//! exponential backoff, and parked in `dead-letter` after
//! `[queue] max_attempts` failures.
//!
//! Why a tick and no threads here: the network layers own concurrency and
//! I/O; the core stays deterministic, so the tests drive it with an
//! injected [`Clock`] and can stop it between any two steps.
//!
//! # Crash safety (kill -9 at any point, then a restart)
//!
//! Nothing is lost: an instance is acknowledged only after [`Intake::receive`]
//! returned, i.e. after its file is fsynced and renamed, its folder fsynced,
//! and its row committed. A file without a row was never acknowledged, so
//! the sender still holds it; the restart deletes it ([`Service::open`]).
//!
//! Nothing is decided twice: a study's ledger entries and its `decided`
//! state commit in one transaction (`Site::log_decisions`), guarded by
//! `state = 'ready'`. A crash before that commit leaves the study `ready`
//! with a partial work folder, which the next attempt deletes and redoes.
//! Pseudonyms are keyed, so the redone outputs have the same names.
//!
//! Nothing is delivered twice: an output is marked delivered only after
//! the destination confirmed it. A crash between the two delivers that one
//! output again under the same name, and the [`Destination`] contract
//! (idempotent by name, i.e. by de-identified SOP Instance UID) makes the
//! recipient hold one copy. Outputs already marked are never sent again.
//!
//! A sender that retries because an acknowledgement was lost (the crash
//! came after the commit, before the network sent the status) is absorbed
//! too: while the study is `receiving`, the instance is recognised by its
//! keyed reference and kept once. If the study was already decided, the
//! retry becomes a study of its own; its outputs have the same pseudonymous
//! names, so the recipient still holds one copy, and the ledger records the
//! second decision, because it was made.
//!
//! The spool ends empty: a finished study (delivered, refused, dropped) has
//! its state committed first, then its files deleted, then `cleared_at`
//! recorded; a crash in between deletes again on the next tick.

mod config;
pub mod destination;
pub mod queue;
mod service;
pub mod spool;

pub use config::{
    parse_destination, ClientTlsConfig, Config, ConfigError, ConsoleConfig, DestinationUrl,
    DicomConfig, FlagsConfig, HttpConfig, PortalConfig, PortalFile, PortalTlsConfig, QueueConfig,
    Route, TlsConfig,
};
pub use destination::{DeliveryError, Destination, FileDestination};
pub use service::{
    make_destinations, CourierParts, Intake, Receipt, Service, StudyEvent, TickReport,
};

// The network layers move an intake to each connection's thread and the
// service to its own: both must stay `Send` (checked when compiling).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Intake>();
    send::<Service>();
};

/// Seconds since the Unix epoch, from a clock the tests can set.
pub trait Clock: Send {
    /// Now.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Gateway errors. None carries a patient identifier, a UID or a path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `veil.toml`, including what is checked against the store at start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The release engine (consent, deid, verify, ledger).
    #[error(transparent)]
    Release(#[from] veil_release::Error),
    /// The store (queue rows).
    #[error(transparent)]
    Store(#[from] veil_store::StoreError),
    /// File system (the spool).
    #[error("{what}: {kind:?}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error kind (no path).
        kind: std::io::ErrorKind,
    },
    /// A received payload that cannot be spooled: the sender gets a
    /// failure status, nothing is recorded.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// The sender broke off while the instance was arriving: nothing was
    /// kept, and no status can reach it.
    #[error("the data set was not received completely: {0:?}")]
    Incomplete(std::io::ErrorKind),
    /// No route of that name (or called AE).
    #[error("no route named {0}")]
    UnknownRoute(String),
    /// No queue study with that id.
    #[error("no queue study {0}")]
    UnknownStudy(String),
    /// Another service holds the spool (`pid N on host H`).
    #[error("another veil serve is running on this spool ({0})")]
    Busy(String),
    /// [`Service::crash_after`] stopped the tick (crash tests only).
    #[error("stopped by fault injection")]
    Stopped,
    /// The system's random source failed (spool names, study ids).
    #[error("the system's random source failed")]
    Random,
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |e| Error::Io {
            what,
            kind: e.kind(),
        }
    }
}
