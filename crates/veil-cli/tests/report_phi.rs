//! Issue 22 item 8: reports that can travel hold no PHI.
//!
//! Distinctive fake identities are planted (dcmodify) into real corpus
//! files: a free-text comment that quotes the patient's name and record
//! number between other identifying words, and the Modality, SOP Class
//! UID and Specific Character Set fields; one more file declares a
//! Transfer Syntax UID made of identifying text. Then every command that
//! reads such files runs (`verify` to JSON and HTML, with `--dciodvfy`;
//! `deid --report`; `explain`; `deface`; `risk`), and no planted string,
//! in any casing, nor any 6-character piece of one, may appear in what
//! they print or write. `verify --site-local` may quote the comment, and
//! says so in its header. A release folder named after the patient is
//! named in the verify report only by the categories found in it.
//!
//! Needs VEIL_CORPUS and dcmodify (dcmtk).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

/// What is planted. The comment's other words (a clinician, a place, a
/// birth date) are not values of any attribute: no detector knows them,
/// so only a report that quotes no text keeps them out.
const NAME: &str = "ZORBLAX^QUENTIN";
const PID: &str = "55501234";
const COMMENT: &str = "Dr Qvuxmerlyn saw ZORBLAX MRN 55501234 DOB 1970-03-14 at Zbrovnikhaus";
const MODALITY: &str = "Dr Qvuxmerlyn";
const SOP_CLASS: &str = "1.2.840.Qvuxmerlyn";
const CHARSET: &str = "ISO_IR 100 Zbrovnikhaus";
const TS: &str = "1.2.840.10008.1.2.1 Qvuxmerlyn MRN 55501234";

/// Every planted string.
const PLANTED: &[&str] = &[NAME, PID, COMMENT, MODALITY, SOP_CLASS, CHARSET, TS];

/// Panics if `text` holds a planted string or any piece of one of at
/// least 6 characters, in any casing. Pieces that are DICOM vocabulary
/// every report names anyway (the standard transfer syntax UID prefix,
/// `ISO_IR 100`) do not count.
fn assert_clean(what: &str, text: &str) {
    let hay = text.to_lowercase();
    let allowed = ["1.2.840.10008.1.2.1", "iso_ir 100"];
    for p in PLANTED {
        let p = p.to_lowercase();
        let chars: Vec<char> = p.chars().collect();
        for i in 0..chars.len().saturating_sub(5) {
            let piece: String = chars[i..i + 6].iter().collect();
            if allowed.iter().any(|a| a.contains(&piece)) {
                continue;
            }
            assert!(
                !hay.contains(&piece),
                "{what} holds {piece:?}, a piece of a planted value"
            );
        }
    }
}

fn all_output(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Two readable, small corpus images of one transfer syntax with a
/// Patient's Name (dcmodify rewrites them in place).
fn pick(corpus: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in veil_test::files(corpus) {
        if std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX) > 2 << 20 {
            continue;
        }
        let Ok(f) = veil_io::read(&p) else { continue };
        let ds = &f.dataset;
        if f.is_dicomdir()
            || f.meta.is_none()
            || f.ts.uid != "1.2.840.10008.1.2.1"
            || ds.get(veil_core::Tag(0x7FE0, 0x0010)).is_none()
            || ds.get(veil_core::Tag(0x0010, 0x0010)).is_none()
            || ds.get(veil_core::Tag(0x0008, 0x0018)).is_none()
        {
            continue;
        }
        out.push(p);
        if out.len() == 2 {
            break;
        }
    }
    assert_eq!(out.len(), 2, "the corpus has two plain images");
    out
}

fn dcmodify(file: &Path, edits: &[(&str, &str)]) {
    let mut c = Command::new("dcmodify");
    c.args(["-nb", "-nmu"]);
    for (tag, v) in edits {
        c.arg("-i").arg(format!("{tag}={v}"));
    }
    let o = c.arg(file).output().expect("run dcmodify");
    assert!(o.status.success(), "dcmodify: {}", all_output(&o));
}

/// The file with its File Meta's Transfer Syntax UID replaced by `ts`
/// (dcmtk would rewrite the meta to the syntax it writes, so the meta is
/// rebuilt here: explicit VR little endian elements, group length
/// recomputed).
fn with_transfer_syntax(bytes: &[u8], ts: &str) -> Vec<u8> {
    assert_eq!(&bytes[128..132], b"DICM");
    let mut pos = 132;
    let mut elements = Vec::new();
    while pos + 8 <= bytes.len() && bytes[pos..pos + 2] == [2, 0] {
        let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = &bytes[pos + 4..pos + 6];
        let (head, len) = if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
            let l = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
            (12, l as usize)
        } else {
            (
                8,
                u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize,
            )
        };
        let end = pos + head + len;
        if elem == 0x0010 {
            let mut v = ts.as_bytes().to_vec();
            if v.len() % 2 == 1 {
                v.push(0);
            }
            let mut e = vec![2, 0, 0x10, 0, b'U', b'I'];
            e.extend((v.len() as u16).to_le_bytes());
            e.extend(v);
            elements.push(e);
        } else if elem != 0 {
            elements.push(bytes[pos..end].to_vec());
        }
        pos = end;
    }
    let body: Vec<u8> = elements.concat();
    let mut out = bytes[..132].to_vec();
    out.extend([2, 0, 0, 0, b'U', b'L', 4, 0]);
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out.extend(&bytes[pos..]);
    out
}

#[test]
fn issue_22_travelling_reports_hold_no_planted_phi() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    if Command::new("dcmodify").arg("--version").output().is_err() {
        assert!(
            std::env::var("VEIL_REQUIRE_CORPUS").is_err(),
            "dcmodify is required in CI"
        );
        return;
    }
    let tmp = veil_test::scratch("report-phi");
    let picked = pick(&corpus);
    // clean copies (the sources of the dciodvfy comparison)
    let clean = tmp.join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    let planted = tmp.join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    for (i, p) in picked.iter().enumerate() {
        std::fs::copy(p, clean.join(format!("{i}.dcm"))).unwrap();
        std::fs::copy(p, planted.join(format!("{i}.dcm"))).unwrap();
    }
    // the patient's own values, and the comment quoting them
    for i in 0..2 {
        for dir in [&clean, &planted] {
            dcmodify(
                &dir.join(format!("{i}.dcm")),
                &[("(0010,0010)", NAME), ("(0010,0020)", PID)],
            );
        }
        dcmodify(
            &planted.join(format!("{i}.dcm")),
            &[("(0020,4000)", COMMENT), ("(0008,0060)", MODALITY)],
        );
    }
    dcmodify(
        &planted.join("1.dcm"),
        &[("(0008,0016)", SOP_CLASS), ("(0008,0005)", CHARSET)],
    );
    let bytes = std::fs::read(clean.join("0.dcm")).unwrap();
    veil_io::atomic::write_all(&planted.join("2.dcm"), &with_transfer_syntax(&bytes, TS)).unwrap();
    let planted_files = veil_test::files(&planted);
    assert_eq!(planted_files.len(), 3);

    // verify: JSON and HTML travel with a release. The release checked
    // also holds a copy in a folder named after the patient, as a
    // hand-made release might.
    let release = tmp.join("release");
    let named = release.join("ZORBLAX_55501234");
    std::fs::create_dir_all(&named).unwrap();
    for f in &planted_files {
        std::fs::copy(f, release.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(planted.join("0.dcm"), named.join("3.dcm")).unwrap();
    let (json, html) = (tmp.join("v.json"), tmp.join("v.html"));
    let o = veil()
        .arg("verify")
        .arg(&release)
        .arg("--source")
        .arg(&clean)
        .args(["--patterns", "--dciodvfy", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert_clean("verify's terminal output", &all_output(&o));
    let j = std::fs::read_to_string(&json).unwrap();
    assert_clean("the verify JSON report", &j);
    assert_clean(
        "the verify HTML report",
        &std::fs::read_to_string(&html).unwrap(),
    );
    let r: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(r["scope"], "travelling");
    // the folder named after the patient is named by what it holds
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == "[id+name:16]/3.dcm" && f["place"] == "filename"),
        "{j}"
    );
    let excerpts: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["excerpt"].as_str())
        .collect();
    // the comment was found, and is named by category, length and place
    assert!(
        excerpts.contains(&"[name:7] in (0020,4000)"),
        "{excerpts:#?}"
    );
    // the declared syntax is named only as invalid
    assert!(
        excerpts
            .iter()
            .any(|e| *e == format!("unsupported transfer syntax <invalid, {} bytes>", TS.len())),
        "{excerpts:#?}"
    );

    // verify --site-local: the context may be quoted, and the header says
    // the report must stay
    let (json2, html2) = (tmp.join("v2.json"), tmp.join("v2.html"));
    let o = veil()
        .arg("verify")
        .arg(&release)
        .arg("--source")
        .arg(&clean)
        .args(["--site-local", "--json"])
        .arg(&json2)
        .arg("--html")
        .arg(&html2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    let r2: serde_json::Value = serde_json::from_slice(&std::fs::read(&json2).unwrap()).unwrap();
    assert_eq!(r2["scope"], "site-local");
    assert!(r2["notice"].as_str().unwrap().contains("SITE-LOCAL"));
    let h2 = std::fs::read_to_string(&html2).unwrap();
    assert!(h2.contains("SITE-LOCAL"));
    assert!(
        r2["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["context"]
                .as_str()
                .is_some_and(|c| c.contains("Qvuxmerlyn"))),
        "a site-local report quotes the context"
    );

    // deid --report (site-local: it names input paths, which here hold no
    // planted value; any file value in it must be in an allowed form)
    let key = veil_test::new_key(env!("CARGO_BIN_EXE_veil"), &tmp);
    let out = tmp.join("out");
    let report = tmp.join("deid.json");
    let o = veil()
        .arg("deid")
        .arg(&planted)
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert_clean("deid's terminal output", &all_output(&o));
    let d = std::fs::read_to_string(&report).unwrap();
    assert!(d.contains("unsupported transfer syntax") || d.contains("unsupported-transfer-syntax"));
    assert_clean("the deid report", &d);

    // explain, on each planted file
    for f in &planted_files {
        for json in [false, true] {
            let mut c = veil();
            c.arg("explain").arg(f);
            if json {
                c.arg("--json");
            }
            let o = c.output().unwrap();
            assert_clean("explain's output", &all_output(&o));
        }
    }

    // deface of a series whose files declare the planted syntax: refused,
    // and the message names no planted value
    let series = tmp.join("series");
    std::fs::create_dir_all(&series).unwrap();
    for n in ["a.dcm", "b.dcm"] {
        std::fs::copy(planted.join("2.dcm"), series.join(n)).unwrap();
    }
    let o = veil()
        .arg("deface")
        .arg(&series)
        .arg(tmp.join("defaced"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", all_output(&o));
    assert_clean("deface's output", &all_output(&o));

    // risk, on the planted folder and on deid's output: nothing on the
    // terminal; its reports show released values, and say they are
    // site-local
    for dir in [&planted, &out] {
        let risk = tmp.join("risk.json");
        let o = veil()
            .arg("risk")
            .arg(dir)
            .arg("--json")
            .arg(&risk)
            .output()
            .unwrap();
        assert_clean("risk's terminal output", &all_output(&o));
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&risk).unwrap()).unwrap();
        assert!(r["notice"].as_str().unwrap().starts_with("SITE-LOCAL"));
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
