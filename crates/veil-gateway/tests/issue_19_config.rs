//! Issue 19: `[portal]` and `[console]` in `veil.toml`, parsed with the
//! gateway's configuration and alone (`veil portal invite`), with errors
//! that name the field.

use std::net::SocketAddr;
use std::path::PathBuf;

use veil_gateway::{Config, PortalFile, PortalTlsConfig};

const ROUTE: &str = r#"
[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme-ai"
purpose = "ai-training"
destination = "file:///srv/out"
"#;

const PORTAL: &str = r#"
[portal]
listen = "127.0.0.1:8443"
public_url = "http://127.0.0.1:8443"

[console]
listen = "127.0.0.1:8444"
"#;

#[test]
fn issue_19_portal_and_console_sections() {
    let c = Config::parse(&format!("{ROUTE}{PORTAL}")).unwrap();
    let p = c.portal.unwrap();
    assert_eq!(p.listen, "127.0.0.1:8443".parse::<SocketAddr>().unwrap());
    assert_eq!(p.public_url, "http://127.0.0.1:8443");
    assert_eq!((p.session_idle_minutes, p.session_max_hours), (30, 12));
    assert_eq!(p.tls, None);
    assert_eq!(
        c.console.unwrap().listen,
        "127.0.0.1:8444".parse::<SocketAddr>().unwrap()
    );
    // without the sections, neither is configured
    let c = Config::parse(ROUTE).unwrap();
    assert!(c.portal.is_none() && c.console.is_none());

    // the portal's own reading needs no route
    let f = PortalFile::parse(&format!(
        "{}\n[store]\nurl = \"/srv/veil.db\"\n",
        PORTAL
            .replace(
                "public_url = \"http://127.0.0.1:8443\"",
                "public_url = \"https://portal.example.org/veil/\"\ntls = { cert = \"/c.pem\", key = \"/k.pem\" }\nsession_idle_minutes = 15\nsession_max_hours = 8"
            )
    ))
    .unwrap();
    let p = f.portal.unwrap();
    assert_eq!(
        p.public_url, "https://portal.example.org/veil",
        "no trailing /"
    );
    assert_eq!(
        p.tls,
        Some(PortalTlsConfig {
            cert: PathBuf::from("/c.pem"),
            key: PathBuf::from("/k.pem")
        })
    );
    assert_eq!((p.session_idle_minutes, p.session_max_hours), (15, 8));
    assert_eq!(f.store_url.as_deref(), Some("/srv/veil.db"));
    assert!(PortalFile::parse("").unwrap().portal.is_none());
}

#[test]
fn issue_19_portal_config_errors_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            PORTAL.replace("public_url = \"http://127.0.0.1:8443\"\n", ""),
            "portal.public_url: missing",
        ),
        (
            PORTAL.replace("http://127.0.0.1:8443", "ftp://x"),
            "portal.public_url: expected http(s)://",
        ),
        (
            PORTAL.replace("http://127.0.0.1:8443", "https://"),
            "portal.public_url: expected http(s)://host",
        ),
        (
            PORTAL.replace("http://127.0.0.1:8443", "https://h/p?x=1"),
            "portal.public_url: no query",
        ),
        (
            PORTAL.replace("\"http://127.0.0.1:8443\"", "8443"),
            "portal.public_url: invalid type",
        ),
        (
            PORTAL.replace("listen = \"127.0.0.1:8443\"", "listen = \"nowhere\""),
            "portal.listen:",
        ),
        (
            PORTAL.replace("listen = \"127.0.0.1:8443\"\n", ""),
            "portal.listen: missing",
        ),
        (
            PORTAL.replace("[console]", "tls = { cert = \"/c\" }\n[console]"),
            "portal.tls.key: missing",
        ),
        (
            PORTAL.replace(
                "[console]",
                "tls = { cert = \"/c\", key = \"/k\", ca = \"/a\" }\n[console]",
            ),
            "portal.tls.ca: unknown field",
        ),
        (
            PORTAL.replace("[console]", "session_idle_minutes = 0\n[console]"),
            "portal.session_idle_minutes: must be 1 to 1440",
        ),
        (
            PORTAL.replace("[console]", "session_max_hours = 1000\n[console]"),
            "portal.session_max_hours: must be 1 to 168",
        ),
        (
            PORTAL.replace(
                "[console]",
                "session_idle_minutes = 120\nsession_max_hours = 1\n[console]",
            ),
            "portal.session_idle_minutes: must not exceed session_max_hours",
        ),
        (
            PORTAL.replace("[console]", "sesion_max_hours = 1\n[console]"),
            "portal.sesion_max_hours: unknown field",
        ),
        (
            PORTAL.replace("127.0.0.1:8444", "127.0.0.1:8443"),
            "console.listen: must differ from portal.listen",
        ),
        (
            PORTAL.replace("127.0.0.1:8444", "0.0.0.0:8443"),
            "console.listen: must differ from portal.listen",
        ),
        (
            PORTAL.replace("listen = \"127.0.0.1:8444\"", "port = 8444"),
            "console.port: unknown field",
        ),
        (format!("{PORTAL}\n[portals]\n"), "portals: unknown section"),
        (
            format!("{PORTAL}review = [\"srv/out.review\"]\n"),
            "console.review: each review folder must be an absolute path",
        ),
        (
            format!("{PORTAL}review = \"/srv/out.review\"\n"),
            "console.review:",
        ),
        (
            format!("{PORTAL}public_url = \"ftp://console\"\n"),
            "console.public_url: expected http(s)://",
        ),
        (
            format!("{PORTAL}tls = {{ cert = \"/c\" }}\n"),
            "console.tls",
        ),
    ];
    for (text, want) in &cases {
        for got in [
            Config::parse(&format!("{ROUTE}{text}"))
                .unwrap_err()
                .to_string(),
            PortalFile::parse(text).unwrap_err().to_string(),
        ] {
            assert!(got.starts_with(want), "want {want:?}, got {got:?}");
        }
    }
    // another port on the same address is fine
    PortalFile::parse(&PORTAL.replace("127.0.0.1:8444", "127.0.0.1:9000")).unwrap();
    // the console's review folders, address as staff reach it, and TLS
    let c = PortalFile::parse(&format!(
        "{PORTAL}review = [\"/srv/a.review\", \"/srv/b.review\"]\npublic_url = \"https://console.internal/\"\ntls = {{ cert = \"/c.pem\", key = \"/k.pem\" }}\n"
    ))
    .unwrap()
    .console
    .unwrap();
    assert_eq!(
        c.review,
        [
            PathBuf::from("/srv/a.review"),
            PathBuf::from("/srv/b.review")
        ]
    );
    assert_eq!(c.public_url.as_deref(), Some("https://console.internal"));
    assert_eq!(c.tls.unwrap().key, PathBuf::from("/k.pem"));
    let c = PortalFile::parse(PORTAL).unwrap().console.unwrap();
    assert!(c.review.is_empty() && c.public_url.is_none() && c.tls.is_none());
}

#[test]
fn issue_19_flags_section_defaults_and_values() {
    let c = Config::parse(ROUTE).unwrap();
    assert_eq!(c.flags, veil_gateway::FlagsConfig::default());
    assert_eq!(c.flags.burst_releases, 10);
    let text = format!(
        "{ROUTE}\n[flags]\nburst_releases = 3\nburst_window_hours = 2\nvolume_factor = 4\nvolume_baseline_days = 7\nvolume_min_count = 5\nlookup_without_reason = false\nrelease_after_withdrawal = false\n"
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.flags.burst_releases, 3);
    assert_eq!(c.flags.burst_window_hours, 2);
    assert_eq!(c.flags.volume_factor, 4.0);
    assert_eq!(c.flags.volume_baseline_days, 7);
    assert_eq!(c.flags.volume_min_count, 5);
    assert!(!c.flags.lookup_without_reason);
    assert!(!c.flags.release_after_withdrawal);
    // the portal's own reading of veil.toml sees the same section
    let p = PortalFile::parse(&format!("{PORTAL}\n[flags]\nvolume_factor = 2.5\n")).unwrap();
    assert_eq!(p.flags.volume_factor, 2.5);
}

#[test]
fn issue_19_flags_errors_name_the_field() {
    for (body, want) in [
        (
            "burst_releases = 1",
            "flags.burst_releases: must be 0 (off) or at least 2",
        ),
        ("burst_releases = -1", "flags.burst_releases:"),
        (
            "burst_window_hours = 0",
            "flags.burst_window_hours: must be 1 to 720",
        ),
        (
            "volume_factor = 0.5",
            "flags.volume_factor: must be 0 (off) or 1 to 1000",
        ),
        ("volume_factor = nan", "flags.volume_factor:"),
        ("volume_factor = \"x\"", "flags.volume_factor: invalid type"),
        (
            "volume_baseline_days = 0",
            "flags.volume_baseline_days: must be 1 to 365",
        ),
        (
            "lookup_without_reason = 1",
            "flags.lookup_without_reason: invalid type",
        ),
        ("burst = 3", "flags.burst: unknown field"),
    ] {
        let e = Config::parse(&format!("{ROUTE}\n[flags]\n{body}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{body}: {e}");
        let e = PortalFile::parse(&format!("[flags]\n{body}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{body} (portal file): {e}");
    }
}
