//! Issue 22, items 6 and 7: hostile inputs meet a limit, not a crash.
//! Each is run through the `veil` binary, as a user would: a file past a
//! limit is refused by `veil explain`, quarantined with its reason by
//! `veil deid` while the rest of the batch is written, refused by `veil
//! deface`, and reported by `veil verify` instead of passing unsearched.

use std::path::Path;
use std::process::{Command, Output};

use veil_test::hostile;

const VEIL: &str = env!("CARGO_BIN_EXE_veil");

fn veil(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(VEIL).args(args).output().expect("run veil")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    veil_io::atomic::write_all(p, bytes).unwrap();
}

#[test]
fn issue_22_explain_refuses_nested_sequences_and_deflate_bombs() {
    let tmp = veil_test::scratch("limits-explain");
    // 200,000 nested sequences (4 MB): on main the stack overflowed and
    // `veil explain` died with SIGABRT (exit 134)
    let deep = tmp.join("deep.dcm");
    write(
        &deep,
        &hostile::nested_sequences("1.2.826.0.1.3680043.2.22.1", 200_000),
    );
    let o = veil(&["explain".as_ref(), deep.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        stderr(&o).contains("sequence depth limit of 64"),
        "{}",
        stderr(&o)
    );
    // 300 MiB of zeros deflated to about 300 kB: on main inflated whole
    let bomb = tmp.join("bomb.dcm");
    write(
        &bomb,
        &hostile::deflated("1.2.826.0.1.3680043.2.22.2", 300 << 20),
    );
    let o = veil(&["explain".as_ref(), bomb.as_os_str()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("inflated size limit"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn issue_22_deid_quarantines_files_past_a_limit_and_the_batch_goes_on() {
    let tmp = veil_test::scratch("limits-deid");
    let input = tmp.join("in");
    write(
        &input.join("a-deep.dcm"),
        &hostile::nested_sequences("1.2.826.0.1.3680043.2.22.1", 200_000),
    );
    write(
        &input.join("b-bomb.dcm"),
        &hostile::deflated("1.2.826.0.1.3680043.2.22.2", 300 << 20),
    );
    write(
        &input.join("c-good.dcm"),
        &hostile::plain("1.2.826.0.1.3680043.2.22.3"),
    );
    let key = veil_test::new_key(VEIL, &tmp);
    let (out, report) = (tmp.join("out"), tmp.join("report.json"));
    let o = veil(&[
        "deid".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ]);
    // 1: some inputs quarantined (on main: the whole run aborted)
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut reasons: Vec<(String, serde_json::Value)> = rep["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap().to_string(),
                f["reason"].clone(),
            )
        })
        .collect();
    reasons.sort_by_key(|r| r.0.clone());
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    let limits: Vec<&str> = reasons
        .iter()
        .filter(|r| r.0 == "quarantined")
        .map(|r| {
            assert_eq!(r.1["kind"], "limit-exceeded", "{:?}", r.1);
            r.1["limit"].as_str().unwrap()
        })
        .collect();
    assert_eq!(limits.len(), 2, "{reasons:?}");
    assert!(limits.contains(&"sequence-depth") && limits.contains(&"inflated-size"));
    assert_eq!(veil_test::files(&out).len(), 1, "the good file is written");
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn issue_22_deface_refuses_a_nifti_whose_vox_offset_is_invalid() {
    use veil_deface::volume::{write_nifti, NiftiHeader, Volume};
    let tmp = veil_test::scratch("limits-deface");
    let mut affine = [[0.0; 4]; 4];
    for (i, row) in affine.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let vol = Volume {
        dims: [8, 8, 8],
        data: vec![100.0; 512],
        affine,
    };
    let good = tmp.join("good.nii");
    write_nifti(&good, &vol, &NiftiHeader::for_volume(&vol)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    // on main: 1e20 panicked (exit 101); 3.0, NaN and -inf read voxels
    // from the header's extension bytes and defaced them
    for off in [1e20f32, 3.0, f32::NAN, f32::NEG_INFINITY] {
        let mut b = bytes.clone();
        b[108..112].copy_from_slice(&off.to_le_bytes());
        let bad = tmp.join("bad.nii");
        write(&bad, &b);
        let out = tmp.join("out.nii");
        let o = veil(&["deface".as_ref(), bad.as_os_str(), out.as_os_str()]);
        assert_eq!(o.status.code(), Some(2), "vox_offset {off}: {o:?}");
        assert!(stderr(&o).contains("vox_offset"), "{}", stderr(&o));
        assert!(!out.exists());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn issue_22_verify_reports_pdf_streams_it_cannot_search() {
    let tmp = veil_test::scratch("limits-verify");
    let out = tmp.join("out");
    // a FlateDecode stream that does not inflate cleanly (a reader shows
    // what inflates; on main the stream was skipped and the file passed
    // unsearched), and one inflating to 300 MiB of zeros from 300 kB
    let mut text = hostile::zlib(b"BT (Patient: Jane Roe, DOB 1970-01-01) Tj ET");
    // a wrong checksum: the stream inflates, then reports an error
    *text.last_mut().unwrap() ^= 0xFF;
    let cut = hostile::pdf(&text);
    write(
        &out.join("a.dcm"),
        &hostile::encapsulated_pdf("2.25.2201", &cut),
    );
    let bomb = hostile::pdf(&hostile::zlib_zeros(300 << 20));
    write(
        &out.join("b.dcm"),
        &hostile::encapsulated_pdf("2.25.2202", &bomb),
    );
    let json = tmp.join("v.json");
    let o = veil(&[
        "verify".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert_ne!(o.status.code(), Some(0), "{o:?}");
    let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let mut pdf: Vec<(String, String)> = rep["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["detector"] == "structure:pdf-stream")
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["excerpt"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pdf.sort();
    assert_eq!(pdf.len(), 2, "{pdf:?}");
    assert!(
        pdf[0].0.ends_with("a.dcm") && pdf[0].1.contains("does not inflate"),
        "{pdf:?}"
    );
    assert!(
        pdf[1].0.ends_with("b.dcm") && pdf[1].1.contains("limit"),
        "{pdf:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
