//! JPEG marker segments that can carry text outside the pixels.
//!
//! Why: a JPEG stream inside DICOM (or exported from it) may hold comments
//! (COM) and application segments (APPn: EXIF with dates and device
//! names, XMP, ICC, vendor data) written by the modality or by a
//! conversion tool. They survive header de-identification because they are
//! inside Pixel Data. This module lists them and removes the ones decoders
//! do not need. JPEG-LS streams use the same marker syntax and are handled
//! too; JPEG 2000 is not JPEG-marker based and yields nothing.

pub use crate::encap::encapsulated_fragments;

/// One COM or APPn segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The marker's second byte: 0xFE for COM, 0xE0..=0xEF for APP0..APP15.
    pub marker: u8,
    /// Byte range of the payload in the stream (after the 2-byte length).
    pub payload: std::ops::Range<usize>,
}

impl Segment {
    /// True for a comment (COM).
    pub fn is_comment(&self) -> bool {
        self.marker == 0xFE
    }

    /// The n of APPn, for application segments.
    pub fn app_number(&self) -> Option<u8> {
        (0xE0..=0xEF)
            .contains(&self.marker)
            .then(|| self.marker - 0xE0)
    }
}

/// A marker segment in the header part of a stream (before SOS).
#[derive(Debug, Clone, Copy)]
struct Marker {
    code: u8,
    /// where the 0xFF of the marker is
    start: usize,
    /// one past the segment's last byte
    end: usize,
}

/// Walks the markers from SOI up to and including SOS (whose header is the
/// last thing before entropy-coded data). Stops quietly at anything that
/// is not a marker: a damaged stream lists what could be read.
fn markers(stream: &[u8]) -> Vec<Marker> {
    let mut out = Vec::new();
    if !stream.starts_with(&[0xFF, 0xD8]) {
        return out;
    }
    let mut pos = 2;
    loop {
        if pos >= stream.len() || stream[pos] != 0xFF {
            break;
        }
        let start = pos;
        // Any number of 0xFF fill bytes may precede a marker code.
        while pos < stream.len() && stream[pos] == 0xFF {
            pos += 1;
        }
        let Some(&code) = stream.get(pos) else { break };
        pos += 1;
        // Standalone markers: TEM, RSTn, SOI, EOI.
        if code == 0x01 || (0xD0..=0xD9).contains(&code) {
            out.push(Marker {
                code,
                start,
                end: pos,
            });
            if code == 0xD9 {
                break;
            }
            continue;
        }
        let Some(len) = stream.get(pos..pos + 2) else {
            break;
        };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len < 2 || pos + len > stream.len() {
            break;
        }
        pos += len;
        out.push(Marker {
            code,
            start,
            end: pos,
        });
        if code == 0xDA {
            break;
        }
    }
    out
}

/// The COM and APPn segments of a JPEG (or JPEG-LS) stream, in order.
/// Only the header part, up to the first SOS, is walked: metadata segments
/// live there, and scanning entropy-coded data for marker-like bytes would
/// find false ones. Empty for anything that does not start with SOI.
pub fn metadata_segments(stream: &[u8]) -> Vec<Segment> {
    markers(stream)
        .into_iter()
        .filter(|m| m.code == 0xFE || (0xE0..=0xEF).contains(&m.code))
        .map(|m| Segment {
            marker: m.code,
            payload: m.start + 4..m.end,
        })
        .collect()
}

/// Copies a stream without its COM and APP1..APP15 segments, keeping what
/// decoders need: APP0 "JFIF" (with any embedded thumbnail removed, as a
/// thumbnail is a picture that may show the same PHI) and APP14 "Adobe"
/// (its transform flag says whether the data is YCbCr or RGB). APP0 JFXX
/// extension (thumbnails only) and any other APP0/APP14 are dropped.
/// Everything from SOS on is copied unchanged, so decoded pixels are
/// identical. A stream that does not start with SOI is returned as is.
pub fn strip_metadata_segments(stream: &[u8]) -> Vec<u8> {
    let ms = markers(stream);
    let Some(last) = ms.last() else {
        return stream.to_vec();
    };
    let mut out = Vec::with_capacity(stream.len());
    out.extend_from_slice(&stream[..2]);
    let mut copied_to = 2;
    for m in &ms {
        let payload = &stream[(m.start + 4).min(m.end)..m.end];
        let keep = match m.code {
            0xE0 if payload.starts_with(b"JFIF\0") && payload.len() >= 14 => {
                // Rewrite without the thumbnail: 14 bytes, 0x0 thumbnail.
                out.extend_from_slice(&[0xFF, 0xE0, 0x00, 16]);
                out.extend_from_slice(&payload[..12]);
                out.extend_from_slice(&[0, 0]);
                copied_to = m.end;
                continue;
            }
            0xEE => payload.starts_with(b"Adobe"),
            0xFE | 0xE0..=0xEF => false,
            _ => true,
        };
        if keep {
            out.extend_from_slice(&stream[m.start..m.end]);
        }
        copied_to = m.end;
    }
    debug_assert_eq!(copied_to, last.end);
    out.extend_from_slice(&stream[copied_to..]);
    out
}
