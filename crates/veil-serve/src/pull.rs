//! `veil pull`: a research request by accession numbers (issue 18).
//!
//! # Design: the PACS sends to the running `veil serve`
//!
//! `veil pull` only asks. For each accession number it runs a C-FIND
//! (Study Root, STUDY level) on the route's `source`, then a C-MOVE of
//! each study found whose move destination is the route's `called_ae`.
//! The PACS sends the instances over C-STORE to the running `veil serve`,
//! exactly as when the PACS pushes, so they take the one path every
//! instance takes: fsynced spool, queue, stable, consent, deid, verify,
//! ledger, delivery. Why not a second SCP inside `veil pull`:
//!
//! - nothing is duplicated: there is one intake, one decision path, one
//!   delivery loop, and the route a study takes is chosen by the called AE
//!   as for pushed studies;
//! - nothing is lost when either process is interrupted: an instance is
//!   acknowledged to the PACS only once `veil serve` has it fsynced, and the
//!   queue resumes after a restart. Killing `veil pull` stops asking, never
//!   a study half decided; running it again moves the same studies again
//!   (a study still receiving absorbs the repeats; one already decided is
//!   decided again, and the recipient keeps one copy per SOP Instance UID);
//! - the PACS is configured once: it knows each route's called AE at the
//!   gateway's `[dicom] port`, as it must anyway to push.
//!
//! Veil calls the PACS as `[dicom] ae_title` (the AE it calls out with), so
//! the PACS allows that AE to query and retrieve; the PACS's own AE is on
//! `[dicom] allowed_calling_aes` so that `veil serve` accepts the C-STORE
//! sub-operations.
//!
//! # Nothing half-done
//!
//! Everything that can be checked before the network is checked first (the
//! configuration, the route and its source, the list). Then every C-FIND
//! runs before any C-MOVE: a PACS that cannot be reached or refuses the
//! query stops the request before a single study is moved. Once moves
//! start, a failed move is counted for its accession and the others go on
//! (a move is repeatable; the report says which accession to ask again).
//!
//! Accession numbers and UIDs are PHI: they are returned to the caller
//! (who writes the site-local report) and never logged.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use veil_dimse::Peer;
use veil_gateway::{Config, ConfigError, DestinationUrl};

use crate::deliver::address;

/// Why `veil pull` did nothing. Messages never carry an accession number.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `veil.toml`, the route or its source.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The accession list cannot be read.
    #[error("--accession-list: cannot read it ({0:?})")]
    ListUnreadable(std::io::ErrorKind),
    /// The accession list names no accession number.
    #[error(
        "--accession-list: no accession number in it (one a line; blank lines and # comments \
         are skipped); nothing was asked of the PACS"
    )]
    ListEmpty,
    /// A C-FIND failed (unreachable PACS, association rejected, failure
    /// status): no study was moved.
    #[error(
        "route[{route}].source: C-FIND failed ({error}); no study was moved. Check that the \
         PACS is up and allows AE '{calling_ae}' to query"
    )]
    Find {
        /// Route index in `veil.toml`.
        route: usize,
        /// Veil's calling AE.
        calling_ae: String,
        /// What failed (no identifier values).
        error: veil_dimse::DimseError,
    },
}

/// What happened to one accession number. Holds PHI (the accession
/// number): for the site-local report only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessionOutcome {
    /// The accession number as listed.
    pub accession: String,
    /// Studies the PACS found with it.
    pub studies_found: usize,
    /// Studies whose C-MOVE ended in success or warning.
    pub studies_moved: usize,
    /// Studies whose C-MOVE failed outright (status or network).
    pub studies_failed: usize,
    /// Instances the PACS sent to `veil serve` (completed and warning
    /// sub-operations).
    pub instances_moved: u64,
    /// Instances the PACS failed to send.
    pub instances_failed: u64,
}

/// Reads an accession list: one a line, surrounding blanks trimmed, blank
/// lines and `#` comments skipped, duplicates dropped (a study is asked for
/// once).
pub fn read_accession_list(path: &Path) -> Result<Vec<String>, PullError> {
    let text = std::fs::read_to_string(path).map_err(|e| PullError::ListUnreadable(e.kind()))?;
    let mut seen = BTreeSet::new();
    let list: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| seen.insert(l.to_string()))
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(PullError::ListEmpty);
    }
    Ok(list)
}

/// The route named `route` and the PACS it pulls from, as a called peer.
fn source_peer(cfg: &Config, route: &str) -> Result<(usize, Peer), PullError> {
    let (i, r) = cfg
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.name == route)
        .ok_or_else(|| ConfigError::Field {
            field: "--route".into(),
            message: format!("no [[route]] named '{route}' in veil.toml"),
        })?;
    let Some(DestinationUrl::Dicom { ae, host, port }) = &r.source else {
        return Err(ConfigError::Field {
            field: format!("route[{i}].source"),
            message: format!(
                "route '{route}' has no source; `veil pull` needs the PACS: \
                 source = \"dicom://AE@host:port\""
            ),
        }
        .into());
    };
    let mut peer = Peer::new(&cfg.dicom.ae_title, ae, &address(host, *port));
    peer.max_pdu_length = cfg.dicom.max_pdu;
    peer.timeout = Duration::from_secs(cfg.dicom.timeout_seconds.max(1));
    peer.tls = crate::deliver::client_tls(
        r.source_tls.as_ref(),
        host,
        format!("route[{i}].source_tls"),
    )?;
    Ok((i, peer))
}

/// Asks the route's PACS to send every study of `accessions` to the
/// running `veil serve` (see the module documentation). Returns one
/// outcome per accession number, in list order.
pub fn pull(
    cfg: &Config,
    route: &str,
    accessions: &[String],
) -> Result<Vec<AccessionOutcome>, PullError> {
    let (i, peer) = source_peer(cfg, route)?;
    let called_ae = cfg.routes[i].called_ae.clone();
    // every C-FIND first: an unreachable PACS moves nothing
    let mut found = Vec::with_capacity(accessions.len());
    for a in accessions {
        let studies = veil_dimse::find_studies(&peer, a).map_err(|error| PullError::Find {
            route: i,
            calling_ae: peer.calling_ae.clone(),
            error,
        })?;
        found.push(studies);
    }
    tracing::info!(
        route,
        accessions = accessions.len(),
        studies = found.iter().map(Vec::len).sum::<usize>(),
        "veil pull: C-FIND done"
    );
    let mut out = Vec::with_capacity(accessions.len());
    for (a, studies) in accessions.iter().zip(found) {
        let mut o = AccessionOutcome {
            accession: a.clone(),
            studies_found: studies.len(),
            studies_moved: 0,
            studies_failed: 0,
            instances_moved: 0,
            instances_failed: 0,
        };
        for uid in &studies {
            match veil_dimse::move_study(&peer, &called_ae, uid) {
                Ok(m) => {
                    o.studies_moved += 1;
                    o.instances_moved += u64::from(m.completed) + u64::from(m.warning);
                    o.instances_failed += u64::from(m.failed);
                }
                Err(e) => {
                    o.studies_failed += 1;
                    tracing::warn!(route, error = %e, "veil pull: a C-MOVE failed");
                }
            }
        }
        out.push(o);
    }
    Ok(out)
}
