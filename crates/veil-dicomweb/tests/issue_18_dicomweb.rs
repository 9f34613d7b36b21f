//! Issue 18, the DICOMweb side of `veil serve`, against real peers:
//! Debian's Orthanc with its DICOMweb plugin (sending to Veil with its own
//! STOW-RS client, and receiving Veil's) and curl with hand-built
//! multipart bodies (for what Orthanc will not send: bad tokens, broken
//! parts, oversized bodies). Real corpus files throughout.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use veil_dicomweb::{
    generate_token, meta, Background, ClientError, FailureReason, Metrics, NewToken,
    ReceivedInstance, ServerConfig, StowClient, StowResponse, Tokens,
};
use veil_test::peers::Orthanc;

/// Corpus files with distinct SOP Instance UIDs and different kinds:
/// CT, MR, RT Plan (no pixels), JPEG lossy.
const PICKS: [&str; 4] = [
    "pydicom__data__test_files__CT_small.dcm",
    "pydicom__data__test_files__MR_small.dcm",
    "pydicom__data__test_files__rtplan.dcm",
    "pydicom__data__test_files__JPEG-lossy.dcm",
];

fn corpus_files() -> Option<Vec<PathBuf>> {
    let corpus = veil_test::corpus()?;
    let all = veil_test::files(&corpus);
    let picked: Vec<PathBuf> = PICKS
        .iter()
        .map(|name| {
            all.iter()
                .find(|p| p.file_name().is_some_and(|f| f == *name))
                .unwrap_or_else(|| panic!("corpus file {name}"))
                .clone()
        })
        .collect();
    let mut uids: Vec<String> = picked
        .iter()
        .map(|p| {
            meta::read(&std::fs::read(p).unwrap())
                .unwrap()
                .sop_instance_uid
        })
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(
        uids.len(),
        PICKS.len(),
        "picked files must be distinct instances"
    );
    Some(picked)
}

/// The data set of a PS3.10 file (after its File Meta, which a peer may
/// rewrite), with its SOP Instance UID.
fn dataset(bytes: &[u8]) -> (String, Vec<u8>) {
    let m = meta::read(bytes).expect("a PS3.10 file");
    (
        m.sop_instance_uid.clone(),
        bytes[m.dataset_offset..].to_vec(),
    )
}

fn datasets_of_files(files: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = files
        .iter()
        .map(|p| dataset(&std::fs::read(p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Received instances, per route, as the sink saw them.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Gateway {
    server: Background,
    received: Received,
    metrics: Arc<Metrics>,
    token: NewToken,
}

fn gateway(tweak: impl FnOnce(&mut ServerConfig)) -> Gateway {
    gateway_with_sink(tweak, |_, _| Ok(()))
}

fn gateway_with_sink(
    tweak: impl FnOnce(&mut ServerConfig),
    decide: impl Fn(&str, &ReceivedInstance) -> Result<(), FailureReason> + Send + Sync + 'static,
) -> Gateway {
    let token = generate_token().unwrap();
    let mut config = ServerConfig::new(
        vec!["acme".into(), "beta".into()],
        Tokens::new(vec![token.hash.clone()]),
    );
    tweak(&mut config);
    let received: Received = Arc::default();
    let sink_received = received.clone();
    let metrics = Arc::new(Metrics::new());
    let server = Background::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        config,
        Arc::new(move |route: &str, i: ReceivedInstance| {
            decide(route, &i)?;
            sink_received
                .lock()
                .unwrap()
                .push((route.to_string(), i.bytes));
            Ok(())
        }),
        metrics.clone(),
    )
    .unwrap();
    Gateway {
        server,
        received,
        metrics,
        token,
    }
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }
}

/// A multipart/related body with the given parts (each with its own
/// Content-Type), as any STOW-RS client would build it.
fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "7d3a1f0c-veil-test";
    let mut body = Vec::new();
    for (ct, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

/// curl as a peer: (status, body).
fn curl(method: &str, url: &str, headers: &[String], body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let dir = veil_test::scratch(&format!("dicomweb-curl-{}", rand_suffix()));
    let out_file = dir.join("out");
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "60", "-X", method, "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}"]);
    for h in headers {
        c.args(["-H", h]);
    }
    if body.is_some() {
        c.args(["--data-binary", "@-"]);
    }
    c.arg(url).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().expect("curl");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(b) = body {
        // The server may answer (401, 413) before reading it all.
        let _ = stdin.write_all(b);
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let body = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (code, body)
}

fn rand_suffix() -> String {
    generate_token().unwrap().token[5..17].to_string()
}

fn post_stow(
    g: &Gateway,
    path: &str,
    token: Option<&str>,
    extra: &[String],
    ct: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut headers = vec![format!("Content-Type: {ct}")];
    if let Some(t) = token {
        headers.push(format!("Authorization: Bearer {t}"));
    }
    headers.extend_from_slice(extra);
    curl("POST", &g.url(path), &headers, Some(body))
}

/// Outbound: Veil's STOW-RS client sends four real files (CT, MR, RT Plan,
/// JPEG lossy) in one request to Orthanc's `/dicom-web/studies`, with a
/// bearer token read from a 0600 file; Orthanc then holds exactly those
/// instances, data sets byte-identical to the sources. The same holds
/// when streaming from the files (`store_files`) to a second Orthanc; a
/// file that cannot be read is named by position, and a peer that is gone
/// is a transport error.
#[test]
fn issue_18_stow_client_delivers_to_orthanc() {
    let Some(files) = corpus_files() else {
        return;
    };
    let dir = veil_test::scratch("dicomweb-out");
    let recipient = Orthanc::start(&dir.join("recipient"), "RECIP", &[]);
    let token_file = dir.join("token");
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .unwrap()
            .write_all(b"any-token\n")
            .unwrap();
    }
    let client = StowClient::new(
        &format!("dicomweb+{}/dicom-web/", recipient.url()),
        Some(&token_file),
        Duration::from_secs(60),
    )
    .unwrap();
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    assert_eq!(client.store(&refs).unwrap(), files.len());
    let mut held: Vec<_> = recipient
        .instances()
        .iter()
        .map(|id| dataset(&recipient.instance_file(id)))
        .collect();
    held.sort();
    assert_eq!(held.len(), files.len());
    assert!(
        held == datasets_of_files(&files),
        "Orthanc holds other data sets than were sent"
    );
    // Sending again is accepted (Orthanc keeps one copy of each).
    assert_eq!(client.store(&refs[..1]).unwrap(), 1);
    assert_eq!(recipient.instances().len(), files.len());
    drop(recipient);

    // The same, streamed from the files (the spool's way).
    let streamed = Orthanc::start(&dir.join("streamed"), "STREAMED", &[]);
    let client = StowClient::new(
        &format!("dicomweb+{}/dicom-web", streamed.url()),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    assert_eq!(client.store_files(&paths).unwrap(), files.len());
    let mut held: Vec<_> = streamed
        .instances()
        .iter()
        .map(|id| dataset(&streamed.instance_file(id)))
        .collect();
    held.sort();
    assert!(
        held == datasets_of_files(&files),
        "streamed: Orthanc holds other data sets"
    );
    let missing = dir.join("no-such-file");
    assert!(matches!(
        client.store_files(&[paths[0], &missing]),
        Err(ClientError::Read { index: 1, .. })
    ));
    drop(streamed);
    // A peer that is gone is a transport error, not a success.
    let gone = StowClient::new(
        &format!(
            "dicomweb+http://127.0.0.1:{}/x",
            veil_test::peers::free_port()
        ),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(
        gone.store(&refs[..1]),
        Err(ClientError::Transport(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Outbound, refusals: against a Veil server whose sink refuses one
/// instance, the client reports exactly that position with its reason
/// code (from the peer's FailedSOPSequence), and a wrong token is an
/// HTTP 401, never a success.
#[test]
fn issue_18_stow_client_reports_refusals() {
    let Some(files) = corpus_files() else {
        return;
    };
    let refused_uid = meta::read(&std::fs::read(&files[2]).unwrap())
        .unwrap()
        .sop_instance_uid;
    let g = gateway_with_sink(
        |_| {},
        move |_, i| {
            if i.meta.sop_instance_uid == refused_uid {
                Err(FailureReason::SopClassNotSupported)
            } else {
                Ok(())
            }
        },
    );
    let dir = veil_test::scratch("dicomweb-refusals");
    let write_token = |name: &str, token: &str| -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let p = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap()
            .write_all(token.as_bytes())
            .unwrap();
        p
    };
    let good = write_token("good", &g.token.token);
    let bad = write_token("bad", &generate_token().unwrap().token);
    let base = format!("dicomweb+{}", g.url("/routes/acme/dicom-web"));
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let client = StowClient::new(&base, Some(&good), Duration::from_secs(30)).unwrap();
    match client.store(&refs) {
        Err(ClientError::Incomplete {
            status,
            failed,
            missing,
        }) => {
            assert_eq!(status, 202);
            assert_eq!(failed, vec![(2, FailureReason::SopClassNotSupported)]);
            assert!(missing.is_empty());
        }
        other => panic!("expected a partial refusal, got {other:?}"),
    }
    assert_eq!(g.received.lock().unwrap().len(), files.len() - 1);
    let intruder = StowClient::new(&base, Some(&bad), Duration::from_secs(30)).unwrap();
    assert!(matches!(
        intruder.store(&refs),
        Err(ClientError::Status { status: 401 })
    ));
    assert_eq!(g.received.lock().unwrap().len(), files.len() - 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Inbound: Orthanc pushes a PACS's studies to Veil with its own DICOMweb
/// client (`POST /dicom-web/servers/veil/stow`), authenticating with the
/// bearer token in the server's `HttpHeaders`. Veil's sink receives
/// exactly the instances, data sets byte-identical to the sources, on the
/// route named in the URL; metrics count them. The same push configured
/// with a wrong token fails in Orthanc and hands nothing to the sink.
#[test]
fn issue_18_orthanc_pushes_stow_to_veil() {
    let Some(files) = corpus_files() else {
        return;
    };
    let g = gateway(|_| {});
    let wrong = generate_token().unwrap();
    let servers = format!(
        r#""Servers": {{
    "veil": {{ "Url": "{}", "HttpHeaders": {{ "Authorization": "Bearer {}" }} }},
    "intruder": {{ "Url": "{}", "HttpHeaders": {{ "Authorization": "Bearer {}" }} }}
  }}"#,
        g.url("/routes/acme/dicom-web/"),
        g.token.token,
        g.url("/routes/acme/dicom-web/"),
        wrong.token,
    );
    let dir = veil_test::scratch("dicomweb-in");
    let pacs = Orthanc::start_with(&dir.join("pacs"), "PACS", &[], &servers);
    for f in &files {
        pacs.upload(f);
    }
    let studies = pacs.studies();
    let resources = format!(
        "{{\"Resources\": [{}]}}",
        studies
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(pacs
        .try_post("/dicom-web/servers/intruder/stow", resources.as_bytes())
        .is_err());
    assert!(g.received.lock().unwrap().is_empty());
    pacs.post("/dicom-web/servers/veil/stow", resources.as_bytes());
    let got = g.received.lock().unwrap().clone();
    assert!(got.iter().all(|(route, _)| route == "acme"));
    let mut got: Vec<_> = got.iter().map(|(_, b)| dataset(b)).collect();
    got.sort();
    assert_eq!(got.len(), files.len());
    assert!(
        got == datasets_of_files(&files),
        "Veil received other data sets than were sent"
    );
    let text = g.metrics.encode();
    assert!(
        text.contains(&format!(
            "veil_instances_received_total{{route=\"acme\"}} {}",
            files.len()
        )),
        "{text}"
    );
    assert!(text.contains("veil_auth_failures_total 1"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Authentication and refusals with curl as the peer: no token and a
/// wrong token are 401 and reach no sink; the route comes from the path
/// or the `X-Veil-Route` header, an unknown one is 404; a non-DICOM part
/// is a FailedSOPSequence entry (C000H) while the DICOM part beside it is
/// stored (202); only bad parts is 409; a non-multipart body is 415; an
/// oversized body is 413 and stores nothing; /healthz is open; /metrics
/// needs the token and parses as Prometheus text counting all of it; a
/// 3 MiB body within the configured limits is not cut by a framework
/// default.
#[test]
fn issue_18_stow_auth_failures_limits_metrics() {
    let Some(files) = corpus_files() else {
        return;
    };
    let ct = std::fs::read(&files[0]).unwrap();
    let mr = std::fs::read(&files[1]).unwrap();
    let max = (ct.len() + mr.len() + 4096) as u64;
    let g = gateway(|c| c.max_request_bytes = max);
    let tok = g.token.token.clone();
    let (ctype, body) = multipart(&[("application/dicom", &ct)]);
    let path = "/routes/acme/dicom-web/studies";

    assert_eq!(post_stow(&g, path, None, &[], &ctype, &body).0, 401);
    let wrong = generate_token().unwrap().token;
    assert_eq!(post_stow(&g, path, Some(&wrong), &[], &ctype, &body).0, 401);
    assert_eq!(
        post_stow(
            &g,
            "/dicom-web/studies",
            Some(&wrong),
            &["X-Veil-Route: acme".into()],
            &ctype,
            &body
        )
        .0,
        401
    );
    assert!(g.received.lock().unwrap().is_empty());

    assert_eq!(
        post_stow(
            &g,
            "/routes/nope/dicom-web/studies",
            Some(&tok),
            &[],
            &ctype,
            &body
        )
        .0,
        404
    );
    assert_eq!(
        post_stow(&g, "/dicom-web/studies", Some(&tok), &[], &ctype, &body).0,
        404
    );

    let (status, answer) = post_stow(&g, path, Some(&tok), &[], &ctype, &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let r = StowResponse::from_json(&answer).unwrap();
    assert_eq!(r.referenced.len(), 1);
    assert_eq!(
        r.referenced[0].instance_uid,
        meta::read(&ct).unwrap().sop_instance_uid
    );
    assert_eq!(
        r.referenced[0].class_uid,
        meta::read(&ct).unwrap().sop_class_uid
    );

    let (status, _) = post_stow(
        &g,
        "/dicom-web/studies",
        Some(&tok),
        &["X-Veil-Route: beta".into()],
        &ctype,
        &body,
    );
    assert_eq!(status, 200);

    let junk = b"this is a report, not an image".to_vec();
    let (ctype2, mixed) = multipart(&[
        ("application/dicom", &junk),
        ("application/dicom", &mr),
        ("text/plain", b"hello"),
    ]);
    let (status, answer) = post_stow(&g, path, Some(&tok), &[], &ctype2, &mixed);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let r = StowResponse::from_json(&answer).unwrap();
    assert_eq!(r.referenced.len(), 1);
    assert_eq!(
        r.referenced[0].instance_uid,
        meta::read(&mr).unwrap().sop_instance_uid
    );
    assert_eq!(r.failed.len(), 2);
    assert!(r
        .failed
        .iter()
        .all(|(_, why)| *why == FailureReason::CannotUnderstand));

    let (ctype3, only_junk) = multipart(&[("application/dicom", &junk)]);
    assert_eq!(
        post_stow(&g, path, Some(&tok), &[], &ctype3, &only_junk).0,
        409
    );
    assert_eq!(
        post_stow(&g, path, Some(&tok), &[], "application/dicom", &ct).0,
        415
    );
    assert_eq!(
        post_stow(
            &g,
            path,
            Some(&tok),
            &[],
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            &body
        )
        .0,
        415
    );
    let (_, broken) = multipart(&[("application/dicom", &ct)]);
    assert_eq!(
        post_stow(
            &g,
            path,
            Some(&tok),
            &[],
            "multipart/related; boundary=other",
            &broken
        )
        .0,
        400
    );

    let before = g.received.lock().unwrap().len();
    let big = vec![0u8; max as usize + 1];
    let (ctype4, oversized) = multipart(&[("application/dicom", &big)]);
    assert_eq!(
        post_stow(&g, path, Some(&tok), &[], &ctype4, &oversized).0,
        413
    );
    // Without a Content-Length (chunked), the limit holds while reading.
    let (status, _) = post_stow(
        &g,
        path,
        Some(&tok),
        &["Transfer-Encoding: chunked".into()],
        &ctype4,
        &oversized,
    );
    assert_eq!(status, 413);
    assert_eq!(g.received.lock().unwrap().len(), before);
    assert_eq!(before, 3);

    let (status, ok) = curl("GET", &g.url("/healthz"), &[], None);
    assert_eq!((status, ok.as_slice()), (200, b"ok\n".as_slice()));
    assert_eq!(curl("GET", &g.url("/metrics"), &[], None).0, 401);
    let (status, text) = curl(
        "GET",
        &g.url("/metrics"),
        &[format!("Authorization: Bearer {tok}")],
        None,
    );
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    check_exposition(&text);
    for line in [
        "veil_instances_received_total{route=\"acme\"} 2",
        "veil_instances_received_total{route=\"beta\"} 1",
        "veil_instances_failed_total{route=\"acme\",reason=\"cannot_understand\"} 3",
        "veil_auth_failures_total 4",
        "veil_http_requests_total{endpoint=\"stow\",code=\"202\"} 1",
        "veil_http_requests_total{endpoint=\"stow\",code=\"413\"} 2",
        "veil_http_requests_total{endpoint=\"healthz\",code=\"200\"} 1",
        "veil_stow_request_seconds_count 4",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    let open = gateway(|c| c.metrics_open = true);
    assert_eq!(curl("GET", &open.url("/metrics"), &[], None).0, 200);
    // No hidden framework limit (axum's 2 MB default applies to buffered
    // extractors, not to this streamed body): 3 MiB within the configured
    // limits is read and judged part by part.
    let large = vec![7u8; 3 << 20];
    let (ctype5, body5) = multipart(&[("application/dicom", &large), ("application/dicom", &ct)]);
    let open_tok = open.token.token.clone();
    let (status, answer) = post_stow(&open, path, Some(&open_tok), &[], &ctype5, &body5);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(open.received.lock().unwrap().len(), 1);
}

/// Every line of the exposition is a HELP/TYPE/UNIT comment, the EOF
/// marker, or `name{labels} value`; every family is typed.
fn check_exposition(text: &str) {
    let sample = regex::Regex::new(
        r#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? ([-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$"#,
    )
    .unwrap();
    let comment = regex::Regex::new(r"^# (HELP|TYPE|UNIT) [a-zA-Z_:][a-zA-Z0-9_:]* .*$").unwrap();
    assert_eq!(text.lines().last(), Some("# EOF"));
    let mut types = 0;
    for line in text.lines().filter(|l| *l != "# EOF") {
        assert!(
            sample.is_match(line) || comment.is_match(line),
            "bad line: {line}"
        );
        types += usize::from(line.starts_with("# TYPE "));
    }
    assert!(types >= 12, "{text}");
}

/// Graceful shutdown: a request whose instance is still being stored when
/// shutdown is asked for completes with 200 and its instance stored; an
/// idle connection does not delay shutdown; the server then accepts no
/// more connections.
#[test]
fn issue_18_shutdown_finishes_in_flight_requests() {
    let Some(files) = corpus_files() else {
        return;
    };
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let g = gateway_with_sink(
        |_| {},
        move |_, _| {
            let _ = entered_tx.lock().unwrap().send(());
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        },
    );
    let addr = g.server.local_addr();
    let url = g.url("/routes/acme/dicom-web/studies");
    let tok = g.token.token.clone();
    let ct = std::fs::read(&files[0]).unwrap();
    let in_flight = std::thread::spawn(move || {
        let (ctype, body) = multipart(&[("application/dicom", &ct)]);
        curl(
            "POST",
            &url,
            &[
                format!("Content-Type: {ctype}"),
                format!("Authorization: Bearer {tok}"),
            ],
            Some(&body),
        )
    });
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // A connection that never sends a request does not hold shutdown up.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    let Gateway {
        server, received, ..
    } = g;
    let asked = std::time::Instant::now();
    server.shutdown().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    let (status, answer) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(received.lock().unwrap().len(), 1);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}

/// Senders that would exhaust the server: with one request slot, a second
/// STOW-RS request while the first is being stored is 503 with
/// `Retry-After` (the first still completes); a body that stalls past the
/// idle timeout is 408. Neither hands anything to the sink.
#[test]
fn issue_18_busy_and_stalled_senders_are_refused() {
    use std::io::Read;
    let Some(files) = corpus_files() else {
        return;
    };
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let g = gateway_with_sink(
        |c| {
            c.max_concurrent_requests = 1;
            c.idle_timeout = Duration::from_millis(500);
        },
        move |_, _| {
            let _ = entered_tx.lock().unwrap().send(());
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        },
    );
    let url = g.url("/routes/acme/dicom-web/studies");
    let tok = g.token.token.clone();
    let ct = std::fs::read(&files[0]).unwrap();
    let (ctype, body) = multipart(&[("application/dicom", &ct)]);
    let headers = vec![
        format!("Content-Type: {ctype}"),
        format!("Authorization: Bearer {tok}"),
    ];
    let first = {
        let (url, headers, body) = (url.clone(), headers.clone(), body.clone());
        std::thread::spawn(move || curl("POST", &url, &headers, Some(&body)))
    };
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(curl("POST", &url, &headers, Some(&body)).0, 503);
    assert_eq!(first.join().unwrap().0, 200);

    let mut stream = std::net::TcpStream::connect(g.server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /routes/acme/dicom-web/studies HTTP/1.1\r\nHost: veil\r\n\
         Authorization: Bearer {tok}\r\nContent-Type: {ctype}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(g.received.lock().unwrap().len(), 1);
    let text = g.metrics.encode();
    assert!(text.contains("veil_http_requests_total{endpoint=\"stow\",code=\"503\"} 1"));
    assert!(text.contains("veil_http_requests_total{endpoint=\"stow\",code=\"408\"} 1"));
}

/// A token scoped to route `acme` stores there (path or header routing)
/// and gets 403 on route `beta`, handing nothing to the sink; it still
/// reads /metrics.
#[test]
fn issue_18_scoped_token_stays_on_its_route() {
    let Some(files) = corpus_files() else {
        return;
    };
    let scoped = generate_token().unwrap();
    let hash = scoped.hash.clone();
    let g = gateway(move |c| {
        c.tokens = veil_dicomweb::Tokens::scoped(vec![veil_dicomweb::TokenEntry {
            hash,
            routes: Some(vec!["acme".into()]),
        }])
    });
    let ct = std::fs::read(&files[0]).unwrap();
    let (ctype, body) = multipart(&[("application/dicom", &ct)]);
    let tok = Some(scoped.token.as_str());
    let beta = "/routes/beta/dicom-web/studies";
    assert_eq!(post_stow(&g, beta, tok, &[], &ctype, &body).0, 403);
    let by_header = ["X-Veil-Route: beta".to_string()];
    assert_eq!(
        post_stow(&g, "/dicom-web/studies", tok, &by_header, &ctype, &body).0,
        403
    );
    assert!(g.received.lock().unwrap().is_empty());
    // The server's own token (unscoped) is no longer accepted: only the
    // configured list counts.
    let other = Some(g.token.token.as_str());
    assert_eq!(post_stow(&g, beta, other, &[], &ctype, &body).0, 401);
    let acme = "/routes/acme/dicom-web/studies";
    assert_eq!(post_stow(&g, acme, tok, &[], &ctype, &body).0, 200);
    assert_eq!(g.received.lock().unwrap().len(), 1);
    let auth = [format!("Authorization: Bearer {}", scoped.token)];
    assert_eq!(curl("GET", &g.url("/metrics"), &auth, None).0, 200);
}

/// The corpus's RT Plan has a File Meta SOP Instance UID that differs from
/// its data set's: the server hands the sink (and references in its
/// response) the data set's, which is what peers such as Orthanc report.
#[test]
fn issue_18_response_names_the_data_sets_uids() {
    let Some(files) = corpus_files() else {
        return;
    };
    let plan = std::fs::read(&files[2]).unwrap();
    let file_meta = meta::read(&plan).unwrap();
    let (class, instance) = meta::dataset_uids(&plan).unwrap();
    assert_ne!(
        instance, file_meta.sop_instance_uid,
        "the corpus file changed"
    );
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen_in = seen.clone();
    let g = gateway_with_sink(
        |_| {},
        move |_, i| {
            seen_in
                .lock()
                .unwrap()
                .push((i.sop_class_uid.clone(), i.sop_instance_uid.clone()));
            Ok(())
        },
    );
    let (ctype, body) = multipart(&[("application/dicom", &plan)]);
    let tok = Some(g.token.token.as_str());
    let (status, answer) = post_stow(
        &g,
        "/routes/acme/dicom-web/studies",
        tok,
        &[],
        &ctype,
        &body,
    );
    assert_eq!(status, 200);
    let r = StowResponse::from_json(&answer).unwrap();
    assert_eq!(r.referenced[0].instance_uid, instance);
    assert_eq!(r.referenced[0].class_uid, class);
    assert_eq!(*seen.lock().unwrap(), vec![(class, instance)]);
}
