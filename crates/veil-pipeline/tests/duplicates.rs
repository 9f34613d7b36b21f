//! Issue 21: copies of one instance are recognized before the pixel
//! stage, so decoding and OCR run once per instance, and the first input
//! in input order is still the one released.
//!
//! How "once" is seen without timing anything: the report counts the
//! inputs the pixel stage was run on (`counts.pixel_stage`), and a row
//! carries a pixel entry when the stage ran for it (frames screened,
//! lines read). Before this change every copy in a chunk had one (and its
//! own row on the review page), and a copy in a later chunk was run
//! through the stage too, its entry dropped.
//!
//! The object is made here: a 3-frame 8-bit ultrasound with the
//! patient's name and MRN burned into every frame (no corpus needed).
#![cfg(feature = "ocr")]

use std::path::{Path, PathBuf};

use veil_core::ProfileOption;
use veil_deid::{Key, Policy};
use veil_pipeline::object::{deid_object, ObjectOptions};
use veil_pipeline::{Batch, Outcome, Report};

const FRAMES: u32 = 3;
const COLS: u32 = 320;
const ROWS: u32 = 96;

/// One element in Explicit VR Little Endian.
fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if matches!(vr, b"UI" | b"OB") { 0 } else { b' ' });
    }
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&v);
}

/// The multi-frame object with burned-in text, as Part 10 bytes.
fn cine_with_text() -> Vec<u8> {
    const CLASS: &[u8] = b"1.2.840.10008.5.1.4.1.1.3.1";
    const INSTANCE: &[u8] = b"1.2.826.0.1.3680043.10.1021.21.1";
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(&mut meta, 0x0002, 0x0002, b"UI", CLASS);
    element(&mut meta, 0x0002, 0x0003, b"UI", INSTANCE);
    element(&mut meta, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1");
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    element(
        &mut f,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    f.extend_from_slice(&meta);
    let us = |v: u32| (v as u16).to_le_bytes();
    element(&mut f, 0x0008, 0x0016, b"UI", CLASS);
    element(&mut f, 0x0008, 0x0018, b"UI", INSTANCE);
    element(&mut f, 0x0008, 0x0020, b"DA", b"20240102");
    element(&mut f, 0x0008, 0x0060, b"CS", b"US");
    element(&mut f, 0x0010, 0x0010, b"PN", b"DOE^JOHN");
    element(&mut f, 0x0010, 0x0020, b"LO", b"MRN48213");
    element(&mut f, 0x0010, 0x0030, b"DA", b"19700101");
    element(
        &mut f,
        0x0020,
        0x000D,
        b"UI",
        b"1.2.826.0.1.3680043.10.1021.21.2",
    );
    element(
        &mut f,
        0x0020,
        0x000E,
        b"UI",
        b"1.2.826.0.1.3680043.10.1021.21.3",
    );
    element(&mut f, 0x0020, 0x0013, b"IS", b"1");
    element(&mut f, 0x0028, 0x0002, b"US", &us(1));
    element(&mut f, 0x0028, 0x0004, b"CS", b"MONOCHROME2");
    element(&mut f, 0x0028, 0x0008, b"IS", FRAMES.to_string().as_bytes());
    element(&mut f, 0x0028, 0x0010, b"US", &us(ROWS));
    element(&mut f, 0x0028, 0x0011, b"US", &us(COLS));
    element(&mut f, 0x0028, 0x0100, b"US", &us(8));
    element(&mut f, 0x0028, 0x0101, b"US", &us(8));
    element(&mut f, 0x0028, 0x0102, b"US", &us(7));
    element(&mut f, 0x0028, 0x0103, b"US", &us(0));
    let mut pixels = Vec::new();
    for frame in 0..FRAMES {
        let mut img = veil_pixels::GrayImage::new(COLS, ROWS);
        for (i, p) in img.iter_mut().enumerate() {
            let (x, y) = (i as u32 % COLS, i as u32 / COLS);
            // a dim gradient that moves from frame to frame
            *p = ((x + y + 7 * frame) % 40) as u8;
        }
        veil_pixels::text::draw_text(&mut img, "DOE JOHN", 8, 8, 24.0, 255).expect("font");
        veil_pixels::text::draw_text(&mut img, "MRN48213", 8, 52, 24.0, 255).expect("font");
        pixels.extend_from_slice(img.as_raw());
    }
    element(&mut f, 0x7FE0, 0x0010, b"OB", &pixels);
    f
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("veil-dup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

fn policy() -> Policy {
    Policy::new(
        veil_rules::Recipe::default(),
        &[ProfileOption::CleanPixelData, ProfileOption::CleanGraphics],
        Key::from_bytes([21; 32]),
    )
    .expect("policy")
}

fn run(policy: &Policy, input: &Path, dir: &Path) -> Report {
    Batch {
        inputs: vec![input.to_path_buf()],
        out: dir.join("out"),
        review: dir.join("review"),
        jobs: 2,
        policy,
        dicomdir: false,
        verify: None,
    }
    .run(&|_, _| {})
    .expect("batch")
}

/// The file name of a row's input.
fn name(r: &veil_pipeline::FileResult) -> String {
    Path::new(r.input.expose())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every `.dcm` under `root`, relative name and bytes.
fn outputs(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = veil_pipeline::walk(&[root.to_path_buf()])
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            (rel, std::fs::read(&p).expect("read output"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn copies_of_a_cine_run_the_pixel_stage_once() {
    let dir = scratch("copies");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("in");
    let cine = cine_with_text();
    let copies = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"];
    for n in copies {
        veil_io::atomic::write_all(&input.join(n), &cine).expect("write copy");
    }
    let policy = policy();
    let report = run(&policy, &input, &dir);
    assert_eq!(report.counts.inputs, copies.len());
    assert_eq!(report.counts.duplicates, copies.len() - 1);
    assert_eq!(report.counts.written + report.counts.review, 1);
    assert_eq!(report.counts.pixel_stage, 1, "the pixel stage ran once");
    let mut screened = Vec::new();
    for r in &report.files {
        let n = name(r);
        match &r.outcome {
            Outcome::Written { .. } | Outcome::Review { .. } => {
                assert_eq!(n, "a.dcm", "the first input in input order is released")
            }
            Outcome::DuplicateInstance { .. } => {}
            o => panic!("{n}: unexpected outcome {}", o.kind()),
        }
        if let Some(p) = &r.pixels {
            screened.push((n, p.frames));
        }
    }
    assert_eq!(
        screened,
        vec![("a.dcm".to_string(), FRAMES)],
        "the pixel stage ran once, on the first copy, over every frame"
    );
    // the released bytes are those of the object on its own
    let one = deid_object(&policy, cine.clone(), &ObjectOptions::default());
    let root = match &report.files[0].outcome {
        Outcome::Written { .. } => dir.join("out"),
        _ => dir.join("review"),
    };
    let out = outputs(&root);
    assert_eq!(out.len(), 1, "one output for the instance");
    assert_eq!(Some(&out[0].0), one.name.as_ref());
    assert!(one.output.as_deref() == Some(&out[0].1[..]), "bytes differ");

    // a rerun into the same OUT: the first is already done, the copies
    // are still duplicates, and none of them reaches the pixel stage
    let again = run(&policy, &input, &dir);
    assert_eq!(again.counts.pixel_stage, 1);
    let kinds: Vec<(String, &str, bool)> = again
        .files
        .iter()
        .map(|r| (name(r), r.outcome.kind(), r.pixels.is_some()))
        .collect();
    // (the output's place decides "already done", so the first copy is
    // still read to the end; what the rerun no longer repeats is the copies)
    assert_eq!(kinds[0], ("a.dcm".to_string(), "already-done", true));
    for k in &kinds[1..] {
        assert_eq!((k.1, k.2), ("duplicate-instance", false), "{}", k.0);
    }
    assert_eq!(outputs(&root), out, "the rerun leaves the output as it was");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_copy_in_a_later_chunk_skips_the_pixel_stage() {
    // the first copy, then enough other files to fill the chunk (256
    // inputs per commit), then the second copy in the next chunk
    let dir = scratch("chunks");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).expect("in");
    let cine = cine_with_text();
    veil_io::atomic::write_all(&input.join("a.dcm"), &cine).expect("write copy");
    for i in 0..256 {
        veil_io::atomic::write_all(&input.join(format!("b{i:03}.txt")), b"not DICOM")
            .expect("filler");
    }
    veil_io::atomic::write_all(&input.join("c.dcm"), &cine).expect("write copy");
    let report = run(&policy(), &input, &dir);
    assert_eq!(report.counts.inputs, 258);
    assert_eq!(report.counts.not_dicom, 256);
    assert_eq!(report.counts.duplicates, 1);
    assert_eq!(report.counts.pixel_stage, 1, "the pixel stage ran once");
    let rows: Vec<(String, &str, bool)> = report
        .files
        .iter()
        .filter(|r| name(r).ends_with(".dcm"))
        .map(|r| (name(r), r.outcome.kind(), r.pixels.is_some()))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].0.as_str(), rows[0].2), ("a.dcm", true));
    assert!(matches!(rows[0].1, "written" | "review"), "{}", rows[0].1);
    assert_eq!(
        rows[1],
        ("c.dcm".to_string(), "duplicate-instance", false),
        "the later copy is a duplicate and was not screened"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
