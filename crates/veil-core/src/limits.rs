//! Bounds on what parsing untrusted bytes may cost.
//!
//! Why one place: every parser Veil runs on input (DICOM headers, deflated
//! data sets, PDF streams, gzip NIfTI, pixel codecs) must stop a hostile
//! or broken file before it exhausts the stack or memory, and the bounds
//! must be the same wherever the same kind of input is read. A file over a
//! limit is quarantined with [`crate::QuarantineReason::LimitExceeded`]
//! naming the [`Limit`]; the batch goes on.

use std::io::{self, Read};

/// Which bound a file went past. Serialized in kebab-case in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Sequences nested deeper than [`MAX_SEQUENCE_DEPTH`]: parsing them
    /// recursively would overflow the stack (a 4 MB file did).
    SequenceDepth,
    /// Compressed data (deflated data set, PDF stream, gzip NIfTI) that
    /// inflates past [`inflate_cap`] of its compressed size.
    InflatedSize,
    /// A decoded pixel frame larger than the data present allows, or than
    /// [`MAX_FRAME_BYTES`].
    FrameSize,
}

impl Limit {
    /// The limit's name as reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::SequenceDepth => "sequence depth",
            Limit::InflatedSize => "inflated size",
            Limit::FrameSize => "frame size",
        }
    }
}

/// Deepest sequence nesting accepted. Real objects nest a handful of
/// levels (enhanced multi-frame and SR trees stay under 16); 64 leaves
/// room and keeps the parser's and every tree walker's recursion shallow.
pub const MAX_SEQUENCE_DEPTH: u64 = 64;

/// How much larger than its input compressed data may inflate.
/// Deflate itself cannot exceed about 1032:1; text, headers and images
/// compress 2-20:1, mostly-black images more, which [`INFLATE_FLOOR`]
/// covers for small inputs.
pub const INFLATE_RATIO: u64 = 64;

/// Any input may inflate to at least this much, whatever its size: a
/// small deflated object with a blank image or a label-map NIfTI
/// compresses far past [`INFLATE_RATIO`] and is legitimate.
pub const INFLATE_FLOOR: u64 = 256 << 20;

/// No input inflates past this, whatever its size: the most memory one
/// file's inflated copy may take while a batch runs several at once.
pub const INFLATE_MAX: u64 = 2 << 30;

/// The most bytes `input_len` compressed bytes may inflate to:
/// [`INFLATE_RATIO`] times the input, at least [`INFLATE_FLOOR`], at most
/// [`INFLATE_MAX`].
pub fn inflate_cap(input_len: u64) -> u64 {
    input_len
        .saturating_mul(INFLATE_RATIO)
        .clamp(INFLATE_FLOOR, INFLATE_MAX)
}

/// Largest decoded pixel frame accepted, in bytes (rows x columns x
/// samples x bytes per sample). 256 MiB holds a 14 x 17 inch film
/// digitized at 50 um in 16 bits (123 MB), the largest single frames seen;
/// whole-slide images are tiled far below that. Reading a frame for OCR
/// takes several times its size again. Each decoder also checks
/// the frame against the compressed data actually present where its
/// format bounds the ratio (native, RLE).
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

/// Reads `r` to its end into memory, or `Ok(None)` as soon as it yields
/// more than `cap` bytes: an inflating reader stops there, so memory never
/// goes much past `cap` whatever the stream claims.
pub fn read_capped(r: impl Read, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    r.take(cap.saturating_add(1)).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= cap).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_a_multiple_of_the_input_between_floor_and_max() {
        assert_eq!(inflate_cap(0), INFLATE_FLOOR);
        assert_eq!(inflate_cap(10 << 20), 640 << 20);
        assert_eq!(inflate_cap(u64::MAX), INFLATE_MAX);
    }

    #[test]
    fn read_capped_stops_past_the_cap() {
        assert_eq!(read_capped(&[1u8; 10][..], 10).unwrap(), Some(vec![1; 10]));
        assert_eq!(read_capped(&[1u8; 11][..], 10).unwrap(), None);
        // an endless reader stops too
        assert_eq!(read_capped(io::repeat(0), 1000).unwrap(), None);
    }
}
