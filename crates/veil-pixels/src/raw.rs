//! Stored sample values, for redaction.
//!
//! Why a second reader beside [`crate::FrameReader`]: cleaning burned-in
//! text must change the samples inside the boxes and nothing else, so it
//! needs the values as stored (or as the lossless codec returns them), not
//! an 8-bit picture. Both readers share the frame location and decoding in
//! `decode.rs`; this one only normalizes the layout (planar to interleaved)
//! and checks what the codec returned against the header.

use crate::decode::{FrameReader, Geometry};
use crate::PixelError;
use veil_io::DicomFile;

/// Stored samples of one frame: little endian, interleaved (planar
/// configuration 0), 8 or 16 bits allocated, exactly as the file or codec
/// gives them. Native YBR_FULL_422 keeps its subsampled layout
/// (`Y0 Y1 Cb Cr` per pair of pixels), since that is how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame number, from 0.
    pub index: u32,
    /// The samples (see [`RawLayout::frame_len`]).
    pub data: Vec<u8>,
}

/// What the samples of every [`RawFrame`] of an image mean.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLayout {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Samples per pixel (1 or 3).
    pub spp: u16,
    /// Bits allocated per sample (8 or 16).
    pub bits_alloc: u16,
    /// Bits stored.
    pub bits_stored: u16,
    /// High bit.
    pub high_bit: u16,
    /// Pixel Representation 1 (two's complement).
    pub signed: bool,
    /// Photometric interpretation of the decoded samples: JPEG and JPEG
    /// 2000 codecs undo their color transforms, so YBR_FULL_422, YBR_ICT or
    /// YBR_RCT sources come out as RGB.
    pub photometric: String,
    /// The source stores color planes one after another (Planar
    /// Configuration 1); the frames here are interleaved anyway.
    pub planar_in_source: bool,
    /// PALETTE COLOR: the 8-bit red, green and blue LUTs and the first
    /// stored value they map, for choosing a black fill.
    pub palette: Option<([Vec<u8>; 3], i64)>,
}

impl RawLayout {
    /// Bytes per sample.
    pub fn bytes_per_sample(&self) -> usize {
        self.bits_alloc as usize / 8
    }

    /// True for YBR_FULL_422 stored subsampled (native data only).
    pub fn subsampled(&self) -> bool {
        self.photometric == "YBR_FULL_422" && self.spp == 3
    }

    /// Samples in one frame.
    pub fn samples(&self) -> usize {
        let px = self.rows as usize * self.cols as usize;
        if self.subsampled() {
            px * 2
        } else {
            px * self.spp as usize
        }
    }

    /// Bytes in one frame.
    pub fn frame_len(&self) -> usize {
        self.samples() * self.bytes_per_sample()
    }
}

/// A rectangle in pixels (x, y of the top left corner, width, height).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// Whether the two rectangles share a pixel.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    /// The fraction of this rectangle that lies inside `o` (0 when apart).
    pub fn inside_fraction(&self, o: &Rect) -> f32 {
        let ix = (self.x + self.w)
            .min(o.x + o.w)
            .saturating_sub(self.x.max(o.x));
        let iy = (self.y + self.h)
            .min(o.y + o.h)
            .saturating_sub(self.y.max(o.y));
        (ix * iy) as f32 / (self.w * self.h).max(1) as f32
    }

    /// Intersection over union with another rectangle (0 when apart): how
    /// much two finds are the same find.
    pub fn iou(&self, o: &Rect) -> f32 {
        let ix = (self.x + self.w).min(o.x + o.w) as i64 - self.x.max(o.x) as i64;
        let iy = (self.y + self.h).min(o.y + o.h) as i64 - self.y.max(o.y) as i64;
        if ix <= 0 || iy <= 0 {
            return 0.0;
        }
        let i = (ix * iy) as f32;
        let u = (self.w * self.h + o.w * o.h) as f32 - i;
        if u <= 0.0 {
            0.0
        } else {
            i / u
        }
    }
}

/// Reads the stored samples of one parsed file, one frame in memory at a
/// time.
#[derive(Debug)]
pub struct RawReader<'a> {
    inner: FrameReader<'a>,
    layout: RawLayout,
    planar: bool,
}

const TS_RLE: &str = "1.2.840.10008.1.2.5";

impl<'a> RawReader<'a> {
    /// Checks the Image Pixel attributes and locates the frames. 1-bit
    /// and 32-bit samples are [`PixelError::Unsupported`] (no cleaning
    /// path for them yet: such objects go to review).
    pub fn new(file: &'a DicomFile) -> Result<RawReader<'a>, PixelError> {
        let inner = FrameReader::new(file)?;
        let (g, encapsulated) = (inner.geometry(), inner.is_encapsulated());
        if !matches!(g.bits_alloc, 8 | 16) {
            return Err(PixelError::Unsupported(format!(
                "stored samples with Bits Allocated {}",
                g.bits_alloc
            )));
        }
        // What decode.rs hands back: the dicom-rs codecs return
        // interleaved samples and, for 3 samples, RGB; RLE and native data
        // keep the header's photometric interpretation.
        let codec = encapsulated && file.ts.uid != TS_RLE;
        let photometric = if codec && g.spp == 3 {
            "RGB".to_string()
        } else {
            g.pi.clone()
        };
        if encapsulated && photometric == "YBR_FULL_422" && g.spp == 3 {
            return Err(PixelError::Unsupported(
                "YBR_FULL_422 in RLE (subsampled planes)".into(),
            ));
        }
        let layout = RawLayout {
            rows: g.rows,
            cols: g.cols,
            spp: g.spp,
            bits_alloc: g.bits_alloc,
            bits_stored: g.bits_stored,
            high_bit: g.high_bit,
            signed: g.signed,
            photometric,
            planar_in_source: g.planar,
            palette: inner.palette(),
        };
        let planar = g.planar && !encapsulated;
        Ok(RawReader {
            inner,
            layout,
            planar,
        })
    }

    /// What the samples mean.
    pub fn layout(&self) -> &RawLayout {
        &self.layout
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.inner.frame_count()
    }

    /// The stored samples of frame `index` (from 0).
    pub fn frame(&mut self, index: u32) -> Result<RawFrame, PixelError> {
        let (data, g): (Vec<u8>, Geometry) = self.inner.raw_frame(index)?;
        let l = &self.layout;
        if g.bits_alloc != l.bits_alloc {
            return Err(PixelError::Unsupported(format!(
                "codec returned {}-bit samples for Bits Allocated {}",
                g.bits_alloc, l.bits_alloc
            )));
        }
        if data.len() < l.frame_len() {
            return Err(PixelError::Malformed(
                "decoded frame shorter than expected".into(),
            ));
        }
        let mut data = data;
        data.truncate(l.frame_len());
        if self.planar {
            data = interleave(
                &data,
                l.rows as usize * l.cols as usize,
                l.bytes_per_sample(),
            );
        }
        Ok(RawFrame { index, data })
    }
}

/// Planes `RRR..GGG..BBB` to pixels `RGBRGB..` (samples of `bps` bytes).
fn interleave(planes: &[u8], pixels: usize, bps: usize) -> Vec<u8> {
    let mut out = vec![0u8; planes.len()];
    for c in 0..3 {
        for p in 0..pixels {
            let from = (c * pixels + p) * bps;
            let to = (p * 3 + c) * bps;
            out[to..to + bps].copy_from_slice(&planes[from..from + bps]);
        }
    }
    out
}

/// Pixels `RGBRGB..` to planes `RRR..GGG..BBB` (the inverse of
/// [`interleave`]), for writing Planar Configuration 1 back.
pub(crate) fn deinterleave(pixels_data: &[u8], pixels: usize, bps: usize) -> Vec<u8> {
    let mut out = vec![0u8; pixels_data.len()];
    for c in 0..3 {
        for p in 0..pixels {
            let from = (p * 3 + c) * bps;
            let to = (c * pixels + p) * bps;
            out[to..to + bps].copy_from_slice(&pixels_data[from..from + bps]);
        }
    }
    out
}

fn put(data: &mut [u8], i: usize, bps: usize, v: u16) {
    if bps == 1 {
        data[i] = v as u8;
    } else {
        data[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn get(data: &[u8], i: usize, bps: usize) -> u16 {
    if bps == 1 {
        data[i] as u16
    } else {
        u16::from_le_bytes([data[2 * i], data[2 * i + 1]])
    }
}

impl RawFrame {
    /// The stored bytes of pixel (`x`, `y`), all its samples (interleaved,
    /// not subsampled frames): compared as they are, so that looking for
    /// a background value allocates nothing per pixel. (For the fill of
    /// the cleaning stage, which needs OCR.)
    #[cfg(feature = "ocr")]
    pub(crate) fn pixel_bytes(&self, layout: &RawLayout, x: usize, y: usize) -> &[u8] {
        let n = layout.spp as usize * layout.bytes_per_sample();
        let at = (y * layout.cols as usize + x) * n;
        &self.data[at..at + n]
    }
}

/// The sample values of one pixel's stored bytes.
#[cfg(feature = "ocr")]
pub(crate) fn samples_of(bytes: &[u8], bps: usize) -> Vec<u16> {
    (0..bytes.len() / bps).map(|c| get(bytes, c, bps)).collect()
}

/// Fills rectangles of a frame (clipped to the image) with one stored
/// value per sample (`fill[c]` for sample `c`; a single value is used for
/// all samples). Everything outside the rectangles keeps its bytes. For
/// subsampled YBR_FULL_422 a rectangle widens to whole pixel pairs, since
/// a pair shares its chroma.
pub fn fill_rects(layout: &RawLayout, frame: &mut RawFrame, rects: &[Rect], fill: &[u16]) {
    let bps = layout.bytes_per_sample();
    let (cols, rows) = (layout.cols as usize, layout.rows as usize);
    let spp = layout.spp as usize;
    let value = |c: usize| fill.get(c).or(fill.first()).copied().unwrap_or(0);
    for r in rects {
        let x0 = (r.x as usize).min(cols);
        let x1 = (r.x as usize).saturating_add(r.w as usize).min(cols);
        let y0 = (r.y as usize).min(rows);
        let y1 = (r.y as usize).saturating_add(r.h as usize).min(rows);
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        for y in y0..y1 {
            if layout.subsampled() {
                // pairs of pixels: Y0 Y1 Cb Cr
                for pair in x0 / 2..x1.div_ceil(2) {
                    let base = (y * cols) * 2 + pair * 4;
                    for (k, c) in [0, 0, 1, 2].into_iter().enumerate() {
                        put(&mut frame.data, base + k, bps, value(c));
                    }
                }
            } else {
                for x in x0..x1 {
                    for c in 0..spp {
                        put(&mut frame.data, (y * cols + x) * spp + c, bps, value(c));
                    }
                }
            }
        }
    }
}

/// The stored value(s) that display as black, one per sample:
/// MONOCHROME2 the darkest stored value in the frame (its smallest after
/// sign and Bits Stored), MONOCHROME1 the brightest, RGB 0, YBR 0 with
/// neutral chroma (half the range), PALETTE COLOR the index whose LUT
/// entry is darkest. Taking the frame's own extreme rather than the
/// range's keeps the fill inside the values the image already uses, so
/// windowing and Pixel Padding Value handling stay unsurprised.
pub fn black_value(layout: &RawLayout, frame: &RawFrame) -> Vec<u16> {
    let pi = layout.photometric.as_str();
    let half = 1u16 << (layout.bits_stored.clamp(1, 16) - 1);
    match pi {
        "RGB" => vec![0; 3],
        _ if pi.starts_with("YBR") => vec![0, half, half],
        "PALETTE COLOR" => {
            let Some(([r, g, b], first)) = &layout.palette else {
                return vec![0];
            };
            let n = r.len().min(g.len()).min(b.len());
            let darkest = (0..n)
                .min_by_key(|&i| 299 * r[i] as u32 + 587 * g[i] as u32 + 114 * b[i] as u32)
                .unwrap_or(0);
            vec![(darkest as i64 + first) as u16]
        }
        _ => {
            let bps = layout.bytes_per_sample();
            let shift = (layout.high_bit + 1).saturating_sub(layout.bits_stored) as u32;
            let bits = layout.bits_stored.clamp(1, 16) as u32;
            let mask = ((1u32 << bits) - 1) as i64;
            let value = |w: u16| -> i64 {
                let v = (w as i64 >> shift) & mask;
                if layout.signed && (v >> (bits - 1)) & 1 == 1 {
                    v - (1i64 << bits)
                } else {
                    v
                }
            };
            let words = (0..layout.samples()).map(|i| get(&frame.data, i, bps));
            let pick = if pi == "MONOCHROME1" {
                words.max_by_key(|w| value(*w))
            } else {
                words.min_by_key(|w| value(*w))
            };
            vec![pick.unwrap_or(0)]
        }
    }
}
