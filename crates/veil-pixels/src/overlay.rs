//! Overlay planes (PS3.3 C.9.2): 1-bit graphics that viewers draw over the
//! image. Why Veil renders them: they often carry annotations (names,
//! dates, measurements) that OCR must read just like burned-in text.

use image::GrayImage;
use veil_core::Tag;
use veil_io::DicomFile;

use crate::bulk::{Attrs, Bulk};
use crate::decode::FrameReader;
use crate::PixelError;

/// One frame of one overlay plane.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The repeating group, 0x6000 to 0x601E.
    pub group: u16,
    /// The image frame (from 0) this plane frame applies to.
    pub frame: u32,
    /// Where the bitmap's top-left pixel falls on the image, in pixels from
    /// the image's top-left (x, y); from Overlay Origin, which counts from
    /// 1. May be negative or outside the image.
    pub origin: (i32, i32),
    /// True for a legacy plane stored in unused high bits of the pixel
    /// data rather than in Overlay Data.
    pub embedded: bool,
    /// The plane: 255 where the bit is set, 0 elsewhere.
    pub image: GrayImage,
}

/// Renders every overlay plane of groups 6000–601E, every frame of each.
/// Overlay Data may be in the header or left on disk. Legacy planes in
/// the unused high bits of uncompressed pixel data are rendered too; in
/// compressed pixel data they are not (the codecs drop those bits), which
/// yields an [`PixelError::Unsupported`] error.
pub fn overlays(file: &DicomFile) -> Result<Vec<Overlay>, PixelError> {
    let a = Attrs {
        ds: &file.dataset,
        big_endian: file.ts.big_endian,
    };
    let mut bulk = Bulk::open(file)?;
    let mut out = Vec::new();
    for group in (0x6000u16..=0x601E).step_by(2) {
        let tag = |e: u16| Tag(group, e);
        let data = file.dataset.get(tag(0x3000));
        let (Some(rows), Some(cols)) = (a.u16(tag(0x0010)), a.u16(tag(0x0011))) else {
            continue;
        };
        let (rows, cols) = (rows as u32, cols as u32);
        if rows == 0 || cols == 0 {
            continue;
        }
        let origin = a.u16s(tag(0x0050));
        let origin = match origin.as_slice() {
            [r, c, ..] => (*c as i16 as i32 - 1, *r as i16 as i32 - 1),
            _ => (0, 0),
        };
        let frames = a
            .decimal(tag(0x0015))
            .map(|f| f.max(1.0) as u32)
            .unwrap_or(1);
        let first = a.u16(tag(0x0051)).unwrap_or(1).max(1) as u32 - 1;
        let bits_alloc = a.u16(tag(0x0100)).unwrap_or(1);
        let bit_pos = a.u16(tag(0x0102)).unwrap_or(0);
        let pixels = rows as usize * cols as usize;
        match data {
            Some(e) => {
                let mut b = bulk.value(e)?;
                if file.ts.big_endian && e.vr == dicom_core::VR::OW {
                    b.chunks_exact_mut(2).for_each(|c| c.swap(0, 1));
                }
                for k in 0..frames {
                    let start = k as usize * pixels;
                    if (start + pixels).div_ceil(8) > b.len() {
                        return Err(PixelError::Malformed(format!(
                            "overlay data of group {group:04X} shorter than its frames"
                        )));
                    }
                    let px = (start..start + pixels)
                        .map(|i| {
                            if (b[i / 8] >> (i % 8)) & 1 == 1 {
                                255
                            } else {
                                0
                            }
                        })
                        .collect();
                    out.push(Overlay {
                        group,
                        frame: first + k,
                        origin,
                        embedded: false,
                        image: GrayImage::from_raw(cols, rows, px)
                            .ok_or_else(|| PixelError::Malformed("overlay size".into()))?,
                    });
                }
            }
            None if bits_alloc > 1 => {
                let mut r = FrameReader::new(file)?;
                let (w, h) = r.size();
                if (w, h) != (cols, rows) {
                    return Err(PixelError::Unsupported(
                        "embedded overlay of a size other than the image".into(),
                    ));
                }
                for k in 0..frames.min(r.frame_count().saturating_sub(first)) {
                    let bits = r.embedded_bits(first + k, bit_pos)?;
                    let px = bits.into_iter().map(|b| if b { 255 } else { 0 }).collect();
                    out.push(Overlay {
                        group,
                        frame: first + k,
                        origin,
                        embedded: true,
                        image: GrayImage::from_raw(cols, rows, px)
                            .ok_or_else(|| PixelError::Malformed("overlay size".into()))?,
                    });
                }
            }
            None => {}
        }
    }
    Ok(out)
}
