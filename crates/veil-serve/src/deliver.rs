//! The network destinations: `dicom://AE@host:port` (C-STORE SCU of
//! veil-dimse) and `dicomweb+http(s)://host/path` (STOW-RS client of
//! veil-dicomweb). `file://` is the gateway's own.
//!
//! Both are idempotent by name as [`Destination`] demands, without any
//! bookkeeping here: `name` is the de-identified instance's pseudonymous
//! path and its SOP Instance UID is the same on every retry (keyed
//! pseudonyms), and a DICOM peer or a DICOMweb origin keeps one instance
//! per SOP Instance UID (PS3.4 B.4.1: a repeat replaces or is ignored;
//! PS3.18 STOW-RS likewise). So a delivery repeated after a crash leaves
//! the recipient with one copy.
//!
//! Why one association (or one request) per instance: the contract says
//! `deliver` returns only once the recipient holds that instance, and the
//! service marks it delivered right after; batching would widen the window
//! of instances sent but not yet marked, for no gain in correctness.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use veil_dicomweb::{ClientError, StowClient};
use veil_dimse::Peer;
use veil_gateway::{Config, ConfigError, DeliveryError, Destination, DestinationUrl};

/// `dicom://AE@host:port`: C-STORE, with veil-dimse's presentation
/// context negotiation and fallback.
#[derive(Debug, Clone)]
pub struct DicomDestination {
    peer: Peer,
}

impl DicomDestination {
    /// Calls `called_ae` at `host:port` as `calling_ae`, with the SCP's
    /// PDU size and timeout (one setting for both directions).
    pub fn new(
        calling_ae: &str,
        called_ae: &str,
        host: &str,
        port: u16,
        max_pdu: u32,
        timeout: Duration,
    ) -> DicomDestination {
        let mut peer = Peer::new(calling_ae, called_ae, &address(host, port));
        peer.max_pdu_length = max_pdu;
        peer.timeout = timeout;
        DicomDestination { peer }
    }
}

impl Destination for DicomDestination {
    fn deliver(&mut self, _name: &str, file: &Path) -> Result<(), DeliveryError> {
        let out = veil_dimse::store_files(&self.peer, &[file.to_path_buf()])
            .map_err(|e| DeliveryError(format!("dicom: {e}")))?;
        match out.into_iter().next().map(|o| o.result) {
            // success or a warning: the peer holds the instance
            Some(Ok(_)) => Ok(()),
            Some(Err(u)) => Err(DeliveryError(format!("dicom: {u}"))),
            None => Err(DeliveryError("dicom: no C-STORE outcome".into())),
        }
    }
}

/// `host:port` for a socket address (an IPv6 literal in brackets).
pub(crate) fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `dicomweb+http(s)://host/path`: STOW-RS to `.../studies`, with the
/// route's bearer token.
#[derive(Debug)]
pub struct StowDestination {
    client: StowClient,
}

impl Destination for StowDestination {
    fn deliver(&mut self, _name: &str, file: &Path) -> Result<(), DeliveryError> {
        self.client
            .store_files(&[file])
            .map(|_| ())
            .map_err(|e| DeliveryError(format!("dicomweb: {e}")))
    }
}

/// Makes the network destination of every route that has one, keyed by
/// route name; `file://` routes are left to the gateway. An error names
/// the route's field (an unreadable or too open token file, say).
pub fn destinations(cfg: &Config) -> Result<BTreeMap<String, Box<dyn Destination>>, ConfigError> {
    let timeout = Duration::from_secs(cfg.dicom.timeout_seconds.max(1));
    let mut out: BTreeMap<String, Box<dyn Destination>> = BTreeMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        let d: Box<dyn Destination> = match &r.destination {
            DestinationUrl::Dicom { ae, host, port } => Box::new(DicomDestination::new(
                &cfg.dicom.ae_title,
                ae,
                host,
                *port,
                cfg.dicom.max_pdu,
                timeout,
            )),
            DestinationUrl::DicomWeb { url } => {
                let client =
                    StowClient::new(&format!("dicomweb+{url}"), r.token_file.as_deref(), timeout)
                        .map_err(|e| {
                        let key = match e {
                            ClientError::TokenFile(_)
                            | ClientError::TokenFileMode { .. }
                            | ClientError::TokenEmpty => "token_file",
                            _ => "destination",
                        };
                        ConfigError::Field {
                            field: format!("route[{i}].{key}"),
                            message: e.to_string(),
                        }
                    })?;
                Box::new(StowDestination { client })
            }
            DestinationUrl::File { .. } => continue,
        };
        out.insert(r.name.clone(), d);
    }
    Ok(out)
}
