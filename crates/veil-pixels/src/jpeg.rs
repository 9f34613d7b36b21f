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

/// Width, height and component count a JPEG, JPEG-LS or JPEG 2000
/// codestream declares for itself (SOFn / SOF55, or the SIZ segment), or
/// `None` when it does not start like one. Why: the codecs allocate and
/// copy what the codestream declares, not what Rows, Columns and Samples
/// per Pixel say: a 100-byte stream declaring 65535 x 65535 would cost
/// gigabytes, and one larger than the frame made the JPEG 2000 adapter
/// index past its buffer (found by fuzzing); the frame reader compares
/// the two before decoding.
pub(crate) fn declared_size(stream: &[u8]) -> Option<(u32, u32, u16)> {
    if stream.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        // SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz
        // Csiz (ITU-T T.800 A.5.1)
        let be32 = |at: usize| {
            let b = stream.get(at..at + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (x, y, xo, yo) = (be32(8)?, be32(12)?, be32(16)?, be32(20)?);
        let c = stream.get(40..42)?;
        return Some((
            x.saturating_sub(xo),
            y.saturating_sub(yo),
            u16::from_be_bytes([c[0], c[1]]),
        ));
    }
    let sof = markers(stream).into_iter().find(|m| {
        matches!(m.code, 0xC0..=0xCF if !matches!(m.code, 0xC4 | 0xC8 | 0xCC)) || m.code == 0xF7
    })?;
    // SOFn: length(2) P(1) Y(2) X(2) Nf(1)
    let b = stream.get(sof.start + 5..sof.start + 10)?;
    Some((
        u16::from_be_bytes([b[2], b[3]]) as u32,
        u16::from_be_bytes([b[0], b[1]]) as u32,
        b[4] as u16,
    ))
}

/// The sample precision of a sequential DCT JPEG frame (SOF0, SOF1:
/// Huffman-coded processes 1, 2 and 4), or `None` for any other stream.
/// Why: JPEG Extended carries 8-bit (process 2) and 12-bit (process 4)
/// frames under one transfer syntax, and only the header tells the frame
/// reader which decoder can read it.
pub(crate) fn sequential_dct_precision(stream: &[u8]) -> Option<u8> {
    let sof = markers(stream).into_iter().find(|m| {
        matches!(m.code, 0xC0..=0xCF if !matches!(m.code, 0xC4 | 0xC8 | 0xCC)) || m.code == 0xF7
    })?;
    if !matches!(sof.code, 0xC0 | 0xC1) {
        return None;
    }
    // SOFn: length(2) P(1)
    stream.get(sof.start + 4).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_sizes() {
        // SOI, SOF0 (len 11, P 8, Y 3, X 5, 1 component)
        let jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0, 3, 0, 5, 1, 1, 0x11, 0];
        assert_eq!(declared_size(&jpeg), Some((5, 3, 1)));
        assert_eq!(sequential_dct_precision(&jpeg), Some(8));
        let mut sof1 = jpeg;
        (sof1[3], sof1[6]) = (0xC1, 12);
        assert_eq!(sequential_dct_precision(&sof1), Some(12));
        let mut lossless = jpeg;
        lossless[3] = 0xC3;
        assert_eq!(sequential_dct_precision(&lossless), None);
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [640u32, 480, 0, 0, 640, 480, 0, 0] {
            j2k.extend(v.to_be_bytes());
        }
        j2k.extend(3u16.to_be_bytes());
        assert_eq!(declared_size(&j2k), Some((640, 480, 3)));
        assert_eq!(declared_size(b"not a codestream"), None);
    }
}
