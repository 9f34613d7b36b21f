//! Connecting to PostgreSQL: TLS through rustls with libpq's `sslmode`
//! semantics, and the password from a file or the environment, never from
//! the URL.
//!
//! Why not the URL: `--db postgres://user:pass@host/db` is visible to every
//! user of the machine in `ps` and lands in shell history. Why our own
//! `sslmode` handling: tokio-postgres knows only `disable`, `prefer` and
//! `require`, and verifies nothing; a store that holds consents and the
//! ledger must be able to insist on a server it can authenticate.
//!
//! | `sslmode`     | TLS                    | server certificate checked       |
//! |---------------|------------------------|----------------------------------|
//! | `disable`     | never                  | -                                |
//! | `prefer`      | if the server offers it| no                               |
//! | `require`     | always                 | no (chain only if `sslrootcert`) |
//! | `verify-ca`   | always                 | chain to `sslrootcert`           |
//! | `verify-full` | always                 | chain and host name              |
//!
//! As in libpq, `require` with an `sslrootcert` behaves as `verify-ca`.
//! Unlike libpq, a URL without `sslmode` means `verify-full` unless the
//! host is loopback or a Unix socket (then `prefer`): libpq's `prefer` on
//! a network host accepts any man in the middle. `sslrootcert` is a PEM
//! file, or `system` for the platform's trust store; without it, the
//! verifying modes use `~/.postgresql/root.crt` as libpq does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::StoreError;

/// The environment variable naming a file that holds the database password.
pub const PASSWORD_FILE_ENV: &str = "VEIL_DB_PASSWORD_FILE";
/// The environment variable holding the database password itself.
pub const PASSWORD_ENV: &str = "VEIL_DB_PASSWORD";

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, certificate chain checked against the root.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A URL taken apart: the tokio-postgres configuration (without our
/// options), the TLS mode and the root certificate option.
#[derive(Debug)]
pub struct Target {
    /// Connection settings.
    pub config: postgres::Config,
    /// The effective `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`, if given.
    pub root: Option<String>,
}

/// Parses a `postgres://` URL, refusing one that holds a password.
pub fn parse(url: &str) -> Result<Target, StoreError> {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| StoreError::Invalid(format!("database URL: {k} is not UTF-8")))?
            .into_owned();
        match k {
            "sslmode" => {
                mode = Some(SslMode::parse(&v).ok_or_else(|| {
                    StoreError::Invalid(
                    "database URL: sslmode is disable, prefer, require, verify-ca or verify-full"
                        .into(),
                )
                })?)
            }
            "sslrootcert" => root = Some(v),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    let config: postgres::Config = rest.parse()?;
    if config.get_password().is_some() {
        return Err(StoreError::Invalid(format!(
            "the database URL holds a password, which other users can read (ps, shell history); \
             remove it from the URL and put it in a file only you can read, named by \
             {PASSWORD_FILE_ENV}, or in {PASSWORD_ENV}"
        )));
    }
    let mode = mode.unwrap_or_else(|| {
        if config.get_hosts().iter().all(is_local) {
            SslMode::Prefer
        } else {
            SslMode::VerifyFull
        }
    });
    let mode = match (mode, &root) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (m, _) => m,
    };
    Ok(Target { config, mode, root })
}

fn is_local(h: &postgres::config::Host) -> bool {
    match h {
        postgres::config::Host::Unix(_) => true,
        postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// The password from `VEIL_DB_PASSWORD_FILE` (a file only its owner can
/// read; one trailing newline ignored) or `VEIL_DB_PASSWORD`.
pub fn password_from_env() -> Result<Option<String>, StoreError> {
    if let Some(p) = std::env::var_os(PASSWORD_FILE_ENV) {
        let p = PathBuf::from(p);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p)
                .map_err(|e| StoreError::Invalid(format!("{PASSWORD_FILE_ENV}: {:?}", e.kind())))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Invalid(format!(
                    "{PASSWORD_FILE_ENV}: the password file's permissions are {mode:o}; it must be readable by its owner only (chmod 600)"
                )));
            }
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| StoreError::Invalid(format!("{PASSWORD_FILE_ENV}: {:?}", e.kind())))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        return Ok(Some(text.to_string()));
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(p) => Ok(Some(p)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(_) => Err(StoreError::Invalid(format!("{PASSWORD_ENV} is not UTF-8"))),
    }
}

/// Connects as the URL says, with the password from the environment.
pub fn connect(url: &str) -> Result<postgres::Client, StoreError> {
    let Target {
        mut config,
        mode,
        root,
    } = parse(url)?;
    if let Some(p) = password_from_env()? {
        config.password(p);
    }
    if mode == SslMode::Disable {
        config.ssl_mode(postgres::config::SslMode::Disable);
        return Ok(config.connect(postgres::NoTls)?);
    }
    config.ssl_mode(if mode == SslMode::Prefer {
        postgres::config::SslMode::Prefer
    } else {
        postgres::config::SslMode::Require
    });
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(mode, root.as_deref())?);
    let no_password = config.get_password().is_none();
    config.connect(tls).map_err(|e| {
        if no_password && crate::pg_message(&e).contains("password missing") {
            StoreError::Invalid(format!(
                "the database asks for a password: put it in a file only you can read, named \
                 by {PASSWORD_FILE_ENV}, or in {PASSWORD_ENV} (never in the URL)"
            ))
        } else {
            e.into()
        }
    })
}

fn tls_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("database TLS: {what}"))
}

/// The rustls configuration for a mode.
fn client_config(mode: SslMode, root: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    // ring builds with a C compiler alone; rustls 0.23.48 deprecates it
    // for lacking post-quantum key exchange (aws-lc-rs has it, at the cost
    // of a far heavier build). A store connection's secrecy over decades is
    // not the threat here; authenticating the server is.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unverified(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(tls_err)?;
            if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The trust anchors: a PEM file, the platform's store (`system`), or
/// libpq's default `~/.postgresql/root.crt`.
fn root_store(root: Option<&str>) -> Result<rustls::RootCertStore, StoreError> {
    let mut store = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match root {
        Some("system") => rustls_native_certs::load_native_certs().certs,
        Some(file) => read_pem(Path::new(file))?,
        None => {
            let default = std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    tls_err(
                        "sslmode verify-ca and verify-full need the server's root certificate: \
                         add sslrootcert=FILE (PEM) or sslrootcert=system to the URL",
                    )
                })?;
            read_pem(&default)?
        }
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(tls_err("sslrootcert holds no usable certificate"));
    }
    Ok(store)
}

fn read_pem(p: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    CertificateDer::pem_file_iter(p)
        .map_err(|e| tls_err(format!("reading sslrootcert: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("reading sslrootcert: {e}")))
}

/// `verify-ca`: the chain must lead to the root; the name is not checked
/// (webpki checks the chain before the name, so a name error means the
/// chain passed).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root: encrypted, but any certificate
/// is accepted (libpq's meaning). The handshake signatures are still
/// checked, so the session key belongs to the certificate presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_22_password_in_url_is_refused() {
        for url in [
            "postgres://veil:secret@db.example/veil",
            "postgres://veil@db.example/veil?password=secret",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains("VEIL_DB_PASSWORD_FILE"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn sslmode_defaults_and_options() {
        let t = parse("postgres://veil@db.example/veil").unwrap();
        assert_eq!(
            t.mode,
            SslMode::VerifyFull,
            "network hosts verify by default"
        );
        let t = parse("postgres://veil@127.0.0.1:5432/veil").unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        let t = parse("postgres://veil@localhost/veil?sslmode=disable").unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        let t = parse(
            "postgres://veil@db.example/veil?sslmode=require&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa, "require + root = verify-ca");
        assert_eq!(t.root.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        assert!(parse("postgres://veil@db.example/veil?sslmode=allow-all").is_err());
    }
}
