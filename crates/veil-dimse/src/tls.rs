//! DICOM TLS (PS3.15 B.1, the BCP 195 profiles) with rustls.
//!
//! Why ring is named explicitly: the process may link more than one
//! rustls crypto provider (the store's PostgreSQL client brings its own
//! configuration), and a config built on "the default provider" would then
//! fail at run time; naming it keeps DICOM TLS independent of what else is
//! linked. Errors name the setting (cert, key, ca), never a path or a
//! certificate's content.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::DimseError;

fn provider() -> Arc<CryptoProvider> {
    // ring, as the store's PostgreSQL TLS uses: it builds with a C compiler
    // alone. rustls 0.23.48 deprecates it for lacking post-quantum key
    // exchange (aws-lc-rs has it, with a far heavier build); switching
    // both places together is the upgrade path.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, DimseError> {
    let pem = std::fs::read(path)
        .map_err(|e| DimseError::Config(format!("tls {field}: cannot read ({:?})", e.kind())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| DimseError::Config(format!("tls {field}: not PEM certificates")))?;
    if certs.is_empty() {
        return Err(DimseError::Config(format!("tls {field}: no certificate")));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, DimseError> {
    let pem = std::fs::read(path)
        .map_err(|e| DimseError::Config(format!("tls key: cannot read ({:?})", e.kind())))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| DimseError::Config("tls key: no PEM private key".into()))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, DimseError> {
    let mut store = RootCertStore::empty();
    for c in certs("ca", path)? {
        store
            .add(c)
            .map_err(|_| DimseError::Config("tls ca: unusable CA certificate".into()))?;
    }
    Ok(Arc::new(store))
}

/// A server config from PEM files: the SCP's certificate chain and key,
/// and, when `client_ca` is given, client certificates signed by it are
/// required (mutual TLS, what DICOM TLS peers expect by default).
pub fn server_config(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, DimseError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|_| DimseError::Config("tls: no protocol version".into()))?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|_| DimseError::Config("tls ca: cannot verify clients with it".into()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs("cert", cert)?, key(key_path)?)
        .map_err(|_| DimseError::Config("tls key: does not match the certificate".into()))?;
    Ok(Arc::new(config))
}

/// A client config from PEM files: the CA that signs peers' certificates,
/// and Veil's own certificate and key when the peer requires one.
pub fn client_config(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, DimseError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|_| DimseError::Config("tls: no protocol version".into()))?
        .with_root_certificates(roots(ca)?);
    let config = match client_cert {
        Some((cert, key_path)) => builder
            .with_client_auth_cert(certs("cert", cert)?, key(key_path)?)
            .map_err(|_| DimseError::Config("tls key: does not match the certificate".into()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
