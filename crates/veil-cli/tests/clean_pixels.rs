//! Issue 4, "Must show": burned-in names, MRNs and dates (8–40 px, high
//! and low contrast, corners, bands, mid-image, one frame and all frames)
//! rendered into real corpus images of every photometric interpretation
//! and transfer syntax (veil-plant's text set: decoded with
//! dicom-pixeldata, encoded by dcmtk and GDCM), cleaned by
//! `veil deid --option clean-pixel-data --option clean-graphics`, and
//! scored independently (known glyph masks, Tesseract on the output, an
//! independent decoder).
//!
//! Issue targets: at least 99 % of planted lines unreadable, at most 1 %
//! of non-text pixels changed, no decode failures. All three are reached
//! on this set (99.3 %, 0.96 %, 0; docs/pixels.md). The non-text and
//! decode targets are asserted as such (non-text both over lossless
//! inputs, where pixels outside the boxes must stay bit-identical, and
//! over all inputs); recall is asserted one line below what the stage
//! reaches (see `RECALL_FLOOR`), since a line more or less can come from
//! OCR on another CPU. Objects sent to review are reported, not counted
//! as misses; an object that vanishes (neither OUT nor review) fails the
//! test.

#![allow(clippy::print_stderr)] // tests report their measurements
use std::process::Command;

use veil_plant::textset::{self, BuildOptions, SetSize};

/// What the stage reaches on the default set (seed 4: 99.3 %, 276 of
/// 278 lines), less a line's margin for OCR's differences between runs
/// and machines (275 of 278); the target is 99 %.
const RECALL_FLOOR: f64 = 98.9;
/// The target (reached on the default set: 0.62 % over lossless
/// inputs, 0.96 % over all).
const NONTEXT_CEILING: f64 = 1.0;

#[test]
fn clean_pixel_data_makes_planted_text_unreadable() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let veil = env!("CARGO_BIN_EXE_veil");
    let tmp = veil_test::scratch("clean-pixels");
    let set = tmp.join("set");
    let m = textset::build(
        &set,
        &BuildOptions {
            corpus,
            seed: 4,
            size: SetSize::Default,
        },
    )
    .expect("build the text set (needs dcmtk and libgdcm-tools)");
    // the set itself covers what the issue lists
    let has = |f: &dyn Fn(&textset::FileEntry) -> bool| m.files.iter().any(f);
    for pi in [
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "PALETTE COLOR",
    ] {
        assert!(has(&|f| f.pi == pi), "set lacks {pi}");
    }
    for syn in textset::Syntax::ALL {
        assert!(has(&|f| f.ts == syn.uid()), "set lacks {}", syn.short());
    }
    assert!(has(&|f| f.signed) && has(&|f| !f.signed));
    assert!(has(&|f| f.bits_allocated == 8) && has(&|f| f.bits_allocated == 16));
    assert!(has(
        &|f| f.frames > 1 && f.lines.iter().any(|l| l.frame.is_some())
    ));

    let key = veil_test::new_key(veil, &tmp);
    let out = tmp.join("out");
    let review = tmp.join("review");
    let report = tmp.join("report.json");
    let t = std::time::Instant::now();
    let run = Command::new(veil)
        .arg("deid")
        .arg(set.join("in"))
        .arg("--out")
        .arg(&out)
        .arg("--key")
        .arg(&key)
        .arg("--review")
        .arg(&review)
        .arg("--report")
        .arg(&report)
        .args(["--option", "clean-pixel-data", "--option", "clean-graphics"])
        .output()
        .expect("run veil deid");
    let seconds = t.elapsed().as_secs_f64();
    eprintln!("{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.code().is_some_and(|c| c <= 1),
        "veil deid could not run"
    );
    let map = textset::load_map(&report, &out).expect("read the report");
    let ev = textset::evaluate(&m, &set.join("in"), &map).expect("evaluate");
    let frames: u64 = ev.frames;
    eprintln!(
        "{}\nveil deid: {} files, {frames} frames in {seconds:.1} s ({:.1} frames/s)",
        ev.summary(),
        ev.files,
        frames as f64 / seconds.max(1e-9)
    );
    for (k, t) in &ev.by {
        eprintln!("  {k:<28} {}/{}", t.unreadable, t.lines);
    }
    for d in ev
        .details
        .iter()
        .filter(|d| d.status == "out" && !d.unreadable)
    {
        let l = &m
            .files
            .iter()
            .find(|f| f.file == d.file)
            .expect("file in manifest")
            .lines[d.index];
        eprintln!(
            "  readable: {} line {} ({} px, {} contrast, {}; erased {:.2}, OCR distance {:?})",
            d.file, d.index, l.px_height, l.contrast, l.placement, d.erased, d.ocr_distance
        );
    }
    for (file, changed, total) in &ev.nontext_by_file {
        if *changed * 100 > *total {
            eprintln!(
                "  non-text changed: {file} {:.2} %",
                100.0 * *changed as f64 / (*total).max(1) as f64
            );
        }
    }
    assert_eq!(ev.missing_files, 0, "inputs neither released nor in review");
    assert_eq!(
        ev.decode_failures, 0,
        "outputs that do not decode: {:?}",
        ev.decode_failure_files
    );
    assert!(ev.evaluated_lines > 0, "every object went to review");
    // Issue 4's targets are 99 % unreadable and at most 1 % of non-text
    // pixels changed, both reached on this set (docs/pixels.md); recall
    // is held one line below what the stage reaches, so that a regression
    // fails while OCR's run-to-run differences do not.
    assert!(
        ev.recall_percent >= RECALL_FLOOR,
        "planted lines unreadable: {:.1} % (floor {RECALL_FLOOR} %, target 99 %)",
        ev.recall_percent
    );
    assert!(
        ev.nontext_lossless.percent <= NONTEXT_CEILING,
        "non-text pixels changed: {:.3} % (ceiling {NONTEXT_CEILING} %, target 1 %)",
        ev.nontext_lossless.percent
    );
    let (lossless, lossy) = (&ev.nontext_lossless, &ev.nontext_lossy);
    let all = 100.0 * (lossless.changed + lossy.changed) as f64
        / (lossless.total + lossy.total).max(1) as f64;
    assert!(
        all <= NONTEXT_CEILING,
        "non-text pixels changed over all inputs: {all:.3} % (lossy inputs {:.3} %; ceiling {NONTEXT_CEILING} %)",
        lossy.percent
    );

    // `veil verify --pixels` on the uncleaned RGB images of the set (issue
    // 21): whole-frame OCR alone flagged 5 of these 14 (names and dates
    // over colour Doppler and busy ultrasound); with the screens' lines
    // read one by one, 12 (docs/verify.md).
    let rgb = tmp.join("rgb");
    std::fs::create_dir_all(&rgb).unwrap();
    let mut with_text = 0;
    for f in m
        .files
        .iter()
        .filter(|f| f.pi == "RGB" && !f.lines.is_empty())
    {
        std::fs::copy(set.join("in").join(&f.file), rgb.join(&f.file)).unwrap();
        with_text += 1;
    }
    let verify_json = tmp.join("verify.json");
    let run = Command::new(veil)
        .arg("verify")
        .arg(&rgb)
        .arg("--source")
        .arg(&rgb)
        .args(["--pixels", "--json"])
        .arg(&verify_json)
        .output()
        .expect("run veil verify");
    assert!(
        run.status.code().is_some_and(|c| c <= 1),
        "veil verify could not run"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&verify_json).unwrap()).unwrap();
    let flagged: std::collections::BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["place"] == "pixels")
        .filter_map(|f| f["file"].as_str())
        .collect();
    eprintln!(
        "veil verify --pixels: {} of {with_text} RGB images with burned-in text flagged",
        flagged.len()
    );
    assert!(
        with_text >= 10,
        "the set has {with_text} RGB images with text"
    );
    assert!(
        flagged.len() + 2 >= with_text,
        "verify --pixels flagged {} of {with_text} RGB images",
        flagged.len()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
