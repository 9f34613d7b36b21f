//! veil-dimse against real dcmtk peers on loopback (issue 18): echoscu,
//! storescu, storescp. Each peer is started with its files in a scratch
//! folder and killed by PID.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use dicom_dictionary_std::uids;
use veil_dimse::{echo, status, store_files, DimseError, Peer, ScpConfig, Undeliverable};

#[test]
fn issue_18_echo_scp_answers_echoscu_and_echo_scu_reaches_storescp() {
    init_log();
    let (_inbox, h) = recording();
    let scp = start_scp(config(), h);
    let port = scp.local_addr().port().to_string();
    let (ok, out) = run(
        "echoscu",
        &["-aet", "PACS", "-aec", "VEIL", "127.0.0.1", &port],
    );
    assert!(ok, "echoscu against our SCP failed: {out}");
    // the second route's AE answers too
    let (ok, out) = run(
        "echoscu",
        &["-aet", "PACS", "-aec", "VEIL_B", "127.0.0.1", &port],
    );
    assert!(ok, "echoscu to the second called AE failed: {out}");
    // our SCU against our SCP and against storescp
    let me = Peer::new("PACS", "VEIL", &scp.local_addr().to_string());
    assert_eq!(echo(&me).expect("echo own scp"), status::SUCCESS);
    let dir = veil_test::scratch("dimse-echo");
    let sport = free_port();
    let _storescp = spawn_server(
        "storescp",
        &["-aet", "RECIP", &sport.to_string()],
        sport,
        &dir,
    );
    let recip = Peer::new("VEIL", "RECIP", &format!("127.0.0.1:{sport}"));
    assert_eq!(echo(&recip).expect("echo storescp"), status::SUCCESS);
    scp.shutdown();
}

#[test]
fn issue_18_calling_ae_allow_list_and_called_ae_set_reject_at_association() {
    init_log();
    let (_inbox, h) = recording();
    let scp = start_scp(config(), h);
    let addr = scp.local_addr().to_string();
    let port = scp.local_addr().port().to_string();
    // unknown calling AE: rejected, with the calling-AE reason
    let err = echo(&Peer::new("EVIL", "VEIL", &addr)).expect_err("unknown AE must be rejected");
    match &err {
        DimseError::Rejected { reason, .. } => {
            assert!(reason.contains("CallingAETitleNotRecognized"), "{reason}")
        }
        other => panic!("expected a rejection, got {other}"),
    }
    let (ok, out) = run(
        "echoscu",
        &["-aet", "EVIL", "-aec", "VEIL", "127.0.0.1", &port],
    );
    assert!(!ok && out.contains("Rejected"), "echoscu from EVIL: {out}");
    // unknown called AE: rejected with the called-AE reason
    let err = echo(&Peer::new("PACS", "NOROUTE", &addr)).expect_err("unknown called AE");
    match &err {
        DimseError::Rejected { reason, .. } => {
            assert!(reason.contains("CalledAETitleNotRecognized"), "{reason}")
        }
        other => panic!("expected a rejection, got {other}"),
    }
    scp.shutdown();

    // empty allow-list refuses all
    let (_inbox, h) = recording();
    let none = start_scp(
        ScpConfig {
            allowed_calling_aes: vec![],
            ..config()
        },
        h,
    );
    let err = echo(&Peer::new("PACS", "VEIL", &none.local_addr().to_string()));
    assert!(matches!(err, Err(DimseError::Rejected { .. })), "{err:?}");
    none.shutdown();

    // "*" allows anyone
    let (_inbox, h) = recording();
    let any = start_scp(
        ScpConfig {
            allowed_calling_aes: vec!["*".into()],
            ..config()
        },
        h,
    );
    let st = echo(&Peer::new("ANYONE", "VEIL", &any.local_addr().to_string())).expect("* allows");
    assert_eq!(st, status::SUCCESS);
    any.shutdown();
}

#[test]
fn issue_18_storescu_to_scp_delivers_byte_identical_data_sets() {
    init_log();
    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    // one of each kind of encoding, each sent with the storescu option
    // that proposes it (storescu proposes only uncompressed by default)
    let groups = [
        (uids::EXPLICIT_VR_LITTLE_ENDIAN, 3, "-xe"),
        (uids::IMPLICIT_VR_LITTLE_ENDIAN, 2, "-xi"),
        (uids::JPEG_BASELINE8_BIT, 1, "-xy"),
        (uids::JPEG2000_LOSSLESS, 1, "-xv"),
    ];
    let (inbox, h) = recording();
    // a small maximum PDU: storescu must fragment every data set
    let scp = start_scp(
        ScpConfig {
            max_pdu_length: 16384,
            ..config()
        },
        h,
    );
    let port = scp.local_addr().port().to_string();
    // the cross-check: storescp (+B, bit preserving) receives the same
    // storescu sends, so what our handler got can be compared with what
    // went over the wire even where storescu re-encodes the file (dcmtk
    // re-serializes data sets it reads)
    let dir = veil_test::scratch("dimse-storescu");
    let ref_dir = dir.join("ref");
    std::fs::create_dir_all(&ref_dir).expect("mkdir");
    let ref_port = free_port();
    let _storescp = spawn_server(
        "storescp",
        &[
            "-aet",
            "VEIL_B",
            "+xa",
            "+B",
            "-od",
            ref_dir.to_str().expect("utf8"),
            "-uf",
            &ref_port.to_string(),
        ],
        ref_port,
        &dir,
    );
    let ref_port = ref_port.to_string();
    let mut chosen: Vec<(PathBuf, veil_dimse::Part10Info)> = Vec::new();
    for (ts, n, flag) in groups {
        let got = pick(&files, ts, n);
        assert!(!got.is_empty(), "corpus has no file in {ts}");
        let mut args: Vec<String> = [flag, "-aet", "PACS", "-aec", "VEIL_B", "127.0.0.1", &port]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(got.iter().map(|(p, _)| p.display().to_string()));
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (ok, out) = run("storescu", &argv);
        assert!(ok && !out.contains("E:"), "storescu {flag} failed: {out}");
        let argv: Vec<&str> = argv
            .iter()
            .map(|a| if *a == port { ref_port.as_str() } else { a })
            .collect();
        let (ok, out) = run("storescu", &argv);
        assert!(
            ok && !out.contains("E:"),
            "storescu {flag} to storescp failed: {out}"
        );
        chosen.extend(got);
    }
    scp.shutdown();
    let got = inbox.lock().expect("inbox").clone();
    assert_eq!(got.len(), chosen.len(), "every instance handed over once");
    let mut multi = 0;
    let mut same_as_file = 0;
    for (path, info) in &chosen {
        let r = got
            .iter()
            .find(|r| r.req.sop_instance_uid == info.sop_instance)
            .expect("instance received");
        assert_eq!(r.req.calling_ae, "PACS");
        assert_eq!(r.req.called_ae, "VEIL_B");
        assert_eq!(r.req.sop_class_uid, info.sop_class);
        assert_eq!(
            r.req.transfer_syntax_uid, info.ts,
            "received in the file's own syntax"
        );
        let wire = veil_test::files(&ref_dir)
            .into_iter()
            .find(|w| w.to_string_lossy().contains(&info.sop_instance))
            .expect("storescp got it too");
        let want = dataset_bytes(&wire);
        if want.len() > 16384 {
            multi += 1;
        }
        assert!(
            r.bytes == want,
            "data set of {} differs from the wire ({} vs {} bytes)",
            path.display(),
            r.bytes.len(),
            want.len()
        );
        if r.bytes == dataset_bytes(path) {
            same_as_file += 1;
        }
    }
    assert!(
        multi >= 3,
        "only {multi} data sets needed several fragments"
    );
    // storescu re-encodes some files (e.g. explicit sequence lengths);
    // most arrive exactly as stored
    assert!(
        same_as_file * 2 > chosen.len(),
        "{same_as_file} of {} equal to the file",
        chosen.len()
    );
}

#[test]
fn issue_18_store_scu_to_storescp_byte_identical_with_small_peer_pdu() {
    init_log();
    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    let mut chosen = pick(&files, uids::EXPLICIT_VR_LITTLE_ENDIAN, 3);
    chosen.extend(pick(&files, uids::IMPLICIT_VR_LITTLE_ENDIAN, 1));
    chosen.extend(pick(&files, uids::JPEG_BASELINE8_BIT, 1));
    chosen.extend(pick(&files, uids::JPEG2000_LOSSLESS, 1));
    assert_eq!(chosen.len(), 6);
    let dir = veil_test::scratch("dimse-storescp");
    let out_dir = dir.join("in");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let port = free_port();
    // +xa: accept every syntax; --max-pdu 4096: our SCU must fragment to it
    // (dcmtk refuses larger PDUs); -uf: name files by SOP instance UID
    let _scp = spawn_server(
        "storescp",
        &[
            "-aet",
            "RECIP",
            "+xa",
            "+B",
            "--max-pdu",
            "4096",
            "-od",
            out_dir.to_str().expect("utf8"),
            "-uf",
            &port.to_string(),
        ],
        port,
        &dir,
    );
    let peer = Peer::new("VEIL", "RECIP", &format!("127.0.0.1:{port}"));
    let paths: Vec<PathBuf> = chosen.iter().map(|(p, _)| p.clone()).collect();
    let outcomes = store_files(&peer, &paths).expect("associate");
    assert_eq!(outcomes.len(), paths.len());
    for o in &outcomes {
        assert_eq!(o.result, Ok(status::SUCCESS), "{}", o.path.display());
        assert!(!o.transcoded);
    }
    // storescp wrote each instance; its data set equals the source's
    let written = veil_test::files(&out_dir);
    assert_eq!(written.len(), chosen.len(), "{written:?}");
    for (path, info) in &chosen {
        let w = written
            .iter()
            .find(|w| {
                w.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(&info.sop_instance))
            })
            .unwrap_or_else(|| panic!("storescp did not write {}", path.display()));
        let winfo = veil_dimse::read_part10_info(w).expect("written file");
        assert_eq!(winfo.ts, info.ts);
        assert!(
            dataset_bytes(w) == dataset_bytes(path),
            "data set of {} differs",
            path.display()
        );
    }
}

#[test]
fn issue_18_store_scu_falls_back_to_uncompressed_and_refuses_to_decompress() {
    init_log();
    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    let explicit = pick(&files, uids::EXPLICIT_VR_LITTLE_ENDIAN, 1);
    let jpeg = pick(&files, uids::JPEG_BASELINE8_BIT, 1);
    let dir = veil_test::scratch("dimse-fallback");
    let out_dir = dir.join("in");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let port = free_port();
    // +xi: this storescp accepts implicit VR little endian only
    let _scp = spawn_server(
        "storescp",
        &[
            "-aet",
            "RECIP",
            "+xi",
            "-od",
            out_dir.to_str().expect("utf8"),
            "-uf",
            &port.to_string(),
        ],
        port,
        &dir,
    );
    let peer = Peer::new("VEIL", "RECIP", &format!("127.0.0.1:{port}"));
    let paths = vec![explicit[0].0.clone(), jpeg[0].0.clone()];
    let outcomes = store_files(&peer, &paths).expect("associate");
    // explicit VR LE re-encoded as implicit VR LE (headers only)
    assert_eq!(outcomes[0].result, Ok(status::SUCCESS));
    assert!(outcomes[0].transcoded);
    // JPEG is not decompressed to be delivered: a clear reason instead
    match &outcomes[1].result {
        Err(Undeliverable::NeedsTranscode { file_ts, accepted }) => {
            assert_eq!(file_ts, uids::JPEG_BASELINE8_BIT);
            assert_eq!(accepted, uids::IMPLICIT_VR_LITTLE_ENDIAN);
        }
        other => panic!("expected NeedsTranscode, got {other:?}"),
    }
    let written = veil_test::files(&out_dir);
    assert_eq!(written.len(), 1);
    let winfo = veil_dimse::read_part10_info(&written[0]).expect("written");
    assert_eq!(winfo.ts, uids::IMPLICIT_VR_LITTLE_ENDIAN);
    assert_eq!(winfo.sop_instance, explicit[0].1.sop_instance);
    // same elements and values: only the encoding changed
    let a = dicom_object::open_file(&explicit[0].0).expect("source");
    let b = dicom_object::open_file(&written[0]).expect("written");
    let pa = a
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .expect("pixels")
        .to_bytes()
        .expect("bytes")
        .to_vec();
    let pb = b
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .expect("pixels")
        .to_bytes()
        .expect("bytes")
        .to_vec();
    assert!(pa == pb, "pixel data unchanged");
    assert_eq!(
        a.iter().count(),
        b.iter().count(),
        "same number of elements"
    );
    let _ = Arc::new(());
}
