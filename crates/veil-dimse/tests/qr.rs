//! C-FIND and C-MOVE SCU against dcmtk's dcmqrscp holding corpus files
//! (issue 18): AccessionNumber -> StudyInstanceUIDs, then a C-MOVE whose
//! destination is our own SCP. movescu is the cross-check that our SCP
//! serves a dcmtk-driven move the same way.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::*;
use dicom_dictionary_std::tags;
use veil_dimse::{find_studies, move_study, status, DimseError, Peer};

struct Indexed {
    path: PathBuf,
    instance: String,
}

fn text(ds: &veil_io::DataSet, tag: dicom_core::Tag) -> Option<String> {
    ds.ascii(veil_core::Tag(tag.group(), tag.element()))
        .filter(|v| !v.is_empty())
}

#[test]
fn issue_18_find_and_move_scu_against_dcmqrscp() {
    init_log();
    let Some(files) = corpus_files(256 << 10) else {
        return;
    };
    // accession -> study -> instances
    let mut by_acc: BTreeMap<String, BTreeMap<String, Vec<Indexed>>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (path, info) in &files {
        if !seen.insert(info.sop_instance.clone()) {
            continue;
        }
        let Ok(f) = veil_io::read(path) else {
            continue;
        };
        let obj = &f.dataset;
        let (Some(acc), Some(study)) = (
            text(obj, tags::ACCESSION_NUMBER),
            text(obj, tags::STUDY_INSTANCE_UID),
        ) else {
            continue;
        };
        if text(obj, tags::PATIENT_ID).is_none() || acc.contains('\\') || acc.contains('*') {
            continue;
        }
        by_acc
            .entry(acc)
            .or_default()
            .entry(study)
            .or_default()
            .push(Indexed {
                path: path.clone(),
                instance: info.sop_instance.clone(),
            });
    }
    // an accession number shared by several studies, and one of one study
    let multi = by_acc
        .iter()
        .filter(|(_, s)| s.len() >= 2)
        .max_by_key(|(_, s)| s.len())
        .map(|(a, _)| a.clone())
        .expect("corpus has an accession number with two studies");
    let single = by_acc
        .iter()
        .find(|(a, s)| {
            **a != multi && s.len() == 1 && s.values().next().is_some_and(|v| v.len() >= 2)
        })
        .map(|(a, _)| a.clone())
        .expect("corpus has a study of two instances with its own accession number");
    let mut loaded: BTreeMap<String, Vec<&Indexed>> = BTreeMap::new();
    for (study, inst) in by_acc[&multi].iter().take(3) {
        loaded.insert(study.clone(), inst.iter().take(3).collect());
    }
    let (single_study, single_inst) = by_acc[&single].iter().next().expect("one study");
    loaded.insert(single_study.clone(), single_inst.iter().take(4).collect());
    // dcmqrscp with its database in a scratch folder
    let dir = veil_test::scratch("dimse-qr");
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("mkdir");
    let mut copies = Vec::new();
    for (i, inst) in loaded.values().flatten().enumerate() {
        let to = db.join(format!("f{i}.dcm"));
        std::fs::copy(&inst.path, &to).expect("copy");
        copies.push(to.display().to_string());
    }
    let mut args = vec![db.display().to_string()];
    args.extend(copies);
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (ok, out) = run("dcmqridx", &argv);
    assert!(ok, "dcmqridx: {out}");

    // our SCP is the move destination
    let (inbox, h) = recording();
    let scp = start_scp(config(), h);
    let qr_port = free_port();
    let cfg = format!(
        "NetworkTCPPort = {qr_port}\nMaxPDUSize = 16384\nMaxAssociations = 8\n\n\
         HostTable BEGIN\nveil = (VEIL, 127.0.0.1, {veil})\nHostTable END\n\n\
         VendorTable BEGIN\nVendorTable END\n\n\
         AETable BEGIN\nDCMQR {db} RW (200, 1024mb) ANY\nAETable END\n",
        veil = scp.local_addr().port(),
        db = db.display()
    );
    let mut f = veil_io::atomic::AtomicFile::create(&dir.join("dcmqrscp.cfg")).expect("config");
    std::io::Write::write_all(f.writer(), cfg.as_bytes()).expect("config");
    f.commit().expect("config");
    let _qr = spawn_server("dcmqrscp", &["-d", "-c", "dcmqrscp.cfg"], qr_port, &dir);
    let pacs = Peer::new("VEIL", "DCMQR", &format!("127.0.0.1:{qr_port}"));
    // C-FIND: accession -> studies
    let got: BTreeSet<String> = find_studies(&pacs, &multi)
        .expect("find")
        .into_iter()
        .collect();
    let want: BTreeSet<String> = by_acc[&multi].keys().take(3).cloned().collect();
    assert_eq!(got, want, "studies of the shared accession number");
    assert!(got.len() >= 2);
    assert_eq!(
        find_studies(&pacs, &single).expect("find"),
        vec![single_study.clone()]
    );
    assert!(find_studies(&pacs, "VEIL-NO-SUCH-ACC")
        .expect("find")
        .is_empty());
    // C-MOVE one study to our SCP
    let n = loaded[single_study].len() as u16;
    let m = move_study(&pacs, "VEIL", single_study).expect("move");
    assert_eq!(m.status, status::SUCCESS);
    assert_eq!((m.completed, m.failed), (n, 0), "{m:?}");
    let received: BTreeSet<String> = inbox
        .lock()
        .expect("inbox")
        .iter()
        .map(|r| {
            assert_eq!(r.req.calling_ae, "DCMQR");
            r.req.sop_instance_uid.clone()
        })
        .collect();
    let expected: BTreeSet<String> = loaded[single_study]
        .iter()
        .map(|i| i.instance.clone())
        .collect();
    assert_eq!(received, expected, "exactly the study's instances arrived");

    // a destination the PACS does not know: a failure status, as an error
    match move_study(&pacs, "NOBODY", single_study) {
        Err(DimseError::Status {
            operation: "C-MOVE",
            status,
        }) => {
            assert_eq!(
                status & 0xFF00,
                0xA800,
                "move destination unknown: {status:04X}"
            )
        }
        other => panic!("expected a failure status, got {other:?}"),
    }

    // cross-check: movescu moves another study into our SCP the same way
    inbox.lock().expect("inbox").clear();
    let other_study = by_acc[&multi].keys().next().expect("study").clone();
    let port = qr_port.to_string();
    let key = format!("StudyInstanceUID={other_study}");
    let (ok, out) = run(
        "movescu",
        &[
            "-S",
            "-aet",
            "VEIL",
            "-aec",
            "DCMQR",
            "-aem",
            "VEIL",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
            "127.0.0.1",
            &port,
        ],
    );
    assert!(ok, "movescu: {out}");
    let k = loaded[&other_study].len();
    assert_eq!(
        inbox.lock().expect("inbox").len(),
        k,
        "movescu-driven move delivered {k}"
    );
    scp.shutdown();
}
