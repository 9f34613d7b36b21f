//! The SCP under bad peers, limits, shutdown and handler outcomes
//! (issue 18). Bad peers write raw bytes on a socket; after each, a good
//! association (dcmtk's echoscu/storescu, or our SCU) must still work.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dicom_dictionary_std::{tags, uids};
use dicom_ul::association::SyncAssociation;
use dicom_ul::pdu::{AssociationRQ, PresentationContextProposed, UserVariableItem};
use dicom_ul::{ClientAssociationOptions, Pdu};
use veil_dimse::link::Link;
use veil_dimse::{
    echo, status, store_files, CommandField, CommandSet, DimseError, Peer, ScpConfig, StoreRefusal,
    StoreRequest,
};

const CT: &str = uids::CT_IMAGE_STORAGE;

fn assoc_rq(calling: &str, called: &str) -> Vec<u8> {
    let pdu = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: uids::VERIFICATION.into(),
            transfer_syntaxes: vec![uids::IMPLICIT_VR_LITTLE_ENDIAN.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16384)],
    });
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, &pdu).expect("encode");
    out
}

/// Reads what the SCP answers until it closes; returns the bytes and how
/// long it took.
fn answer(mut s: TcpStream) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (out, t.elapsed())
}

fn assert_abort(what: &str, bytes: &[u8]) {
    // A-ABORT: type 07, length 4
    assert!(
        bytes.len() >= 10 && bytes[0] == 0x07 && bytes[2..6] == [0, 0, 0, 4],
        "{what}: expected an A-ABORT, got {:02X?}",
        &bytes[..bytes.len().min(16)]
    );
}

fn good_echo(scp: &veil_dimse::Scp) {
    let port = scp.local_addr().port().to_string();
    let (ok, out) = run(
        "echoscu",
        &["-aet", "PACS", "-aec", "VEIL", "127.0.0.1", &port],
    );
    assert!(ok, "echoscu after a bad peer failed: {out}");
}

fn client(scp: &veil_dimse::Scp, abstract_syntax: &str) -> dicom_ul::ClientAssociation<TcpStream> {
    ClientAssociationOptions::new()
        .calling_ae_title("PACS")
        .called_ae_title("VEIL")
        .with_presentation_context(abstract_syntax, vec![uids::EXPLICIT_VR_LITTLE_ENDIAN])
        .read_timeout(Duration::from_secs(10))
        .establish(scp.local_addr())
        .expect("associate")
}

#[test]
fn issue_18_bad_peers_are_aborted_and_the_scp_keeps_serving() {
    init_log();
    let (inbox, h) = recording();
    let scp = start_scp(config(), h); // ARTIM 2 s
    let addr = scp.local_addr();

    // garbage (an HTTP request)
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: veil\r\n\r\n")
        .expect("write");
    let (a, _) = answer(s);
    assert_abort("garbage", &a);
    good_echo(&scp);

    // an oversized PDU length (2 GiB announced)
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&[0x01, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0, 1, 0, 0])
        .expect("write");
    let (a, t) = answer(s);
    assert_abort("oversized", &a);
    assert!(
        t < Duration::from_secs(1),
        "oversized PDU refused at once, took {t:?}"
    );
    good_echo(&scp);

    // a truncated A-ASSOCIATE-RQ, then silence: ARTIM fires
    let rq = assoc_rq("PACS", "VEIL");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&rq[..rq.len() - 7]).expect("write");
    let (a, t) = answer(s);
    assert_abort("truncated", &a);
    assert!(
        t >= Duration::from_millis(1500) && t < Duration::from_secs(6),
        "ARTIM after {t:?}"
    );
    good_echo(&scp);

    // a truncated PDU and the peer goes away: nothing to answer, no harm
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&rq[..20]).expect("write");
    drop(s);
    good_echo(&scp);

    // a connection that never sends
    let s = TcpStream::connect(addr).expect("connect");
    let (a, t) = answer(s);
    assert_abort("silent", &a);
    assert!(
        t >= Duration::from_millis(1500) && t < Duration::from_secs(6),
        "ARTIM after {t:?}"
    );
    good_echo(&scp);

    // an established association that then sends an oversized P-DATA
    let mut c = client(&scp, CT);
    c.inner_stream()
        .write_all(&[0x04, 0x00, 0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0])
        .expect("write");
    match SyncAssociation::receive(&mut c) {
        Ok(Pdu::AbortRQ { .. }) => {}
        other => panic!(
            "expected A-ABORT after an oversized P-DATA, got {:?}",
            other.map(|p| p.short_description().to_string())
        ),
    }
    good_echo(&scp);

    // an established association that goes idle: closed after idle_timeout
    let (_i, h2) = recording();
    let idle = start_scp(
        ScpConfig {
            idle_timeout: Duration::from_secs(1),
            ..config()
        },
        h2,
    );
    let mut c = client(&idle, uids::VERIFICATION);
    let t = Instant::now();
    let r = SyncAssociation::receive(&mut c);
    assert!(
        matches!(r, Ok(Pdu::AbortRQ { .. })) || r.is_err(),
        "idle association must be closed"
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "idle close took {:?}",
        t.elapsed()
    );
    idle.shutdown();

    // a C-STORE whose payload is not a data set: failure status, not a
    // crash, and the same association goes on to a good C-STORE
    let mut link = Link::new(client(&scp, CT));
    let pc = link.assoc().presentation_contexts()[0].id;
    let mut rq = CommandSet::request(CommandField::CStoreRq, 1, true);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), CT)
        .set_uid(tags::AFFECTED_SOP_INSTANCE_UID.element(), "1.2.3.4")
        .set_u16(tags::PRIORITY.element(), 0);
    link.send_command(pc, &rq).expect("send");
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    link.send_data(pc, &mut &garbage[..]).expect("send data");
    let (_, rsp) = link.recv_command().expect("response").expect("not ended");
    assert_eq!(rsp.status(), Some(status::CANNOT_UNDERSTAND));
    assert_eq!(rsp.responded_to(), Some(1));
    // plain text ("not DICOM") with a valid-looking start is refused too
    let mut rq2 = rq.clone();
    rq2.set_u16(tags::MESSAGE_ID.element(), 2);
    link.send_command(pc, &rq2).expect("send");
    link.send_data(pc, &mut &b"this is a PDF, honestly"[..])
        .expect("send data");
    let (_, rsp) = link.recv_command().expect("response").expect("not ended");
    assert_eq!(rsp.status(), Some(status::CANNOT_UNDERSTAND));
    // a data set whose SOP Instance UID is not the command's
    let mut ds = Vec::new();
    let mut put = |g: u16, e: u16, vr: &[u8; 2], v: &[u8]| {
        ds.extend_from_slice(&g.to_le_bytes());
        ds.extend_from_slice(&e.to_le_bytes());
        ds.extend_from_slice(vr);
        ds.extend_from_slice(&(v.len() as u16).to_le_bytes());
        ds.extend_from_slice(v);
    };
    put(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0");
    put(0x0008, 0x0018, b"UI", b"9.9.9\0");
    put(0x0010, 0x0010, b"PN", b"X^Y ");
    let mut rq3 = rq.clone();
    rq3.set_u16(tags::MESSAGE_ID.element(), 3);
    link.send_command(pc, &rq3).expect("send");
    link.send_data(pc, &mut &ds[..]).expect("send data");
    let (_, rsp) = link.recv_command().expect("response").expect("not ended");
    assert_eq!(rsp.status(), Some(status::DATA_SET_MISMATCH));
    // and the matching one is stored, on the same association
    let mut ds_ok = Vec::new();
    ds_ok.extend_from_slice(&ds[..8]);
    ds_ok.extend_from_slice(b"1.2.840.10008.5.1.4.1.1.2\0");
    ds_ok.extend_from_slice(&[0x08, 0x00, 0x18, 0x00, b'U', b'I', 8, 0]);
    ds_ok.extend_from_slice(b"1.2.3.4\0");
    let mut rq4 = rq.clone();
    rq4.set_u16(tags::MESSAGE_ID.element(), 4);
    link.send_command(pc, &rq4).expect("send");
    link.send_data(pc, &mut &ds_ok[..]).expect("send data");
    let (_, rsp) = link.recv_command().expect("response").expect("not ended");
    assert_eq!(rsp.status(), Some(status::SUCCESS));
    SyncAssociation::release(link.into_inner()).expect("release");

    // a good study still arrives, and only good data reached the handler
    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    let f = pick(&files, uids::EXPLICIT_VR_LITTLE_ENDIAN, 1);
    let port = addr.port().to_string();
    let (ok, out) = run(
        "storescu",
        &[
            "-xe",
            "-aet",
            "PACS",
            "-aec",
            "VEIL",
            "127.0.0.1",
            &port,
            f[0].0.to_str().expect("utf8"),
        ],
    );
    assert!(ok && !out.contains("E:"), "storescu after bad peers: {out}");
    scp.shutdown();
    let got = inbox.lock().expect("inbox");
    assert_eq!(
        got.len(),
        2,
        "the matching hand-made data set and the corpus file"
    );
    assert_eq!(got[0].bytes, ds_ok);
    assert_eq!(got[1].req.sop_instance_uid, f[0].1.sop_instance);
}

#[test]
fn issue_18_association_limit_rejects_transiently_then_recovers() {
    init_log();
    let (_inbox, h) = recording();
    let scp = start_scp(
        ScpConfig {
            max_associations: 1,
            ..config()
        },
        h,
    );
    let addr = scp.local_addr().to_string();
    let held = client(&scp, uids::VERIFICATION);
    let err = echo(&Peer::new("PACS", "VEIL", &addr)).expect_err("over the limit");
    match &err {
        DimseError::Rejected { reason, .. } => {
            assert!(reason.contains("LocalLimitExceeded"), "{reason}")
        }
        other => panic!("expected a transient rejection, got {other}"),
    }
    assert_eq!(scp.active_associations(), 1);
    SyncAssociation::release(held).expect("release");
    let t = Instant::now();
    while scp.active_associations() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "association slot not freed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        echo(&Peer::new("PACS", "VEIL", &addr)).expect("echo"),
        status::SUCCESS
    );
    scp.shutdown();
}

#[test]
fn issue_18_shutdown_stops_accepting_and_finishes_in_flight_associations() {
    init_log();
    let (_inbox, h) = recording();
    let scp = start_scp(config(), h);
    let addr = scp.local_addr();
    let mut link = Link::new(client(&scp, uids::VERIFICATION));
    let stopper = std::thread::spawn(move || {
        let t = Instant::now();
        scp.shutdown();
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !stopper.is_finished(),
        "shutdown waits for the open association"
    );
    // no new association
    assert!(echo(&Peer::new("PACS", "VEIL", &addr.to_string())).is_err());
    // the open one is still served
    let pc = link.assoc().presentation_contexts()[0].id;
    let mut rq = CommandSet::request(CommandField::CEchoRq, 1, false);
    rq.set_uid(tags::AFFECTED_SOP_CLASS_UID.element(), uids::VERIFICATION);
    link.send_command(pc, &rq).expect("send");
    let (_, rsp) = link.recv_command().expect("rsp").expect("not ended");
    assert_eq!(rsp.status(), Some(status::SUCCESS));
    SyncAssociation::release(link.into_inner()).expect("release");
    let took = stopper.join().expect("join");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn issue_18_store_success_only_after_handler_returns_and_refusals_are_statuses() {
    init_log();
    let Some(files) = corpus_files(4 << 20) else {
        return;
    };
    let f: Vec<PathBuf> = pick(&files, uids::EXPLICIT_VR_LITTLE_ENDIAN, 2)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(f.len(), 2);
    // the handler takes 400 ms (an fsync into a spool, say) and records
    // when it returned
    let done: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let d = done.clone();
    let slow = move |_req: &StoreRequest, data: &mut dyn Read| -> Result<(), StoreRefusal> {
        std::io::copy(data, &mut std::io::sink())
            .map_err(|_| StoreRefusal::processing_failure("read"))?;
        std::thread::sleep(Duration::from_millis(400));
        d.lock().expect("lock").push(Instant::now());
        Ok(())
    };
    let scp = start_scp(config(), Arc::new(slow));
    let peer = Peer::new("PACS", "VEIL", &scp.local_addr().to_string());
    let t = Instant::now();
    let out = store_files(&peer, &f[..1]).expect("store");
    let returned = Instant::now();
    assert_eq!(out[0].result, Ok(status::SUCCESS));
    assert!(t.elapsed() >= Duration::from_millis(400));
    let handler_done = done.lock().expect("lock")[0];
    assert!(
        handler_done <= returned,
        "success came before the handler returned"
    );
    scp.shutdown();

    // a refusing handler: the sender sees its status, per instance
    let count = Arc::new(Mutex::new(0u32));
    let c = count.clone();
    let refuse_second =
        move |_req: &StoreRequest, data: &mut dyn Read| -> Result<(), StoreRefusal> {
            std::io::copy(data, &mut std::io::sink())
                .map_err(|_| StoreRefusal::processing_failure("read"))?;
            let mut n = c.lock().expect("lock");
            *n += 1;
            if *n == 2 {
                Err(StoreRefusal::out_of_resources("spool full"))
            } else {
                Ok(())
            }
        };
    let scp = start_scp(config(), Arc::new(refuse_second));
    let peer = Peer::new("PACS", "VEIL", &scp.local_addr().to_string());
    let out = store_files(&peer, &f).expect("store");
    assert_eq!(out[0].result, Ok(status::SUCCESS));
    assert_eq!(
        out[1].result,
        Err(veil_dimse::Undeliverable::Failed(status::OUT_OF_RESOURCES))
    );
    // a handler that stops reading early does not get a success sent
    scp.shutdown();
    let lazy = |_req: &StoreRequest, data: &mut dyn Read| -> Result<(), StoreRefusal> {
        let mut b = [0u8; 10];
        data.read_exact(&mut b)
            .map_err(|_| StoreRefusal::processing_failure("read"))?;
        Ok(())
    };
    let scp = start_scp(config(), Arc::new(lazy));
    let peer = Peer::new("PACS", "VEIL", &scp.local_addr().to_string());
    let out = store_files(&peer, &f[..1]).expect("store");
    assert_eq!(
        out[0].result,
        Err(veil_dimse::Undeliverable::Failed(
            status::PROCESSING_FAILURE
        ))
    );
    // storescu sees the failure status as well
    let port = scp.local_addr().port().to_string();
    let (_ok, text) = run(
        "storescu",
        &[
            "-v",
            "-xe",
            "-aet",
            "PACS",
            "-aec",
            "VEIL",
            "127.0.0.1",
            &port,
            f[0].to_str().expect("utf8"),
        ],
    );
    assert!(text.contains("Status: 0x110)"), "{text}");
    scp.shutdown();
}
