//! Issue 21: 12-bit JPEG Extended (process 4) frames decode, graded by a
//! decoder we did not write. Every corpus file in JPEG Extended whose
//! stream has 12-bit samples is decoded with our frame reader and with
//! dcmtk's `dcmdjpeg` (the IJG library built for 12 bits); the samples
//! must agree exactly or within the ±1 that two IJG-style integer IDCTs
//! may round apart. The corpus has one such image (twice); dcmtk's
//! `dcmcjpeg +ee` also writes two more from 12-bit corpus images: ten
//! frames of MONOCHROME2, and a MONOCHROME1 radiograph.
#![allow(clippy::print_stderr)] // the test prints what it measured

use std::path::Path;
use std::process::Command;

use veil_core::Tag;
use veil_pixels::{RawFrame, RawReader};

const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// The most two correct integer IDCTs may differ by (IJG's islow against
/// another implementation's rounding).
const TOLERANCE: i32 = 1;
/// 12-bit uncompressed corpus images that dcmtk compresses as process 4.
const TO_COMPRESS: [&str; 2] = [
    "data_store__data__emri_small.dcm",
    "pydicom__data__test_files__dicomdirtests__77654033__CR2__6247",
];

/// Bits Stored of a parsed file (US, little endian: JPEG Extended is).
fn bits_stored(f: &veil_io::DicomFile) -> Option<u16> {
    match &f.dataset.get(Tag(0x0028, 0x0101))?.value {
        veil_io::Value::Bytes(b) if b.len() >= 2 => Some(u16::from_le_bytes([b[0], b[1]])),
        _ => None,
    }
}

fn frames(path: &Path) -> (u16, Vec<RawFrame>) {
    let f = veil_io::read(path).expect("file parses");
    let mut r = RawReader::new(&f).expect("pixel data readable");
    let frames = (0..r.frame_count())
        .map(|i| r.frame(i).expect("frame decodes"))
        .collect();
    (r.layout().bits_alloc, frames)
}

fn words(bits_alloc: u16, f: &RawFrame) -> Vec<i32> {
    assert_eq!(bits_alloc, 16, "12-bit samples come in 16-bit words");
    f.data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
        .collect()
}

#[test]
fn twelve_bit_jpeg_extended_matches_dcmtk() {
    let Some(corpus) = veil_test::corpus() else {
        return;
    };
    let scratch = veil_test::scratch("jpeg12-dcmtk");
    let all = veil_test::files(&corpus);
    // (file, what the test calls it)
    let mut inputs: Vec<(std::path::PathBuf, String)> = all
        .iter()
        .filter(|p| {
            veil_io::read(p).is_ok_and(|f| f.ts.uid == JPEG_EXTENDED && bits_stored(&f) == Some(12))
        })
        .map(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            (p.clone(), name.into_owned())
        })
        .collect();
    for (i, name) in TO_COMPRESS.iter().enumerate() {
        let src = all
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == *name))
            .unwrap_or_else(|| panic!("corpus file {name}"));
        let made = scratch.join(format!("made{i}.dcm"));
        let res = Command::new("dcmcjpeg")
            .arg("+ee")
            .arg(src)
            .arg(&made)
            .output()
            .expect("run dcmcjpeg (install dcmtk: scripts/system-deps.sh)");
        assert!(
            res.status.success(),
            "dcmcjpeg failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        inputs.push((made, format!("{name} (dcmcjpeg +ee)")));
    }
    let mut checked = 0;
    for (n, (path, name)) in inputs.iter().enumerate() {
        let f = veil_io::read(path).expect("file parses");
        assert_eq!(f.ts.uid, JPEG_EXTENDED);
        assert_eq!(bits_stored(&f), Some(12));
        let (ba, ours) = frames(path);
        let native = scratch.join(format!("{n}.dcm"));
        let res = Command::new("dcmdjpeg")
            .arg(path)
            .arg(&native)
            .output()
            .expect("run dcmdjpeg (install dcmtk: scripts/system-deps.sh)");
        assert!(
            res.status.success(),
            "dcmdjpeg failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (ba2, theirs) = frames(&native);
        assert_eq!(ours.len(), theirs.len(), "frame count");
        let (mut max, mut differing, mut total) = (0, 0usize, 0usize);
        for (a, b) in ours.iter().zip(&theirs) {
            let (a, b) = (words(ba, a), words(ba2, b));
            assert_eq!(a.len(), b.len(), "frame length");
            assert!(a.iter().all(|v| *v < 4096), "samples within 12 bits");
            // an image, not a blank (both decoders agreeing on zeros would
            // prove nothing), and one that 8 bits could not hold
            let distinct: std::collections::BTreeSet<i32> = a.iter().copied().collect();
            assert!(
                distinct.len() > 100 && distinct.last() > Some(&255),
                "a real image, with values past 8 bits"
            );
            for (x, y) in a.iter().zip(&b) {
                let d = (x - y).abs();
                max = max.max(d);
                differing += (d != 0) as usize;
            }
            total += a.len();
        }
        eprintln!(
            "{name}: {} frame(s), {total} samples, {differing} differ, max difference {max}",
            ours.len()
        );
        assert!(max <= TOLERANCE, "{name}: max difference {max} from dcmtk");
        checked += 1;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        checked > TO_COMPRESS.len(),
        "no 12-bit JPEG Extended file in the corpus"
    );
}
