//! `veil.toml`: the gateway's configuration (the contract in issue 18).
//!
//! Each section is deserialized with serde (`deny_unknown_fields`, so a
//! misspelt key is an error, not a silently ignored setting), then
//! checked; every error names the field as `section.key` or
//! `route[i].key`, because an operator fixes a file by its line, and a
//! message without the field sends them hunting. Messages quote the
//! configuration, never data: `veil.toml` holds no PHI.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A configuration error: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("veil.toml: cannot read it ({0:?})")]
    Read(std::io::ErrorKind),
    /// Not TOML.
    #[error("veil.toml: {0}")]
    Syntax(String),
    /// A field's value is wrong, missing or unknown.
    #[error("{field}: {message}")]
    Field {
        /// `dicom.port`, `route[1].destination`, ...
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[dicom]`: the DIMSE listener (network layer).
    pub dicom: DicomConfig,
    /// `[http]`: DICOMweb STOW-RS in, `/healthz`, `/metrics`.
    pub http: Option<HttpConfig>,
    /// `[store]`: the database (default: the embedded SQLite in
    /// `$VEIL_HOME`, as for every other command).
    pub store_url: Option<String>,
    /// `[spool] dir`: where received instances wait (default
    /// `$VEIL_HOME/spool`). Holds PHI: created and kept mode 0700.
    pub spool_dir: Option<PathBuf>,
    /// `[queue]`: retries.
    pub queue: QueueConfig,
    /// `[[route]]`, in file order.
    pub routes: Vec<Route>,
    /// `[portal]`: the patient portal (issue 19).
    pub portal: Option<PortalConfig>,
    /// `[console]`: the staff console (issue 19).
    pub console: Option<ConsoleConfig>,
    /// `[flags]`: the rules that raise flags by themselves (issue 19);
    /// defaults when absent.
    pub flags: FlagsConfig,
}

/// `[flags]`: thresholds of the rules that raise flags by themselves
/// (`veil_portal::FlagRules` has the same fields and defaults; the web
/// layer copies them across). Rules are data so that a site tunes them
/// to its volumes without a new build.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagsConfig {
    /// Raise when at least this many releases about one patient fall
    /// within `burst_window_hours` (0: rule off).
    pub burst_releases: u32,
    /// Hours, 1 to 720.
    pub burst_window_hours: u32,
    /// Raise when a recipient's releases today exceed this factor times
    /// its daily average (0: rule off; else 1 to 1000).
    pub volume_factor: f64,
    /// Days the average is taken over, 1 to 365.
    pub volume_baseline_days: u32,
    /// ... and only when today's count is at least this.
    pub volume_min_count: u32,
    /// Raise when staff look up a patient with no open flag.
    pub lookup_without_reason: bool,
    /// Raise when a release is refused by a withdrawn consent.
    pub release_after_withdrawal: bool,
}

// volume_factor is checked finite when parsed
impl Eq for FlagsConfig {}

impl Default for FlagsConfig {
    fn default() -> Self {
        FlagsConfig {
            burst_releases: 10,
            burst_window_hours: 24,
            volume_factor: 5.0,
            volume_baseline_days: 30,
            volume_min_count: 20,
            lookup_without_reason: true,
            release_after_withdrawal: true,
        }
    }
}

/// `[flags]`, checked; defaults when absent.
fn flags_section(doc: &toml::Table) -> Result<FlagsConfig, ConfigError> {
    let Some(v) = doc.get("flags") else {
        return Ok(FlagsConfig::default());
    };
    // an integer factor (`volume_factor = 5`) is as good as `5.0`
    let mut v = v.clone();
    if let Some(t) = v.as_table_mut() {
        if let Some(toml::Value::Integer(n)) = t.get("volume_factor").cloned() {
            t.insert("volume_factor".into(), toml::Value::Float(n as f64));
        }
    }
    let f: FlagsConfig = section(
        "flags",
        &v,
        &[
            ("burst_releases", is::<u32>),
            ("burst_window_hours", is::<u32>),
            ("volume_factor", is::<f64>),
            ("volume_baseline_days", is::<u32>),
            ("volume_min_count", is::<u32>),
            ("lookup_without_reason", is::<bool>),
            ("release_after_withdrawal", is::<bool>),
        ],
    )?;
    if f.burst_releases == 1 {
        return Err(field(
            "flags.burst_releases",
            "must be 0 (off) or at least 2: one release is not a burst",
        ));
    }
    if !(1..=720).contains(&f.burst_window_hours) {
        return Err(field("flags.burst_window_hours", "must be 1 to 720 hours"));
    }
    if !(f.volume_factor == 0.0 || (1.0..=1000.0).contains(&f.volume_factor)) {
        return Err(field("flags.volume_factor", "must be 0 (off) or 1 to 1000"));
    }
    if !(1..=365).contains(&f.volume_baseline_days) {
        return Err(field("flags.volume_baseline_days", "must be 1 to 365 days"));
    }
    Ok(f)
}

/// `[portal]`: the patient portal's web listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The portal's address as patients reach it (through a proxy,
    /// perhaps): invitation links are `{public_url}/invite/{token}`.
    /// Stored without a trailing `/`.
    pub public_url: String,
    /// HTTPS on the listener itself; without it, a proxy in front must
    /// terminate TLS.
    pub tls: Option<PortalTlsConfig>,
    /// A session unused this long ends (minutes, 1 to 1440).
    #[serde(default = "default_session_idle_minutes")]
    pub session_idle_minutes: u32,
    /// A session ends this long after sign-in, however used (hours, 1 to
    /// 168).
    #[serde(default = "default_session_max_hours")]
    pub session_max_hours: u32,
}

fn default_session_idle_minutes() -> u32 {
    30
}
fn default_session_max_hours() -> u32 {
    12
}

/// `[portal] tls = { cert, key }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalTlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// `[console]`: the staff console's web listener. Its own address, so
/// that it can stay on an internal interface while the portal faces
/// patients: never served on the portal's listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The console's address as staff reach it (a proxy's, perhaps). An
    /// `https://` address makes the session cookie `Secure` and sends
    /// HSTS, as `tls` does; links are not built from it.
    pub public_url: Option<String>,
    /// HTTPS on the listener itself (as `[portal] tls`).
    pub tls: Option<PortalTlsConfig>,
    /// The review folders (`veil deid --review`, `OUT.review`) whose
    /// waiting objects the console shows with their thumbnails, for a
    /// reviewer to approve or reject as `veil review` does. Site-local
    /// folders: the "before" thumbnails show burned-in text.
    #[serde(default)]
    pub review: Vec<PathBuf>,
}

/// The sections `veil portal` and `veil staff` read: `[portal]`,
/// `[console]` and `[store]`, checked as `veil serve` checks them. Why
/// apart from [`Config`]: issuing an invitation must not require the
/// gateway's routes to be configured (a site may run the portal alone
/// while its routes are being set up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalFile {
    /// `[portal]`.
    pub portal: Option<PortalConfig>,
    /// `[console]`.
    pub console: Option<ConsoleConfig>,
    /// `[store] url`.
    pub store_url: Option<String>,
    /// `[flags]`.
    pub flags: FlagsConfig,
}

impl PortalFile {
    /// Reads and checks the portal's sections of `path`.
    pub fn load(path: &Path) -> Result<PortalFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(e.kind()))?;
        PortalFile::parse(&text)
    }

    /// Parses and checks the portal's sections of a `veil.toml`; other
    /// known sections are left to `veil serve`.
    pub fn parse(text: &str) -> Result<PortalFile, ConfigError> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.message().to_string()))?;
        check_sections(&doc)?;
        let (portal, console) = portal_sections(&doc)?;
        Ok(PortalFile {
            portal,
            console,
            store_url: store_section(&doc)?.and_then(|s| s.url),
            flags: flags_section(&doc)?,
        })
    }
}

fn check_sections(doc: &toml::Table) -> Result<(), ConfigError> {
    for k in doc.keys() {
        if !SECTIONS.contains(&k.as_str()) {
            return Err(field(
                k.clone(),
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            ));
        }
    }
    Ok(())
}

fn store_section(doc: &toml::Table) -> Result<Option<RawStore>, ConfigError> {
    doc.get("store")
        .map(|v| section("store", v, &[("url", is::<String>)]))
        .transpose()
}

/// `[portal]` and `[console]`, checked.
fn portal_sections(
    doc: &toml::Table,
) -> Result<(Option<PortalConfig>, Option<ConsoleConfig>), ConfigError> {
    if let Some(t) = doc.get("portal").and_then(|d| d.get("tls")) {
        let _: PortalTlsConfig = section(
            "portal.tls",
            t,
            &[("cert", is::<PathBuf>), ("key", is::<PathBuf>)],
        )?;
    }
    let portal: Option<PortalConfig> = doc
        .get("portal")
        .map(|v| {
            section(
                "portal",
                v,
                &[
                    ("listen", is::<SocketAddr>),
                    ("public_url", is::<String>),
                    ("tls", is::<toml::Table>),
                    ("session_idle_minutes", is::<u32>),
                    ("session_max_hours", is::<u32>),
                ],
            )
        })
        .transpose()?;
    let portal = match portal {
        Some(mut p) => {
            p.public_url =
                check_public_url(&p.public_url).map_err(|m| field("portal.public_url", m))?;
            if !(1..=1440).contains(&p.session_idle_minutes) {
                return Err(field(
                    "portal.session_idle_minutes",
                    "must be 1 to 1440 minutes",
                ));
            }
            if !(1..=168).contains(&p.session_max_hours) {
                return Err(field("portal.session_max_hours", "must be 1 to 168 hours"));
            }
            if u64::from(p.session_idle_minutes) > u64::from(p.session_max_hours) * 60 {
                return Err(field(
                    "portal.session_idle_minutes",
                    "must not exceed session_max_hours",
                ));
            }
            Some(p)
        }
        None => None,
    };
    if let Some(t) = doc.get("console").and_then(|d| d.get("tls")) {
        let _: PortalTlsConfig = section(
            "console.tls",
            t,
            &[("cert", is::<PathBuf>), ("key", is::<PathBuf>)],
        )?;
    }
    let console: Option<ConsoleConfig> = doc
        .get("console")
        .map(|v| {
            section(
                "console",
                v,
                &[
                    ("listen", is::<SocketAddr>),
                    ("public_url", is::<String>),
                    ("tls", is::<toml::Table>),
                    ("review", is::<Vec<PathBuf>>),
                ],
            )
        })
        .transpose()?;
    let console = match console {
        Some(mut c) => {
            if let Some(u) = &c.public_url {
                c.public_url =
                    Some(check_public_url(u).map_err(|m| field("console.public_url", m))?);
            }
            for r in &c.review {
                if !r.is_absolute() {
                    return Err(field(
                        "console.review",
                        "each review folder must be an absolute path",
                    ));
                }
            }
            Some(c)
        }
        None => None,
    };
    if let (Some(p), Some(c)) = (&portal, &console) {
        let (a, b) = (p.listen, c.listen);
        let overlap = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
        if a.port() == b.port() && overlap {
            return Err(field(
                "console.listen",
                format!(
                    "must differ from portal.listen ({a}): the staff console is never served \
                     on the patients' listener"
                ),
            ));
        }
    }
    Ok((portal, console))
}

/// `public_url`: `http(s)://host[:port][/path]`, without query or
/// fragment (a link is built by appending `/invite/TOKEN`); returned
/// without a trailing `/`.
fn check_public_url(u: &str) -> Result<String, String> {
    let u = u.trim();
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("expected http(s)://host[:port][/path]")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err("expected http(s)://host[:port][/path] (no host, or a user name in it)".into());
    }
    if u.contains(['?', '#']) || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no query, fragment or spaces: invitation links are appended to it".into());
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// `[dicom]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomConfig {
    /// TCP port of the C-STORE SCP.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Calling AE titles accepted; empty refuses all, `"*"` (explicit)
    /// accepts any.
    #[serde(default)]
    pub allowed_calling_aes: Vec<String>,
    /// DICOM TLS.
    pub tls: Option<TlsConfig>,
    /// Maximum PDU size offered and accepted (bytes), 16384 to 1048576.
    #[serde(default = "default_max_pdu")]
    pub max_pdu: u32,
    /// Concurrent associations at most.
    #[serde(default = "default_max_associations")]
    pub max_associations: u32,
    /// An association idle this long is aborted (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Veil's own AE title when it calls out (C-STORE to `dicom://`
    /// destinations): recipients allow-list it, so it is configured, not
    /// derived from a route.
    #[serde(default = "default_ae_title")]
    pub ae_title: String,
    /// The address the SCP listens on (default every interface: a PACS
    /// reaches the gateway over the network; the allow-list guards it).
    #[serde(default = "default_bind")]
    pub bind: IpAddr,
}

fn default_port() -> u16 {
    11112
}
fn default_max_pdu() -> u32 {
    16_384
}
fn default_max_associations() -> u32 {
    16
}
fn default_timeout() -> u64 {
    30
}
fn default_ae_title() -> String {
    "VEIL".into()
}
fn default_bind() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            port: default_port(),
            allowed_calling_aes: Vec::new(),
            tls: None,
            max_pdu: default_max_pdu(),
            max_associations: default_max_associations(),
            timeout_seconds: default_timeout(),
            ae_title: default_ae_title(),
            bind: default_bind(),
        }
    }
}

impl DicomConfig {
    /// Whether an association from `calling_ae` is accepted.
    pub fn allows(&self, calling_ae: &str) -> bool {
        let ae = calling_ae.trim();
        self.allowed_calling_aes
            .iter()
            .any(|a| a == "*" || a.trim() == ae)
    }
}

/// `[dicom] tls = { cert, key, ca }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA to verify peers with (PEM); none: peers are not asked for one.
    pub ca: Option<PathBuf>,
}

/// `[[route]] destination_tls` / `source_tls = { ca, cert, key }`: DICOM
/// TLS when Veil calls a peer. `ca` signs the peer's certificate (whose
/// name must be the URL's host); `cert` and `key`, Veil's own, for a peer
/// that requires client certificates (both or neither).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// CA of the peer's certificate (PEM).
    pub ca: PathBuf,
    /// Veil's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Veil's private key (PEM).
    pub key: Option<PathBuf>,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// SHA-256 hashes (64 hex digits) of the bearer tokens accepted on
    /// STOW-RS and `/metrics`. Hashes, not tokens: a copy of `veil.toml`
    /// (a backup, a support ticket) must not let anyone send. Empty
    /// refuses every request but `/healthz`.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Serve `/metrics` without a token (a Prometheus on a trusted
    /// segment).
    #[serde(default)]
    pub metrics_open: bool,
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Failed attempts (processing or delivery) before a study is parked
    /// in `dead-letter`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The wait after the first failure (seconds); doubled after each.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
    /// The longest wait between attempts (seconds).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    /// Studies `veil serve` delivers at once, each on an association (or
    /// connection) of its own, while it decides the next ones. A
    /// recipient stores instances from several associations in parallel;
    /// one at a time, delivery waits on each of its fsyncs in turn.
    #[serde(default = "default_parallel_deliveries")]
    pub parallel_deliveries: u32,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_backoff() -> u64 {
    30
}
fn default_max_backoff() -> u64 {
    3600
}
fn default_parallel_deliveries() -> u32 {
    2
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_attempts: default_max_attempts(),
            backoff_seconds: default_backoff(),
            max_backoff_seconds: default_max_backoff(),
            parallel_deliveries: default_parallel_deliveries(),
        }
    }
}

impl QueueConfig {
    /// When the attempt after `failed` failures is due, or `None` when
    /// the study is to be parked (exponential backoff, capped).
    pub fn next_attempt(&self, failed: u32, now: i64) -> Option<i64> {
        if failed >= self.max_attempts {
            return None;
        }
        let shift = failed.saturating_sub(1).min(32);
        let wait = self
            .backoff_seconds
            .saturating_mul(1u64 << shift)
            .min(self.max_backoff_seconds);
        Some(now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)))
    }
}

/// Where a route's released instances go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationUrl {
    /// `dicom://AE@host:port`: C-STORE SCU (network layer).
    Dicom {
        /// Called AE title.
        ae: String,
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `dicomweb+http(s)://host/path`: STOW-RS (network layer); `url` is
    /// the `http(s)://` URL.
    DicomWeb {
        /// The base URL, without the `dicomweb+` prefix.
        url: String,
    },
    /// `file:///dir`: a folder (built in).
    File {
        /// Absolute folder.
        dir: PathBuf,
    },
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its name (queue rows and `veil queue` use it).
    pub name: String,
    /// The AE title a sender calls to reach it.
    pub called_ae: String,
    /// The registered recipient.
    pub recipient: String,
    /// The purpose of use.
    pub purpose: String,
    /// A study is complete when nothing arrived for this long (seconds).
    pub study_stable_seconds: u64,
    /// Where released instances go.
    pub destination: DestinationUrl,
    /// The PACS `veil pull` queries (`dicom://AE@host:port`).
    pub source: Option<DestinationUrl>,
    /// The bearer token for a `dicomweb+http(s)://` destination, in a
    /// file of its own (mode 0600): a secret is kept out of `veil.toml`,
    /// which operators copy around.
    pub token_file: Option<PathBuf>,
    /// DICOM TLS to a `dicom://` destination.
    pub destination_tls: Option<ClientTlsConfig>,
    /// DICOM TLS to the `dicom://` source (`veil pull`).
    pub source_tls: Option<ClientTlsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    called_ae: String,
    recipient: String,
    purpose: String,
    #[serde(default = "default_stable")]
    study_stable_seconds: u64,
    destination: String,
    source: Option<String>,
    token_file: Option<PathBuf>,
    destination_tls: Option<ClientTlsConfig>,
    source_tls: Option<ClientTlsConfig>,
}

fn default_stable() -> u64 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    dir: Option<PathBuf>,
}

const SECTIONS: [&str; 9] = [
    "dicom", "http", "store", "spool", "queue", "route", "portal", "console", "flags",
];

/// Checks one key's value has the type its field expects.
type TypeCheck = fn(&toml::Value) -> Result<(), String>;

/// One section (or route) deserialized; on error, the failing key is
/// found by deserializing each key alone into the type serde expected,
/// so a wrong type is reported as `section.key` too.
fn section<T: DeserializeOwned>(
    name: &str,
    v: &toml::Value,
    keys: &[(&str, TypeCheck)],
) -> Result<T, ConfigError> {
    let Some(table) = v.as_table() else {
        return Err(field(name, "expected a table"));
    };
    for k in table.keys() {
        if !keys.iter().any(|(n, _)| n == k) {
            let known: Vec<&str> = keys.iter().map(|(n, _)| *n).collect();
            return Err(field(
                format!("{name}.{k}"),
                format!("unknown field; expected one of {}", known.join(", ")),
            ));
        }
    }
    for (k, check) in keys {
        if let Some(x) = table.get(*k) {
            check(x).map_err(|m| field(format!("{name}.{k}"), m))?;
        }
    }
    T::deserialize(v.clone()).map_err(|e| {
        let msg = e.to_string();
        // serde names missing fields in backticks: point at them
        match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(k) => field(format!("{name}.{k}"), "missing"),
            None => field(name, msg.trim().to_string()),
        }
    })
}

fn is<T: DeserializeOwned>(v: &toml::Value) -> Result<(), String> {
    T::deserialize(v.clone())
        .map(|_| ())
        .map_err(|e| e.to_string().trim().to_string())
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(e.kind()))?;
        Config::parse(&text)
    }

    /// Parses and checks the text of a `veil.toml`. What needs the store
    /// (registered recipients and purposes) is checked when the service
    /// opens ([`crate::Service::open`]).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.message().to_string()))?;
        check_sections(&doc)?;
        // the nested table first, so its errors name `dicom.tls.KEY`
        if let Some(t) = doc.get("dicom").and_then(|d| d.get("tls")) {
            let _: TlsConfig = section(
                "dicom.tls",
                t,
                &[
                    ("cert", is::<PathBuf>),
                    ("key", is::<PathBuf>),
                    ("ca", is::<PathBuf>),
                ],
            )?;
        }
        let dicom: DicomConfig = match doc.get("dicom") {
            Some(v) => section(
                "dicom",
                v,
                &[
                    ("port", is::<u16>),
                    ("allowed_calling_aes", is::<Vec<String>>),
                    ("tls", is::<toml::Table>),
                    ("max_pdu", is::<u32>),
                    ("max_associations", is::<u32>),
                    ("timeout_seconds", is::<u64>),
                    ("ae_title", is::<String>),
                    ("bind", is::<IpAddr>),
                ],
            )?,
            None => DicomConfig::default(),
        };
        for (i, ae) in dicom.allowed_calling_aes.iter().enumerate() {
            if ae != "*" {
                check_ae(ae).map_err(|m| field(format!("dicom.allowed_calling_aes[{i}]"), m))?;
            }
        }
        // 16384 at least: the SCP reads the A-ASSOCIATE-RQ under this
        // limit, and a sender proposing a context per storage class
        // (dcmtk's storescu) needs about 13 KB for it
        if !(16_384..=1_048_576).contains(&dicom.max_pdu) {
            return Err(field("dicom.max_pdu", "must be 16384 to 1048576 bytes"));
        }
        if dicom.max_associations == 0 {
            return Err(field("dicom.max_associations", "must be at least 1"));
        }
        check_ae(&dicom.ae_title).map_err(|m| field("dicom.ae_title", m))?;
        let http: Option<HttpConfig> = doc
            .get("http")
            .map(|v| {
                section(
                    "http",
                    v,
                    &[
                        ("listen", is::<SocketAddr>),
                        ("tokens", is::<Vec<String>>),
                        ("metrics_open", is::<bool>),
                    ],
                )
            })
            .transpose()?;
        for (i, t) in http.iter().flat_map(|h| h.tokens.iter()).enumerate() {
            if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(field(
                    format!("http.tokens[{i}]"),
                    "expected a token's SHA-256 (64 hex digits), not the token itself",
                ));
            }
        }
        let store = store_section(&doc)?;
        let spool: Option<RawSpool> = doc
            .get("spool")
            .map(|v| section("spool", v, &[("dir", is::<PathBuf>)]))
            .transpose()?;
        if let Some(d) = spool.as_ref().and_then(|s| s.dir.as_ref()) {
            if !d.is_absolute() {
                return Err(field("spool.dir", "must be an absolute path"));
            }
        }
        let queue: QueueConfig = match doc.get("queue") {
            Some(v) => section(
                "queue",
                v,
                &[
                    ("max_attempts", is::<u32>),
                    ("backoff_seconds", is::<u64>),
                    ("max_backoff_seconds", is::<u64>),
                    ("parallel_deliveries", is::<u32>),
                ],
            )?,
            None => QueueConfig::default(),
        };
        if queue.max_attempts == 0 {
            return Err(field("queue.max_attempts", "must be at least 1"));
        }
        if !(1..=16).contains(&queue.parallel_deliveries) {
            return Err(field("queue.parallel_deliveries", "must be 1 to 16"));
        }
        let raw_routes = match doc.get("route") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(field(
                    "route",
                    "expected [[route]] tables (an array of tables)",
                ))
            }
        };
        let (portal, console) = portal_sections(&doc)?;
        if raw_routes.is_empty() {
            return Err(field("route", "at least one [[route]] is needed"));
        }
        let mut routes: Vec<Route> = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut aes: BTreeMap<String, usize> = BTreeMap::new();
        for (i, v) in raw_routes.iter().enumerate() {
            let at = format!("route[{i}]");
            // the nested tables first, so their errors name `route[i].KEY.FIELD`
            for k in ["destination_tls", "source_tls"] {
                if let Some(t) = v.get(k) {
                    let t: ClientTlsConfig = section(
                        &format!("{at}.{k}"),
                        t,
                        &[
                            ("ca", is::<PathBuf>),
                            ("cert", is::<PathBuf>),
                            ("key", is::<PathBuf>),
                        ],
                    )?;
                    if t.cert.is_some() != t.key.is_some() {
                        return Err(field(
                            format!("{at}.{k}"),
                            "cert and key go together (Veil's own certificate and its key)",
                        ));
                    }
                }
            }
            let r: RawRoute = section(
                &at,
                v,
                &[
                    ("name", is::<String>),
                    ("called_ae", is::<String>),
                    ("recipient", is::<String>),
                    ("purpose", is::<String>),
                    ("study_stable_seconds", is::<u64>),
                    ("destination", is::<String>),
                    ("source", is::<String>),
                    ("token_file", is::<PathBuf>),
                    ("destination_tls", is::<toml::Table>),
                    ("source_tls", is::<toml::Table>),
                ],
            )?;
            if !veil_consent::valid_name(&r.name) {
                return Err(field(
                    format!("{at}.name"),
                    "1-64 letters, digits, '.', '_' or '-'",
                ));
            }
            if let Some(j) = names.insert(r.name.clone(), i) {
                return Err(field(
                    format!("{at}.name"),
                    format!("'{}' is also route[{j}]'s name", r.name),
                ));
            }
            check_ae(&r.called_ae).map_err(|m| field(format!("{at}.called_ae"), m))?;
            if let Some(j) = aes.insert(r.called_ae.trim().to_string(), i) {
                return Err(field(
                    format!("{at}.called_ae"),
                    format!("'{}' is also route[{j}]'s called AE", r.called_ae),
                ));
            }
            for (k, v) in [("recipient", &r.recipient), ("purpose", &r.purpose)] {
                if v.trim().is_empty() {
                    return Err(field(format!("{at}.{k}"), "empty"));
                }
            }
            let destination = parse_destination(&r.destination)
                .map_err(|m| field(format!("{at}.destination"), m))?;
            let source = match &r.source {
                Some(s) => match parse_destination(s) {
                    Ok(d @ DestinationUrl::Dicom { .. }) => Some(d),
                    Ok(_) => {
                        return Err(field(
                            format!("{at}.source"),
                            "a source is a PACS: dicom://AE@host:port",
                        ))
                    }
                    Err(m) => return Err(field(format!("{at}.source"), m)),
                },
                None => None,
            };
            if let Some(t) = &r.token_file {
                if !matches!(destination, DestinationUrl::DicomWeb { .. }) {
                    return Err(field(
                        format!("{at}.token_file"),
                        "only a dicomweb+http(s):// destination takes a token",
                    ));
                }
                if !t.is_absolute() {
                    return Err(field(
                        format!("{at}.token_file"),
                        "must be an absolute path",
                    ));
                }
            }
            if r.destination_tls.is_some() && !matches!(destination, DestinationUrl::Dicom { .. }) {
                return Err(field(
                    format!("{at}.destination_tls"),
                    "only a dicom:// destination takes DICOM TLS (an https:// URL has its own)",
                ));
            }
            if r.source_tls.is_some() && source.is_none() {
                return Err(field(format!("{at}.source_tls"), "no source to call"));
            }
            routes.push(Route {
                name: r.name,
                called_ae: r.called_ae.trim().to_string(),
                recipient: r.recipient,
                purpose: r.purpose,
                study_stable_seconds: r.study_stable_seconds,
                destination,
                source,
                token_file: r.token_file,
                destination_tls: r.destination_tls,
                source_tls: r.source_tls,
            });
        }
        Ok(Config {
            dicom,
            http,
            store_url: store.and_then(|s| s.url),
            spool_dir: spool.and_then(|s| s.dir),
            queue,
            routes,
            portal,
            console,
            flags: flags_section(&doc)?,
        })
    }

    /// The route a sender reaches by calling `called_ae`.
    pub fn route_for_called_ae(&self, called_ae: &str) -> Option<&Route> {
        let ae = called_ae.trim();
        self.routes.iter().find(|r| r.called_ae == ae)
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The spool folder: `[spool] dir`, else `$VEIL_HOME/spool`.
    pub fn spool_dir(&self, home: &Path) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(|| home.join("spool"))
    }
}

/// An AE title: 1-16 characters of printable ASCII without a backslash,
/// not only spaces (PS3.5 AE).
fn check_ae(ae: &str) -> Result<(), String> {
    let t = ae.trim();
    if t.is_empty() || ae.len() > 16 {
        return Err("an AE title is 1 to 16 characters".into());
    }
    if !ae.chars().all(|c| (' '..='~').contains(&c) && c != '\\') {
        return Err("an AE title is printable ASCII without a backslash".into());
    }
    Ok(())
}

/// Parses a destination (or source) URL.
pub fn parse_destination(s: &str) -> Result<DestinationUrl, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(
            "expected dicom://AE@host:port, dicomweb+http(s)://host/path or file:///dir".into(),
        );
    };
    match scheme {
        "dicom" => {
            let (ae, hostport) = rest
                .split_once('@')
                .ok_or("expected dicom://AE@host:port (no AE title before '@')")?;
            check_ae(ae)?;
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or("expected dicom://AE@host:port (no port)")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err("expected dicom://AE@host:port (no host)".into());
            }
            let port: u16 = port
                .trim_end_matches('/')
                .parse()
                .map_err(|_| format!("port '{port}' is not a number from 1 to 65535"))?;
            if port == 0 {
                return Err("port 0 cannot be called".into());
            }
            Ok(DestinationUrl::Dicom {
                ae: ae.trim().to_string(),
                host: host.to_string(),
                port,
            })
        }
        "dicomweb+http" | "dicomweb+https" => {
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() {
                return Err("expected dicomweb+http(s)://host/path (no host)".into());
            }
            Ok(DestinationUrl::DicomWeb {
                url: format!("{}://{rest}", &scheme["dicomweb+".len()..]),
            })
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err("expected file:///absolute/dir".into());
            }
            Ok(DestinationUrl::File {
                dir: PathBuf::from(rest),
            })
        }
        other => Err(format!("unknown scheme '{other}'")),
    }
}
