//! Every image in the corpus decodes, or fails with a clear reason.
#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;

use veil_pixels::{FrameReader, PixelError};

/// Files that are broken on purpose (truncated or inconsistent test data):
/// for these a Malformed or Decode error is the right answer.
const BROKEN: &[&str] = &[
    // Pixel Data with no Image Pixel attributes (a test of private sequences)
    "nested_priv_SQ.dcm",
    // a 250-byte JPEG 2000 codestream that openjp2 rejects
    "JPEG2000-embedded-sequence-delimiter.dcm",
];

#[test]
fn every_corpus_image_decodes_or_says_why() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    // ts -> (decoded files, frames, failures)
    let mut by_ts: BTreeMap<String, (u32, u32, Vec<String>)> = BTreeMap::new();
    let (mut not_dicom, mut no_image) = (0, 0);
    let mut bad = Vec::new();
    for path in common::files(&corpus) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(file) = veil_io::read(&path) else {
            not_dicom += 1;
            continue;
        };
        let entry = by_ts.entry(file.ts.uid.clone()).or_default();
        let result = FrameReader::new(&file).and_then(|mut r| {
            let mut n = 0;
            for f in r.iter() {
                let f = f?;
                let (w, h) = f.image.dimensions();
                assert!(w > 0 && h > 0);
                n += 1;
            }
            Ok(n)
        });
        match result {
            Ok(n) => {
                entry.0 += 1;
                entry.1 += n;
            }
            Err(PixelError::NoPixelData) => no_image += 1,
            Err(e) => {
                let clear = e.is_unsupported() || BROKEN.iter().any(|b| name.ends_with(b));
                entry.2.push(format!("{name}: {e}"));
                if !clear {
                    bad.push(format!("{name}: {e}"));
                }
            }
        }
    }
    eprintln!("not DICOM: {not_dicom}, no pixel data: {no_image}");
    for (ts, (ok, frames, fails)) in &by_ts {
        eprintln!(
            "{ts}: decoded {ok} files ({frames} frames), failed {}",
            fails.len()
        );
        for f in fails {
            eprintln!("    {f}");
        }
    }
    assert!(bad.is_empty(), "unclear failures:\n{}", bad.join("\n"));
}

/// The same image stored in different transfer syntaxes decodes to the
/// same gray frames (lossless ones only): checks byte order, RLE, JPEG-LS,
/// JPEG 2000 lossless and the native paths against each other.
#[test]
fn same_image_in_other_transfer_syntaxes_decodes_the_same() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let groups: &[&[&str]] = &[
        &[
            "test_files__MR_small.dcm",
            "MR_small_RLE.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_implicit.dcm",
            "MR_small_expb.dcm",
            "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_jp2klossless.dcm",
        ],
        &[
            "data__emri_small.dcm",
            "emri_small_RLE.dcm",
            "emri_small_big_endian.dcm",
            "emri_small_jpeg_ls_lossless.dcm",
            "emri_small_jpeg_2k_lossless.dcm",
        ],
        &[
            "data__SC_rgb.dcm",
            "test_files__SC_rgb_rle.dcm",
            "data__SC_rgb_expb.dcm",
        ],
        &[
            "data__SC_rgb_2frame.dcm",
            "SC_rgb_rle_2frame.dcm",
            "SC_rgb_expb_2frame.dcm",
        ],
        &[
            "data__SC_rgb_16bit.dcm",
            "SC_rgb_rle_16bit.dcm",
            "SC_rgb_expb_16bit.dcm",
        ],
        &[
            "data__SC_rgb_32bit.dcm",
            "SC_rgb_rle_32bit.dcm",
            "SC_rgb_expb_32bit.dcm",
        ],
        &[
            "OBXXXX1A_2frame.dcm",
            "OBXXXX1A_rle_2frame.dcm",
            "OBXXXX1A_expb_2frame.dcm",
        ],
        &[
            "test_files__rtdose.dcm",
            "rtdose_rle.dcm",
            "rtdose_expb.dcm",
        ],
        &["data__liver.dcm", "data__liver_expb.dcm"],
        &["gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm"],
        &["MR2_UNCR.dcm", "MR2_J2KR.dcm"],
        &["RG1_UNCR.dcm", "RG1_J2KR.dcm"],
    ];
    for group in groups {
        let reference = veil_pixels::decode_frames(&common::find(&corpus, group[0])).unwrap();
        assert!(!reference.is_empty());
        for other in &group[1..] {
            let frames = veil_pixels::decode_frames(&common::find(&corpus, other)).unwrap();
            assert_eq!(frames.len(), reference.len(), "{other}: frame count");
            for (a, b) in reference.iter().zip(&frames) {
                assert!(
                    a.image == b.image,
                    "{other}: frame {} differs from {}",
                    b.index,
                    group[0]
                );
            }
        }
    }
}
