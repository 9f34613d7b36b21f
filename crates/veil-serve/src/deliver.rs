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
//! `dicom://` sends a study on one association (a
//! [`veil_dimse::StoreSession`] opened by `begin_study`, released by
//! `end_study`), one C-STORE at a time: the contract says `deliver`
//! returns only once the recipient holds that instance, and the service
//! marks it delivered right after, so at most one instance is sent but
//! not yet marked. STOW-RS sends one instance a request for the same
//! reason (over one kept-alive connection).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use veil_dicomweb::{ClientError, StowClient};
use veil_dimse::{ClientTls, Peer, StoreSession};
use veil_gateway::{
    ClientTlsConfig, Config, ConfigError, DeliveryError, Destination, DestinationUrl,
};

/// `dicom://AE@host:port`: C-STORE, with veil-dimse's presentation
/// context negotiation and fallback, one association per study.
pub struct DicomDestination {
    peer: Peer,
    /// The study being delivered: its session and each file's index in it.
    study: Option<(StoreSession, HashMap<PathBuf, usize>)>,
}

impl DicomDestination {
    /// Calls `called_ae` at `host:port` as `calling_ae`, with the SCP's
    /// PDU size and timeout (one setting for both directions), over DICOM
    /// TLS when `tls` is given.
    pub fn new(
        calling_ae: &str,
        called_ae: &str,
        host: &str,
        port: u16,
        max_pdu: u32,
        timeout: Duration,
        tls: Option<ClientTls>,
    ) -> DicomDestination {
        let mut peer = Peer::new(calling_ae, called_ae, &address(host, port));
        peer.max_pdu_length = max_pdu;
        peer.timeout = timeout;
        peer.tls = tls;
        DicomDestination { peer, study: None }
    }
}

impl Destination for DicomDestination {
    fn begin_study(&mut self, files: &[PathBuf]) -> Result<(), DeliveryError> {
        let index = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        self.study = Some((StoreSession::new(&self.peer, files), index));
        Ok(())
    }

    fn deliver(&mut self, _name: &str, file: &Path) -> Result<(), DeliveryError> {
        if self
            .study
            .as_ref()
            .is_none_or(|(_, ix)| !ix.contains_key(file))
        {
            // a file begin_study did not announce: a session of its own
            self.begin_study(&[file.to_path_buf()])?;
        }
        let Some((session, index)) = self.study.as_mut() else {
            return Err(DeliveryError("dicom: no session".into()));
        };
        let i = index[file];
        match session.store(i).result {
            // success or a warning: the peer holds the instance
            Ok(_) => Ok(()),
            Err(u) => Err(DeliveryError(format!("dicom: {u}"))),
        }
    }

    fn end_study(&mut self) -> Result<(), DeliveryError> {
        if let Some((session, _)) = self.study.take() {
            session.finish();
        }
        Ok(())
    }
}

/// The DICOM TLS settings of `tls` for calling `host`, whose certificate
/// must name it; an error names the field (`route[i].KEY`).
pub(crate) fn client_tls(
    tls: Option<&ClientTlsConfig>,
    host: &str,
    field: String,
) -> Result<Option<ClientTls>, ConfigError> {
    let Some(t) = tls else {
        return Ok(None);
    };
    let own = t.cert.as_deref().zip(t.key.as_deref());
    let config = veil_dimse::tls::client_config(&t.ca, own).map_err(|e| ConfigError::Field {
        field,
        message: e.to_string(),
    })?;
    Ok(Some(ClientTls {
        config,
        server_name: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    }))
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
                client_tls(
                    r.destination_tls.as_ref(),
                    host,
                    format!("route[{i}].destination_tls"),
                )?,
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
