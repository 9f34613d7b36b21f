//! JPEG COM/APPn segments in the corpus's JPEG files: listed, stripped,
//! and stripping leaves the decoded pixels unchanged.
#![allow(clippy::print_stderr)]

mod common;

use veil_pixels::jpeg::{encapsulated_fragments, metadata_segments, strip_metadata_segments};

const JPEG_TS: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
];

/// Inserts a COM, an APP1 (Exif-like) and an APP0 JFIF with a thumbnail
/// right after SOI: metadata a tool might have added.
fn with_metadata(stream: &[u8]) -> Vec<u8> {
    let seg = |marker: u8, payload: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    };
    let mut jfif = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x02\x01".to_vec();
    jfif.extend_from_slice(&[0x80; 6]); // 2x1 RGB thumbnail
    let mut out = stream[..2].to_vec();
    out.extend(seg(0xE0, &jfif));
    out.extend(seg(0xFE, b"PATIENT DOE^JANE 1234567"));
    out.extend(seg(0xE1, b"Exif\0\0II*\0 2019:01:02 10:11:12"));
    out.extend_from_slice(&stream[2..]);
    out
}

fn decode(stream: &[u8]) -> Vec<u8> {
    let mut d = jpeg_decoder::Decoder::new(stream);
    d.decode().expect("decodes")
}

#[test]
fn segments_are_listed_and_stripped_on_corpus_jpegs() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let mut streams = 0;
    let mut with_segments = 0;
    for path in common::files(&corpus) {
        let Ok(file) = veil_io::read(&path) else {
            continue;
        };
        if !JPEG_TS.contains(&file.ts.uid.as_str()) {
            continue;
        }
        let frags = match encapsulated_fragments(&file) {
            Err(veil_pixels::PixelError::NoPixelData) => continue,
            r => r.unwrap(),
        };
        assert!(!frags.is_empty());
        // first fragment of each file: a JPEG or JPEG-LS stream
        let s = &frags[0];
        assert_eq!(&s[..2], &[0xFF, 0xD8], "fragment starts with SOI");
        streams += 1;
        let segs = metadata_segments(s);
        if !segs.is_empty() {
            with_segments += 1;
        }
        for seg in &segs {
            assert!(seg.is_comment() || seg.app_number().is_some());
            assert!(seg.payload.end <= s.len());
            let len = u16::from_be_bytes([s[seg.payload.start - 2], s[seg.payload.start - 1]]);
            assert_eq!(len as usize, seg.payload.len() + 2);
        }
        let stripped = strip_metadata_segments(s);
        assert!(metadata_segments(&stripped)
            .iter()
            .all(|g| g.app_number() == Some(0) || g.app_number() == Some(14)));

        // Planted metadata is found, removed, and the pixels do not change
        // (jpeg-decoder reads baseline, extended 8-bit and lossless).
        let planted = with_metadata(s);
        let found = metadata_segments(&planted);
        assert_eq!(found[0].app_number(), Some(0));
        assert!(found[1].is_comment());
        assert_eq!(
            &planted[found[1].payload.clone()],
            b"PATIENT DOE^JANE 1234567"
        );
        assert_eq!(found[2].app_number(), Some(1));
        let clean = strip_metadata_segments(&planted);
        let after = metadata_segments(&clean);
        assert!(after
            .iter()
            .all(|g| !g.is_comment() && g.app_number() != Some(1)));
        let jfif = after.iter().find(|g| g.app_number() == Some(0)).unwrap();
        assert_eq!(
            &clean[jfif.payload.clone()][12..14],
            &[0, 0],
            "thumbnail removed"
        );
        assert!(!clean.windows(7).any(|w| w == b"PATIENT"));
        let is_jpeg_ls = matches!(
            file.ts.uid.as_str(),
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81"
        );
        let precision = s
            .windows(2)
            .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC1 | 0xC3))
            .map(|i| s[i + 4]);
        if !is_jpeg_ls && precision == Some(8) {
            // (the planted JFIF segment itself may change how a decoder
            // reads color, so planted is compared with planted-and-cleaned)
            assert!(decode(&planted) == decode(&clean), "pixels unchanged");
            assert!(
                decode(s) == decode(&strip_metadata_segments(s)),
                "pixels unchanged"
            );
        }
    }
    eprintln!("{streams} JPEG/JPEG-LS streams checked, {with_segments} had COM/APPn segments");
    assert!(streams >= 20);
}

#[test]
fn walking_stops_at_sos_and_survives_junk() {
    assert!(metadata_segments(b"not a jpeg").is_empty());
    assert!(metadata_segments(&[0xFF, 0xD8]).is_empty());
    // SOS, then entropy data that looks like a COM marker: not listed
    let s = [
        0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'h', b'i', 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xFE, 0x00,
        0x04, b'n', b'o', 0xFF, 0xD9,
    ];
    let segs = metadata_segments(&s);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].payload, 6..8);
    // a length that runs past the end: nothing past it
    let t = [0xFF, 0xD8, 0xFF, 0xE1, 0x01, 0x00, 1, 2];
    assert!(metadata_segments(&t).is_empty());
    assert_eq!(strip_metadata_segments(&t), t.to_vec());
}
