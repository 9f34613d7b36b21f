//! `veil queue status|retry|drop --config veil.toml`: the gateway's queue.
//! Parses and prints; crate veil-gateway does the work.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::emit;

/// `veil queue` subcommands.
#[derive(Subcommand)]
pub enum QueueCmd {
    /// Studies by route and state, with counts and reasons (no PHI:
    /// studies are named by queue id and the ledger's keyed reference).
    Status {
        /// The gateway's configuration.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead-letter study back: to delivery when it was decided,
    /// else to its decision; its attempts start again.
    Retry {
        /// The queue id (from `veil queue status`).
        id: String,
        /// The gateway's configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Give up a dead-letter study: its spooled instances and staged
    /// outputs are deleted (logged); its ledger entries stay.
    Drop {
        /// The queue id (from `veil queue status`).
        id: String,
        /// The gateway's configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

/// The store `veil serve` uses: `[store] url`, else `--db`, else the
/// embedded SQLite in `$VEIL_HOME`.
fn open(
    db: Option<&str>,
    config: &Path,
) -> Result<(veil_gateway::Config, veil_store::Store, PathBuf), String> {
    let cfg = veil_gateway::Config::load(config).map_err(|e| e.to_string())?;
    let home = crate::secure_home()?;
    let store = veil_store::Store::open(cfg.store_url.as_deref().or(db), &home)
        .map_err(|e| e.to_string())?;
    Ok((cfg, store, home))
}

fn now() -> i64 {
    use veil_gateway::Clock;
    veil_gateway::SystemClock.now()
}

/// Runs a `veil queue` command.
pub fn queue(db: Option<&str>, cmd: QueueCmd) -> Result<i32, String> {
    match cmd {
        QueueCmd::Status { config, json } => {
            let (_, mut store, _) = open(db, &config)?;
            let st = veil_gateway::queue::status(&mut store).map_err(|e| e.to_string())?;
            if json {
                emit(&(serde_json::to_string_pretty(&st).map_err(|e| e.to_string())? + "\n"))?;
            } else {
                emit(&(st.lines().join("\n") + "\n"))?;
            }
        }
        QueueCmd::Retry { id, config } => {
            let (_, mut store, _) = open(db, &config)?;
            let to =
                veil_gateway::queue::retry(&mut store, &id, now()).map_err(|e| e.to_string())?;
            emit(&format!("queue study {id}: {}\n", to.as_str()))?;
        }
        QueueCmd::Drop { id, config } => {
            let (cfg, mut store, home) = open(db, &config)?;
            let spool = veil_gateway::spool::Spool::open(&cfg.spool_dir(&home))
                .map_err(|e| e.to_string())?;
            let n = veil_gateway::queue::drop_study(&mut store, &spool, &id, now())
                .map_err(|e| e.to_string())?;
            emit(&format!(
                "queue study {id}: dropped; {} deleted from the spool\n",
                veil_core::count(n, "instance", "instances")
            ))?;
        }
    }
    Ok(0)
}
