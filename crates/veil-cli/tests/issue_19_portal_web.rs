//! Issue 19: `veil serve` with `[portal]` serves the patient portal on
//! its own listener, with its security headers, and stops it on SIGTERM
//! (exit 0); the serve log holds routes and statuses, never the patient
//! ID or the invitation token. `[portal] tls` is refused (not served yet)
//! rather than silently ignored. The pages themselves are tested in
//! crates/veil-portal/tests/web.rs and, in Chromium,
//! tests/browser/test_portal.py.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_veil");
const PID: &str = "PORTAL-WEB-PID-5521";

fn veil(home: &Path, args: &[&str]) -> (i32, String) {
    veil_test::output(veil_test::veil_command(BIN, home, None).args(args))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET: (status line and headers, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

fn config(home: &Path, portal_port: u16, extra: &str) -> std::path::PathBuf {
    let dest = home.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let cfg = home.join("veil.toml");
    let text = format!(
        r#"[dicom]
port = {}
bind = "127.0.0.1"
allowed_calling_aes = ["PACS"]

[[route]]
name = "acme"
called_ae = "VEIL_ACME"
recipient = "acme"
purpose = "ai-training"
destination = "file://{}"

[portal]
listen = "127.0.0.1:{portal_port}"
public_url = "http://127.0.0.1:{portal_port}"
{extra}"#,
        free_port(),
        dest.display()
    );
    veil_io::atomic::write_all(&cfg, text.as_bytes()).unwrap();
    cfg
}

#[test]
fn issue_19_serve_starts_the_portal_and_stops_it_on_sigterm() {
    let home = veil_test::scratch("issue19-portal-web");
    veil_test::ok(veil(&home, &["init"]));
    let recipe = home.join("r.toml");
    veil_io::atomic::write_all(&recipe, b"name = \"t\"\nversion = \"1\"\n").unwrap();
    veil_test::ok(veil(
        &home,
        &[
            "recipient",
            "add",
            "acme",
            "--purpose",
            "ai-training",
            "--recipe",
            recipe.to_str().unwrap(),
            "--retention-days",
            "30",
        ],
    ));

    // TLS on the portal's listener: refused, naming the field
    let port = free_port();
    let cfg = config(
        &home,
        port,
        "tls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }\n",
    );
    let (code, out) = veil(&home, &["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("portal.tls") && out.contains("reverse proxy"),
        "{out}"
    );

    let cfg = config(&home, port, "");
    let (code, out) = veil(
        &home,
        &[
            "portal",
            "invite",
            "--patient-id",
            PID,
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let link = out
        .lines()
        .rfind(|l| l.contains("/invite/"))
        .unwrap()
        .to_string();
    let token = link.rsplit('/').next().unwrap().to_string();

    let log = home.join("serve.log");
    let mut child = veil_test::veil_command(BIN, &home, None)
        .args(["-v", "serve", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{:?}",
            std::fs::read_to_string(&log)
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the portal did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (head, body) = get(port, &format!("/invite/{token}"));
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'self'; script-src 'self'"));
    assert!(head.contains("x-content-type-options: nosniff"));
    assert!(head.contains("referrer-policy: no-referrer"));
    assert!(head.contains("cache-control: no-store"));
    assert!(head.contains("set-cookie: veil_csrf="), "{head}");
    assert!(body.contains("Set your password"));
    let (head, _) = get(port, "/");
    assert!(head.starts_with("http/1.1 303"), "{head}");
    assert!(head.contains("location: /signin"));
    let (head, body) = get(port, "/static/proof.js");
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_eq!(body, veil_ledger::PROOF_JS);

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("portal=Some(127.0.0.1:"), "{text}");
    assert!(text.contains("route=/invite/{token}"), "{text}");
    assert!(!text.contains(PID), "the serve log holds the patient ID");
    assert!(
        !text.contains(&token),
        "the serve log holds the invitation token"
    );
    // stopped: the port is closed
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
