//! Stored pixel values, decoded with dicom-pixeldata directly.
//!
//! Why not veil-pixels' frame reader: the text set measures Veil's pixel
//! stage, so it must not share that stage's decoding path. Values here are
//! the stored sample values (no modality or VOI LUT), one `i32` per
//! sample, interleaved (`R G B R G B...` or `Y Cb Cr...`), frame after
//! frame; YBR_FULL_422 is expanded to one (Y, Cb, Cr) per pixel.

use std::path::Path;

use dicom_core::Tag as DTag;
use dicom_object::{open_file, DefaultDicomObject};
use dicom_pixeldata::{PixelDecoder, PixelRepresentation, PlanarConfiguration};

/// Decoded stored values of every frame.
#[derive(Debug, Clone)]
pub struct Pixels {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Number of frames.
    pub frames: u32,
    /// Samples per pixel (1 or 3).
    pub spp: u32,
    /// Photometric interpretation as decoded (dicom-pixeldata reports RGB
    /// for colour data it decompressed).
    pub pi: String,
    /// Bits allocated (8 or 16).
    pub bits_allocated: u16,
    /// Bits stored.
    pub bits_stored: u16,
    /// Two's complement samples.
    pub signed: bool,
    /// frames × rows × cols × spp values.
    pub data: Vec<i32>,
    /// Palette (R, G, B) per index, 0..=1 each, for PALETTE COLOR.
    pub palette: Option<Palette>,
}

/// A palette colour lookup table, as luminance per stored index.
#[derive(Debug, Clone)]
pub struct Palette {
    /// First stored value mapped.
    pub first: i32,
    /// Luminance (0..=1) of each entry.
    pub luma: Vec<f32>,
}

impl Palette {
    /// Luminance of a stored index (clamped to the table as PS3.3 says).
    pub fn luma_of(&self, v: i32) -> f32 {
        let i = (v - self.first).clamp(0, self.luma.len() as i32 - 1);
        self.luma[i as usize]
    }
}

impl Pixels {
    /// Values per frame.
    pub fn frame_len(&self) -> usize {
        (self.rows * self.cols * self.spp) as usize
    }
    /// The samples of pixel (x, y) in `frame`.
    pub fn at(&self, frame: u32, x: u32, y: u32) -> &[i32] {
        let s = self.spp as usize;
        let i = frame as usize * self.frame_len() + ((y * self.cols + x) as usize) * s;
        &self.data[i..i + s]
    }
    /// Mutable samples of pixel (x, y).
    pub fn at_mut(&mut self, frame: u32, x: u32, y: u32) -> &mut [i32] {
        let s = self.spp as usize;
        let i = frame as usize * self.frame_len() + ((y * self.cols + x) as usize) * s;
        &mut self.data[i..i + s]
    }
    /// Smallest and largest representable stored value.
    pub fn value_range(&self) -> (i32, i32) {
        let bs = self.bits_stored.clamp(1, 16) as u32;
        if self.signed {
            (-(1 << (bs - 1)), (1 << (bs - 1)) - 1)
        } else {
            (0, ((1u32 << bs) - 1) as i32)
        }
    }
    /// What a reader sees of a pixel, 0..=1 before windowing: luminance
    /// for colour, the palette entry's luminance, else the scaled value.
    pub fn luma(&self, frame: u32, x: u32, y: u32) -> f32 {
        let p = self.at(frame, x, y);
        let (lo, hi) = self.value_range();
        let span = (hi - lo).max(1) as f32;
        match (self.spp, &self.palette) {
            (3, _) if self.pi.starts_with("YBR") => (p[0] - lo) as f32 / span,
            (3, _) => {
                (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32 - lo as f32) / span
            }
            (_, Some(pal)) => pal.luma_of(p[0]),
            _ => (p[0] - lo) as f32 / span,
        }
    }
    /// Gives both pixels of each 4:2:2 pair their mean chroma, as storing
    /// them does (so that these values are exactly what a decoder returns).
    pub fn settle_422(&mut self) {
        if self.pi != "YBR_FULL_422" || self.spp != 3 {
            return;
        }
        for f in 0..self.frames {
            for y in 0..self.rows {
                for x in (0..self.cols.saturating_sub(1)).step_by(2) {
                    let (a, b) = (self.at(f, x, y).to_vec(), self.at(f, x + 1, y).to_vec());
                    for c in 1..3 {
                        let m = (a[c] + b[c] + 1) / 2;
                        self.at_mut(f, x, y)[c] = m;
                        self.at_mut(f, x + 1, y)[c] = m;
                    }
                }
            }
        }
    }
    /// Stored values back to native little-endian bytes, interleaved
    /// (Planar Configuration 0), subsampled again for YBR_FULL_422.
    pub fn to_native(&self) -> Vec<u8> {
        let two = self.bits_allocated == 16;
        let mut out = Vec::with_capacity(self.data.len() * if two { 2 } else { 1 });
        let mut put = |v: i32| {
            if two {
                out.extend_from_slice(&(v as u16).to_le_bytes());
            } else {
                out.push(v as u8);
            }
        };
        if self.pi == "YBR_FULL_422" && self.spp == 3 {
            for f in 0..self.frames {
                for y in 0..self.rows {
                    for x in (0..self.cols).step_by(2) {
                        let a = self.at(f, x, y).to_vec();
                        let b = self.at(f, (x + 1).min(self.cols - 1), y).to_vec();
                        put(a[0]);
                        put(b[0]);
                        put((a[1] + b[1] + 1) / 2);
                        put((a[2] + b[2] + 1) / 2);
                    }
                }
            }
        } else {
            self.data.iter().for_each(|&v| put(v));
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
        out
    }
}

/// Why a file's pixels could not be read (kinds only, no values).
pub type DecodeError = String;

/// Decodes every frame of `path` with dicom-pixeldata.
pub fn decode(path: &Path) -> Result<Pixels, DecodeError> {
    let obj = open_file(path).map_err(|e| format!("cannot open: {}", kind(&e.to_string())))?;
    decode_obj(&obj)
}

fn kind(s: &str) -> String {
    // library messages name attributes and codecs, not values; keep the
    // first clause only
    s.split(':').next().unwrap_or("").to_string()
}

/// Decodes an already opened object.
pub fn decode_obj(obj: &DefaultDicomObject) -> Result<Pixels, DecodeError> {
    let d = obj
        .decode_pixel_data()
        .map_err(|e| format!("cannot decode: {}", kind(&e.to_string())))?;
    let (rows, cols, frames) = (d.rows(), d.columns(), d.number_of_frames());
    let spp = d.samples_per_pixel() as u32;
    let ba = d.bits_allocated();
    let bs = d.bits_stored();
    let signed = matches!(d.pixel_representation(), PixelRepresentation::Signed);
    let pi = d.photometric_interpretation().as_str().to_string();
    if ba != 8 && ba != 16 {
        return Err(format!("{ba} bits allocated"));
    }
    if spp != 1 && spp != 3 {
        return Err(format!("{spp} samples per pixel"));
    }
    let raw = d.data();
    let bytes = (ba / 8) as usize;
    let pixels = (rows * cols) as usize;
    let full = pixels * spp as usize * bytes;
    let sub422 = spp == 3 && pi == "YBR_FULL_422" && raw.len() < full * frames as usize;
    let per_frame = if sub422 { pixels * 2 * bytes } else { full };
    if raw.len() < per_frame * frames as usize {
        return Err("pixel data shorter than the attributes say".into());
    }
    let bs_c = bs.clamp(1, 16) as u32;
    let mask = (1u32 << bs_c) - 1;
    // a lossy codec overshoots past bits stored (10-bit letters of 1023
    // come back as 1024): unsigned samples are clamped, as the pixel
    // stage reads them, not masked to the far end of the range
    let clamp = !signed && veil_pixels::lossy_method(obj.meta().transfer_syntax()).is_some();
    let sample = |i: usize| -> i32 {
        let u = if bytes == 2 {
            u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as u32
        } else {
            raw[i] as u32
        };
        let u = if clamp { u.min(mask) } else { u & mask };
        if signed && u & (1 << (bs_c - 1)) != 0 {
            u as i32 - (1i32 << bs_c)
        } else {
            u as i32
        }
    };
    let mut data = Vec::with_capacity(pixels * spp as usize * frames as usize);
    let planar = spp == 3 && matches!(d.planar_configuration(), PlanarConfiguration::PixelFirst);
    for f in 0..frames as usize {
        let base = f * per_frame / bytes;
        if sub422 {
            for p in 0..pixels {
                let pair = base + (p / 2) * 4;
                data.extend([sample(pair + p % 2), sample(pair + 2), sample(pair + 3)]);
            }
        } else if planar {
            for p in 0..pixels {
                for c in 0..3 {
                    data.push(sample(base + c * pixels + p));
                }
            }
        } else {
            for i in 0..pixels * spp as usize {
                data.push(sample(base + i));
            }
        }
    }
    let palette = if pi == "PALETTE COLOR" {
        palette(obj)
    } else {
        None
    };
    Ok(Pixels {
        cols,
        rows,
        frames,
        spp,
        pi,
        bits_allocated: ba,
        bits_stored: bs,
        signed,
        data,
        palette,
    })
}

/// The palette's luminance per entry, from the R/G/B descriptors and
/// (non-segmented) data.
fn palette(obj: &DefaultDicomObject) -> Option<Palette> {
    let desc = |g: u16| -> Option<Vec<i32>> {
        let e = obj.element(DTag(0x0028, g)).ok()?;
        let v = e.to_multi_int::<i32>().ok()?;
        (v.len() == 3).then_some(v)
    };
    let lut = |g: u16, n: usize, bits: i32| -> Option<Vec<f32>> {
        let e = obj.element(DTag(0x0028, g)).ok()?;
        let b = e.to_bytes().ok()?;
        let max = if bits == 8 { 255.0 } else { 65535.0 };
        let v: Vec<f32> = if b.len() >= 2 * n {
            b.chunks_exact(2)
                .take(n)
                .map(|c| {
                    let w = u16::from_le_bytes([c[0], c[1]]) as f32;
                    // 8-bit tables are often stored one entry per word with
                    // the value in either byte
                    if bits == 8 && w > 255.0 {
                        (w / 256.0).floor()
                    } else {
                        w
                    }
                })
                .map(|w| w / max)
                .collect()
        } else if b.len() >= n {
            b.iter().take(n).map(|&w| w as f32 / 255.0).collect()
        } else {
            return None;
        };
        Some(v)
    };
    let d = desc(0x1101)?;
    let n = if d[0] == 0 {
        65536
    } else {
        d[0] as usize & 0xFFFF
    };
    let first = d[1];
    let bits = d[2];
    let r = lut(0x1201, n, bits)?;
    let g = lut(0x1202, n, bits)?;
    let b = lut(0x1203, n, bits)?;
    let luma = (0..n)
        .map(|i| 0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i])
        .collect();
    Some(Palette { first, luma })
}
