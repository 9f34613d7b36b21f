//! Veil's pixel layer: what the pixels of a DICOM object *show*, as plain
//! 8-bit grayscale, so that later stages can look for burned-in PHI
//! (`veil verify --pixels`) and clean it.
//!
//! Why a separate crate: reading pixels needs codecs (JPEG, JPEG-LS,
//! JPEG 2000, RLE), an OCR engine and a font rasterizer, none of which the
//! header path (`veil deid`) should link or trust. Everything here starts
//! from [`veil_io::read`], so headers are parsed by the same code that
//! de-identifies them, and pixel data is read from disk frame by frame.
//!
//! * [`decode_frames`] / [`FrameReader`]: every frame as [`Frame`] (8-bit
//!   gray, windowed for reading: burned-in text stays visible).
//! * [`overlays`]: overlay planes (60xx,3000) as bitmaps.
//! * [`jpeg`]: COM/APPn segments of JPEG streams (where text hides outside
//!   the pixels), stripping them, and the fragments of encapsulated data.
//! * [`ocr`] (feature `ocr`): words read by Tesseract, with boxes.
//! * [`text`]: draws text with a TrueType font (tests, PHI planting).
//! * [`thumbnail_png`]: a small PNG with given boxes blacked out.
//!
//! Errors never carry file paths or element values: both can be PHI.

mod bulk;
pub mod clean;
mod decode;
mod encap;
mod encode;
pub mod jpeg;
#[cfg(feature = "ocr")]
pub mod ocr;
mod overlay;
mod raw;
pub mod text;
mod thumb;

pub use decode::{decode_frames, decode_frames_limit, Frame, FrameReader};
pub use encap::encapsulated_fragments;
pub use encode::{lossy_method, EncodePolicy, Encoded, FrameEncoder, LOSSY_QUALITY};
pub use image::GrayImage;
pub use overlay::{overlays, Overlay};
pub use raw::{black_value, fill_rects, RawFrame, RawLayout, RawReader, Rect};
pub use thumb::thumbnail_png;

/// Why pixels could not be read. Messages name kinds, tags and transfer
/// syntax UIDs only, never paths or values (both may be PHI).
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    /// The header could not be parsed.
    #[error("cannot read header: {0}")]
    Read(#[from] veil_io::ReadError),
    /// The object has no Pixel Data (7FE0,0010): not an image (SR, RT plan,
    /// presentation state...). Float/double pixel data also lands here.
    #[error("no pixel data")]
    NoPixelData,
    /// A valid encoding Veil does not decode (named, so a report can list
    /// what to add).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Attributes or pixel data inconsistent with each other or truncated.
    #[error("malformed pixel data: {0}")]
    Malformed(String),
    /// The codec rejected the data.
    #[error("cannot decode pixel data ({ts}): {detail}")]
    Decode {
        /// transfer syntax UID
        ts: String,
        /// the codec's reason
        detail: String,
    },
    /// I/O failure (kind only).
    #[error("I/O error reading pixel data: {0:?}")]
    Io(std::io::ErrorKind),
    /// Decoding would go past one of Veil's bounds on untrusted input
    /// ([`veil_core::limits`]): a frame larger than its data can encode,
    /// or than Veil decodes at all.
    #[error("over the {} limit of {max}", limit.name())]
    Limit {
        /// which bound
        limit: veil_core::Limit,
        /// the bound
        max: u64,
    },
}

impl PixelError {
    /// True when the data is valid but Veil has no decoder for it: a
    /// caller should route such objects to review rather than call them
    /// broken.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, PixelError::Unsupported(_))
    }
}

impl From<std::io::Error> for PixelError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            PixelError::Malformed("value extends past the end of the file".into())
        } else {
            PixelError::Io(e.kind())
        }
    }
}
