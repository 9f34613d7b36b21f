//! Logs: `tracing` events from Veil's crates on stderr, `-v` for the
//! steps of a run (info), `-vv` for each file's outcome (debug),
//! `--log-format json` for machines.
//!
//! What the events hold is decided where they are emitted: counts, kinds
//! and the file's place in the run, never a value or a path found while
//! walking (those go to the site-local report). Only Veil's own targets
//! are shown: a dependency's debug events could carry a query or a
//! value.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// The target of the periodic progress events (shown without `-v`).
pub const PROGRESS_TARGET: &str = "veil::progress";

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether messages on stderr are JSON events.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the subscriber: warnings and errors always, `-v` info, `-vv`
/// debug.
pub fn init(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let filter = Targets::new()
        .with_default(LevelFilter::OFF)
        .with_target("veil", level)
        .with_target(PROGRESS_TARGET, LevelFilter::INFO);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                layer
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            tracing_subscriber::registry()
                .with(layer.json().flatten_event(true).with_filter(filter))
                .try_init()
        }
    };
    // a second init (tests calling main twice) keeps the first
    drop(result);
}

/// An error for the user: "veil: error: ..." or a JSON event.
pub fn error(msg: &str) {
    if json() {
        tracing::error!(target: "veil", "{msg}");
    } else {
        eprintln!("veil: error: {msg}");
    }
}

/// A note for the user that is not an error: "veil: ..." or a JSON event.
pub fn notice(msg: &str) {
    if json() {
        tracing::warn!(target: "veil", "{msg}");
    } else {
        eprintln!("veil: {msg}");
    }
}
