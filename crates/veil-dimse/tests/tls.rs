//! DICOM TLS (issue 18, optional part): our SCP behind rustls with client
//! certificates required, reached by dcmtk's echoscu/storescu over TLS;
//! our SCU over TLS to storescp. Certificates are made by openssl in a
//! scratch folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use dicom_dictionary_std::uids;
use veil_dimse::{echo, status, store_files, tls, ClientTls, Peer, ScpConfig};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and two certificates it signs (server: localhost/127.0.0.1;
/// client), P-256 keys in PKCS#8 PEM.
fn make_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Veil Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, cn) in [("server", "localhost"), ("client", "veil-client")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        let ext = format!("{name}.ext");
        let mut f = veil_io::atomic::AtomicFile::create(&dir.join(&ext)).expect("ext");
        std::io::Write::write_all(
            f.writer(),
            b"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext");
        f.commit().expect("ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

fn p(dir: &Path, f: &str) -> PathBuf {
    dir.join(f)
}

#[test]
fn issue_18_dicom_tls_with_dcmtk_both_ways() {
    init_log();
    let dir = veil_test::scratch("dimse-tls");
    make_pki(&dir);
    let s = |f: &str| p(&dir, f).display().to_string();

    // our SCP over TLS, client certificates required
    let (inbox, h) = recording();
    let server = tls::server_config(
        &p(&dir, "server.crt"),
        &p(&dir, "server.key"),
        Some(&p(&dir, "ca.crt")),
    )
    .expect("server tls");
    let scp = start_scp(
        ScpConfig {
            tls: Some(server),
            ..config()
        },
        h,
    );
    let port = scp.local_addr().port().to_string();
    let (ok, out) = run(
        "echoscu",
        &[
            "+tls",
            &s("client.key"),
            &s("client.crt"),
            "+cf",
            &s("ca.crt"),
            "-aet",
            "PACS",
            "-aec",
            "VEIL",
            "127.0.0.1",
            &port,
        ],
    );
    assert!(ok, "echoscu over TLS: {out}");
    // without a client certificate: refused, and the SCP goes on
    let (ok, _) = run(
        "echoscu",
        &[
            "+tla",
            "-ic",
            "-aet",
            "PACS",
            "-aec",
            "VEIL",
            "127.0.0.1",
            &port,
        ],
    );
    assert!(!ok, "anonymous TLS must be refused");
    // in the clear: refused
    let (ok, _) = run(
        "echoscu",
        &["-aet", "PACS", "-aec", "VEIL", "127.0.0.1", &port],
    );
    assert!(!ok, "plain DICOM to a TLS SCP must fail");
    // a silent connection and a truncated ClientHello (then gone): the
    // SCP closes both and keeps serving (shutdown below would hang on a
    // spinning thread otherwise)
    let silent = std::net::TcpStream::connect(scp.local_addr()).expect("connect");
    let mut cut = std::net::TcpStream::connect(scp.local_addr()).expect("connect");
    std::io::Write::write_all(&mut cut, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .expect("write");
    drop(cut);
    // our SCU over TLS to our SCP
    let client = tls::client_config(
        &p(&dir, "ca.crt"),
        Some((&p(&dir, "client.crt"), &p(&dir, "client.key"))),
    )
    .expect("client tls");
    let mut me = Peer::new("PACS", "VEIL", &scp.local_addr().to_string());
    me.tls = Some(ClientTls {
        config: client.clone(),
        server_name: "localhost".into(),
    });
    assert_eq!(echo(&me).expect("echo over TLS"), status::SUCCESS);

    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    let f = pick(&files, uids::EXPLICIT_VR_LITTLE_ENDIAN, 2);
    let mut args = vec![
        "-xe".to_string(),
        "+tls".into(),
        s("client.key"),
        s("client.crt"),
        "+cf".into(),
        s("ca.crt"),
        "-aet".into(),
        "PACS".into(),
        "-aec".into(),
        "VEIL".into(),
        "127.0.0.1".into(),
        port.clone(),
    ];
    args.extend(f.iter().map(|(p, _)| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let (ok, out) = run("storescu", &argv);
    assert!(ok && !out.contains("E:"), "storescu over TLS: {out}");
    assert_eq!(inbox.lock().expect("inbox").len(), 2);
    drop(silent);
    let t = std::time::Instant::now();
    scp.shutdown();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );

    // our SCU over TLS to storescp (which requires our certificate)
    let in_dir = dir.join("in");
    std::fs::create_dir_all(&in_dir).expect("mkdir");
    let sport = free_port();
    let _storescp = spawn_server(
        "storescp",
        &[
            "+tls",
            &s("server.key"),
            &s("server.crt"),
            "+cf",
            &s("ca.crt"),
            "-aet",
            "RECIP",
            "+B",
            "-od",
            in_dir.to_str().expect("utf8"),
            "-uf",
            &sport.to_string(),
        ],
        sport,
        &dir,
    );
    let mut recip = Peer::new("VEIL", "RECIP", &format!("127.0.0.1:{sport}"));
    recip.tls = Some(ClientTls {
        config: client,
        server_name: "localhost".into(),
    });
    let paths: Vec<PathBuf> = f.iter().map(|(p, _)| p.clone()).collect();
    let out = store_files(&recip, &paths).expect("store over TLS");
    assert!(
        out.iter().all(|o| o.result == Ok(status::SUCCESS)),
        "{out:?}"
    );
    let written = veil_test::files(&in_dir);
    assert_eq!(written.len(), 2);
    for (path, info) in &f {
        let w = written
            .iter()
            .find(|w| w.to_string_lossy().contains(&info.sop_instance))
            .expect("written");
        assert!(
            dataset_bytes(w) == dataset_bytes(path),
            "data set over TLS differs"
        );
    }
}
