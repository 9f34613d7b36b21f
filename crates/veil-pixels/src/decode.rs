//! Frames as 8-bit grayscale for reading.
//!
//! Why our own native path: `veil_io` already knows where the pixel data
//! lies on disk, so uncompressed frames (and deflated ones, which `veil_io`
//! inflates) are read one at a time with no second parse of the header.
//! Compressed frames are handed, one frame's fragments at a time, to the
//! dicom-rs codecs in a minimal in-memory object, so memory stays at one
//! frame whatever the file size. Interpretation (photometric, sign, bit
//! depth, windowing) is done here, once, for both paths.

use std::path::Path;

use dicom_core::value::{PixelFragmentSequence, Value as DicomValue};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::PixelDecoder;
use image::GrayImage;
use veil_core::limits::MAX_FRAME_BYTES;
use veil_core::{Limit, Tag};
use veil_io::{DicomFile, Value};

use crate::bulk::{Attrs, Bulk};
use crate::encap::{self, Fragment, PIXEL_DATA};
use crate::PixelError;

/// One frame of an image, as 8-bit gray for reading (OCR, thumbnails):
/// not a faithful copy of the stored values.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Frame number, from 0.
    pub index: u32,
    /// The frame, windowed to 8 bits: 255 is brightest as displayed
    /// (MONOCHROME1 is inverted, color becomes luma).
    pub image: GrayImage,
    /// Grayscale frames: the stored values, one per pixel, negated for
    /// MONOCHROME1 so that larger is brighter. Why: the 8-bit window
    /// drops what lies outside it (faint text in the air of a CT is 0
    /// there), and equal stored values are what the flat-ink screen
    /// looks for ([`crate::clean::detect::screen_values`]).
    pub values: Option<Vec<i32>>,
}

/// Decodes every frame of a file. For large multi-frame files prefer
/// [`FrameReader`] (one frame in memory at a time) or
/// [`decode_frames_limit`].
pub fn decode_frames(path: &Path) -> Result<Vec<Frame>, PixelError> {
    decode_frames_limit(path, u32::MAX)
}

/// Decodes at most `limit` frames (from the first): for quick checks of
/// long cine loops, where burned-in text usually repeats on every frame.
pub fn decode_frames_limit(path: &Path, limit: u32) -> Result<Vec<Frame>, PixelError> {
    let file = veil_io::read(path)?;
    let mut r = FrameReader::new(&file)?;
    (0..r.frame_count().min(limit))
        .map(|i| r.frame(i))
        .collect()
}

const TS_RLE: &str = "1.2.840.10008.1.2.5";
const TS_JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// What a frame's samples mean, from the Image Pixel module.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) spp: u16,
    pub(crate) bits_alloc: u16,
    pub(crate) bits_stored: u16,
    pub(crate) high_bit: u16,
    pub(crate) signed: bool,
    pub(crate) planar: bool,
    pub(crate) pi: String,
}

/// Where the frames are.
enum Data {
    /// Uncompressed, in memory (small values) or in the source.
    Native {
        at: NativeAt,
        /// OW in big endian: 8-bit samples are swapped in pairs.
        ow: bool,
    },
    /// Compressed: each frame's fragments.
    Encapsulated(Vec<Vec<Fragment>>),
}

enum NativeAt {
    Inline(Vec<u8>),
    Source { offset: u64, len: u64 },
}

/// Decodes the frames of one parsed file on demand, one at a time.
pub struct FrameReader<'a> {
    file: &'a DicomFile,
    bulk: Bulk,
    g: Geometry,
    frames: u32,
    data: Data,
    palette: Option<[Vec<u8>; 3]>,
    palette_first: i64,
}

impl std::fmt::Debug for FrameReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("geometry", &self.g)
            .field("frames", &self.frames)
            .finish()
    }
}

fn t(e: u16) -> Tag {
    Tag(0x0028, e)
}

/// The defined terms of Photometric Interpretation (PS3.3 C.7.6.3.1.2):
/// the only values an error may name.
const PHOTOMETRIC_TERMS: &[&str] = &[
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
    "RGB",
    "HSV",
    "ARGB",
    "CMYK",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
    "XYB",
];

impl<'a> FrameReader<'a> {
    /// Checks the Image Pixel attributes and locates the frames (reads the
    /// fragment index of compressed data, not the pixels).
    pub fn new(file: &'a DicomFile) -> Result<FrameReader<'a>, PixelError> {
        let a = Attrs {
            ds: &file.dataset,
            big_endian: file.ts.big_endian,
        };
        let pd = file
            .dataset
            .get(PIXEL_DATA)
            .ok_or(PixelError::NoPixelData)?;
        let need = |e: u16, name: &str| {
            a.u16(t(e))
                .ok_or_else(|| PixelError::Malformed(format!("{name} missing")))
        };
        let rows = need(0x0010, "Rows")? as u32;
        let cols = need(0x0011, "Columns")? as u32;
        let bits_alloc = need(0x0100, "Bits Allocated")?;
        let spp = a.u16(t(0x0002)).unwrap_or(1);
        let bits_stored = a
            .u16(t(0x0101))
            .unwrap_or(bits_alloc)
            .clamp(1, bits_alloc.max(1));
        // High Bit past Bits Allocated would shift samples by 64 bits or
        // more (found by fuzzing): the top bit a sample has is the most
        // it can be.
        let high_bit = a
            .u16(t(0x0102))
            .unwrap_or(bits_stored - 1)
            .min(bits_alloc.max(1) - 1);
        let signed = a.u16(t(0x0103)) == Some(1);
        let planar = a.u16(t(0x0006)) == Some(1) && spp > 1;
        let pi = a
            .code(t(0x0004))
            .unwrap_or_else(|| if spp == 3 { "RGB" } else { "MONOCHROME2" }.to_string());
        if rows == 0 || cols == 0 {
            return Err(PixelError::Malformed("zero rows or columns".into()));
        }
        if !matches!(bits_alloc, 1 | 8 | 16 | 32) {
            return Err(PixelError::Unsupported(format!(
                "Bits Allocated {bits_alloc}"
            )));
        }
        if !matches!(spp, 1 | 3) {
            return Err(PixelError::Unsupported(format!("Samples per Pixel {spp}")));
        }
        let frames = a.decimal(t(0x0008)).map(|f| f.max(1.0) as u32).unwrap_or(1);
        // Every decoder allocates a frame from these attributes: refuse a
        // frame no real image has before any path allocates it (65535 x
        // 65535 RGB at 32 bits would be 51 GB).
        let frame_bytes = rows as u64 * cols as u64 * spp as u64 * (bits_alloc as u64).div_ceil(8);
        if frame_bytes > MAX_FRAME_BYTES {
            return Err(PixelError::Limit {
                limit: Limit::FrameSize,
                max: MAX_FRAME_BYTES,
            });
        }
        let g = Geometry {
            rows,
            cols,
            spp,
            bits_alloc,
            bits_stored,
            high_bit,
            signed,
            planar,
            pi,
        };
        let mut bulk = Bulk::open(file)?;
        let data = match &pd.value {
            Value::Encapsulated { offset, len } => {
                let layout = encap::layout(&mut bulk, *offset, *len)?;
                let eot = encap::extended_offset_table(file, &mut bulk)?;
                Data::Encapsulated(encap::frames(&layout, frames, eot, &mut bulk)?)
            }
            Value::Bytes(b) => Data::Native {
                at: NativeAt::Inline(b.clone()),
                ow: pd.vr == VR::OW,
            },
            Value::Bulk { offset, len } => Data::Native {
                at: NativeAt::Source {
                    offset: *offset,
                    len: *len,
                },
                ow: pd.vr == VR::OW,
            },
            Value::Sequence(_) => {
                return Err(PixelError::Malformed("pixel data is a sequence".into()))
            }
            Value::EncapsulatedBytes(_) => {
                return Err(PixelError::Unsupported(
                    "encapsulated pixel data built in memory (write the file first)".into(),
                ))
            }
        };
        let mut r = FrameReader {
            file,
            bulk,
            g,
            frames,
            data,
            palette: None,
            palette_first: 0,
        };
        if r.g.pi == "PALETTE COLOR" {
            r.load_palette()?;
        }
        Ok(r)
    }

    /// Number of frames (Number of Frames, or 1).
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// Rows and columns of every frame.
    pub fn size(&self) -> (u32, u32) {
        (self.g.cols, self.g.rows)
    }

    /// An iterator over all frames, decoding each when asked.
    pub fn iter(&mut self) -> impl Iterator<Item = Result<Frame, PixelError>> + use<'_, 'a> {
        (0..self.frames).map(move |i| self.frame(i))
    }

    /// Decodes frame `index` (from 0).
    pub fn frame(&mut self, index: u32) -> Result<Frame, PixelError> {
        let (raw, g) = self.raw_frame(index)?;
        let (image, values) = self.to_gray(&raw, &g, index)?;
        Ok(Frame {
            index,
            image,
            values,
        })
    }

    /// The stored samples of frame `index` as the file or codec gives them
    /// (little endian; planar only when `planar` says so), with what they
    /// mean after decoding: shared by [`FrameReader::frame`] and
    /// [`crate::RawReader`].
    pub(crate) fn raw_frame(&mut self, index: u32) -> Result<(Vec<u8>, Geometry), PixelError> {
        if index >= self.frames {
            return Err(PixelError::Malformed("frame number out of range".into()));
        }
        match &self.data {
            Data::Native { .. } => Ok((self.native_frame(index)?, self.g.clone())),
            Data::Encapsulated(_) => {
                let (mut raw, g) = self.decode_encapsulated(index)?;
                if self.clamps_overshoot(&g) {
                    clamp_overshoot(&mut raw, &g);
                }
                Ok((raw, g))
            }
        }
    }

    /// The Image Pixel attributes as read.
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.g
    }

    /// True when the frames are encapsulated (compressed).
    pub(crate) fn is_encapsulated(&self) -> bool {
        matches!(self.data, Data::Encapsulated(_))
    }

    /// Whether samples past Bits Stored are a lossy codec's overshoot, to
    /// be clamped rather than masked ([`clamp_overshoot`]). No overlay bits
    /// travel in a codec's samples, and signed ones wrap by design.
    fn clamps_overshoot(&self, g: &Geometry) -> bool {
        self.is_encapsulated()
            && crate::encode::lossy_method(&self.file.ts.uid).is_some()
            && !g.signed
    }

    /// PALETTE COLOR: the LUTs as 8 bits and the first stored value mapped.
    pub(crate) fn palette(&self) -> Option<([Vec<u8>; 3], i64)> {
        self.palette.clone().map(|p| (p, self.palette_first))
    }

    /// Bit `bit` of every sample of an uncompressed single-sample frame:
    /// a legacy overlay plane stored in the pixel data's unused bits.
    pub(crate) fn embedded_bits(&mut self, index: u32, bit: u16) -> Result<Vec<bool>, PixelError> {
        if !matches!(self.data, Data::Native { .. }) {
            return Err(PixelError::Unsupported(
                "overlay in unused bits of compressed pixel data".into(),
            ));
        }
        if index >= self.frames
            || self.g.spp != 1
            || bit >= self.g.bits_alloc
            || self.g.bits_alloc < 8
        {
            return Err(PixelError::Malformed(
                "embedded overlay bit position".into(),
            ));
        }
        let raw = self.native_frame(index)?;
        let bytes = self.g.bits_alloc as usize / 8;
        Ok(raw
            .chunks_exact(bytes)
            .map(|c| {
                let v = c.iter().rev().fold(0u64, |acc, b| (acc << 8) | *b as u64);
                (v >> bit) & 1 == 1
            })
            .collect())
    }

    /// The bytes of one uncompressed frame, little endian.
    fn native_frame(&mut self, index: u32) -> Result<Vec<u8>, PixelError> {
        let g = &self.g;
        let pixels = g.rows as u64 * g.cols as u64;
        let Data::Native { at, ow } = &self.data else {
            unreachable!("native_frame on native data only")
        };
        let samples = if g.pi == "YBR_FULL_422" && g.spp == 3 {
            pixels * 2
        } else {
            pixels * g.spp as u64
        };
        let (start, len, bit_shift) = if g.bits_alloc == 1 {
            let first_bit = samples * index as u64;
            let end_bit = first_bit + samples;
            (
                first_bit / 8,
                end_bit.div_ceil(8) - first_bit / 8,
                first_bit % 8,
            )
        } else {
            let n = samples * (g.bits_alloc as u64 / 8);
            (n * index as u64, n, 0)
        };
        let mut b = match at {
            NativeAt::Inline(v) => v
                .get(start as usize..(start + len) as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| PixelError::Malformed("pixel data shorter than frames".into()))?,
            NativeAt::Source { offset, len: total } => {
                if start + len > *total {
                    return Err(PixelError::Malformed(
                        "pixel data shorter than frames".into(),
                    ));
                }
                self.bulk.read(offset + start, len)?
            }
        };
        if self.file.ts.big_endian {
            match g.bits_alloc {
                8 if *ow => b.chunks_exact_mut(2).for_each(|c| c.swap(0, 1)),
                16 => b.chunks_exact_mut(2).for_each(|c| c.swap(0, 1)),
                32 => b.chunks_exact_mut(4).for_each(|c| c.reverse()),
                _ => {}
            }
        }
        if g.bits_alloc == 1 {
            // One byte (0 or 1) per sample; bits are packed LSB first.
            let n = samples as usize;
            let s = bit_shift as usize;
            return Ok((0..n)
                .map(|i| (b[(i + s) / 8] >> ((i + s) % 8)) & 1)
                .collect());
        }
        Ok(b)
    }

    /// Decodes one compressed frame with the dicom-rs codecs.
    fn decode_encapsulated(&mut self, index: u32) -> Result<(Vec<u8>, Geometry), PixelError> {
        let Data::Encapsulated(frames) = &self.data else {
            unreachable!("decode_encapsulated on encapsulated data only")
        };
        let mut stream = Vec::new();
        for f in &frames[index as usize] {
            stream.extend(self.bulk.read(f.offset, f.len)?);
        }
        let g = &self.g;
        let ts = self.file.ts.uid.as_str();
        if ts == TS_RLE {
            // Our own: the dicom-rs RLE codec stops at 16 bits.
            let mut out = g.clone();
            out.planar = false;
            return Ok((rle_decode(&stream, g)?, out));
        }
        // The codecs allocate and copy what the codestream declares: no
        // more than the frame's Rows, Columns and Samples per Pixel.
        if let Some((w, h, c)) = crate::jpeg::declared_size(&stream) {
            if w > g.cols || h > g.rows || c > g.spp {
                return Err(PixelError::Limit {
                    limit: Limit::FrameSize,
                    max: g.rows as u64 * g.cols as u64 * g.spp as u64,
                });
            }
        }
        if ts == TS_JPEG_EXTENDED && crate::jpeg::sequential_dct_precision(&stream) == Some(12) {
            return jpeg12_decode(&stream, g);
        }
        let dt = |e: u16| dicom_core::Tag(0x0028, e);
        let us = |e: u16, v: u16| DataElement::new(dt(e), VR::US, PrimitiveValue::from(v));
        let mut obj = InMemDicomObject::from_element_iter([
            us(0x0002, g.spp),
            DataElement::new(dt(0x0004), VR::CS, PrimitiveValue::from(g.pi.as_str())),
            DataElement::new(dt(0x0008), VR::IS, PrimitiveValue::from("1")),
            us(0x0010, g.rows as u16),
            us(0x0011, g.cols as u16),
            us(0x0100, g.bits_alloc),
            us(0x0101, g.bits_stored),
            us(0x0102, g.high_bit),
            us(0x0103, g.signed as u16),
        ]);
        if g.spp > 1 {
            obj.put(us(0x0006, g.planar as u16));
        }
        obj.put(DataElement::new(
            dicom_core::Tag(0x7FE0, 0x0010),
            VR::OB,
            DicomValue::PixelSequence(PixelFragmentSequence::new(Vec::<u32>::new(), vec![stream])),
        ));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(ts)
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("2.25.1")
            .build()
            .map_err(|e| PixelError::Malformed(format!("transfer syntax: {e}")))?;
        let obj = obj.with_exact_meta(meta);
        // A codec that panics on a hostile stream (the JPEG 2000 adapter
        // did, found by fuzzing) fails this frame, not the batch.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            obj.decode_pixel_data_frame(0)
        }))
        .map_err(|_| PixelError::Decode {
            ts: ts.to_string(),
            detail: "the codec failed on this stream".into(),
        })?
        .map_err(|e| classify(ts, &g.pi, &e))?;
        let mut out = g.clone();
        out.bits_alloc = decoded.bits_allocated();
        // The codecs return interleaved samples; for 3 samples JPEG and
        // JPEG 2000 undo their color transforms (RGB).
        out.planar = false;
        if g.spp == 3 {
            out.pi = "RGB".into();
        }
        let data = decoded.into_data();
        Ok((data, out))
    }

    fn load_palette(&mut self) -> Result<(), PixelError> {
        let a = Attrs {
            ds: &self.file.dataset,
            big_endian: self.file.ts.big_endian,
        };
        let mut luts: [Vec<u8>; 3] = Default::default();
        for (k, lut) in luts.iter_mut().enumerate() {
            let k = k as u16;
            let desc = a.u16s(t(0x1101 + k));
            if desc.len() < 3 {
                return Err(PixelError::Malformed("palette descriptor".into()));
            }
            let entries = if desc[0] == 0 {
                65536
            } else {
                desc[0] as usize
            };
            let bits = desc[2];
            let bytes = if let Some(data) = self.file.dataset.get(t(0x1201 + k)) {
                self.bulk.value(data)?
            } else if let Some(seg) = self.file.dataset.get(t(0x1221 + k)) {
                let raw = self.bulk.value(seg)?;
                let words: Vec<u16> = raw
                    .chunks_exact(2)
                    .map(|c| {
                        if a.big_endian {
                            u16::from_be_bytes([c[0], c[1]])
                        } else {
                            u16::from_le_bytes([c[0], c[1]])
                        }
                    })
                    .collect();
                let mut lut = expand_segmented(&words)?;
                lut.resize(entries, lut.last().copied().unwrap_or(0));
                let to = |v: u16| {
                    if a.big_endian {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    }
                };
                lut.into_iter().flat_map(to).collect()
            } else {
                return Err(PixelError::Malformed("palette without LUT data".into()));
            };
            let words = |be: bool| -> Vec<u16> {
                bytes
                    .chunks_exact(2)
                    .map(|c| {
                        if be {
                            u16::from_be_bytes([c[0], c[1]])
                        } else {
                            u16::from_le_bytes([c[0], c[1]])
                        }
                    })
                    .collect()
            };
            *lut = if bytes.len() >= entries * 2 {
                let w = words(a.big_endian);
                let max = w.iter().copied().max().unwrap_or(0);
                // 16-bit entries, or 8-bit entries one per word (seen in the
                // wild): scale by what the values actually use.
                if bits == 16 || max > 255 {
                    w.iter().map(|v| (v >> 8) as u8).collect()
                } else {
                    w.iter().map(|v| *v as u8).collect()
                }
            } else if bytes.len() >= entries {
                bytes[..entries].to_vec()
            } else {
                return Err(PixelError::Malformed(
                    "palette data shorter than descriptor".into(),
                ));
            };
            lut.truncate(entries);
            if k == 0 {
                // first mapped value: SS or US as the pixels
                self.palette_first = if self.g.signed {
                    desc[1] as i16 as i64
                } else {
                    desc[1] as i64
                };
            }
        }
        self.palette = Some(luts);
        Ok(())
    }

    /// Interprets decoded samples and windows them to 8 bits.
    fn to_gray(
        &self,
        raw: &[u8],
        g: &Geometry,
        index: u32,
    ) -> Result<(GrayImage, Option<Vec<i32>>), PixelError> {
        let n = g.rows as usize * g.cols as usize;
        let bytes = (g.bits_alloc as usize).div_ceil(8);
        let shift = (g.high_bit + 1).saturating_sub(g.bits_stored) as u32;
        let bits = (g.bits_stored as u32).min(32);
        let max = (1u64 << bits) - 1;
        let sample = |i: usize| -> i64 {
            let v: u64 = match bytes {
                1 => raw[i] as u64,
                2 => u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) as u64,
                _ => {
                    u32::from_le_bytes([raw[4 * i], raw[4 * i + 1], raw[4 * i + 2], raw[4 * i + 3]])
                        as u64
                }
            };
            let v = (v >> shift) & max;
            if g.signed && v >> (bits - 1) & 1 == 1 {
                v as i64 - (1i64 << bits)
            } else {
                v as i64
            }
        };
        let pi = g.pi.as_str();
        let subsampled = pi == "YBR_FULL_422" && g.spp == 3 && raw.len() < n * 3 * bytes;
        let samples_needed = if subsampled {
            n * 2
        } else {
            n * g.spp as usize
        };
        if raw.len() < samples_needed * bytes {
            return Err(PixelError::Malformed(
                "decoded frame shorter than expected".into(),
            ));
        }
        let img = |px: Vec<u8>| {
            GrayImage::from_raw(g.cols, g.rows, px)
                .ok_or_else(|| PixelError::Malformed("frame size".into()))
        };
        if g.spp == 3 {
            let max = ((1u64 << g.bits_stored.min(32)) - 1) as f64;
            let at = |p: usize, c: usize| -> f64 {
                let i = if g.planar { c * n + p } else { p * 3 + c };
                sample(i) as f64
            };
            let px: Vec<u8> = if subsampled {
                // Y0 Y1 Cb Cr for each pair of pixels: luma is Y.
                (0..n)
                    .map(|p| {
                        let y = sample((p / 2) * 4 + (p % 2)) as f64;
                        (y / max * 255.0).round().clamp(0.0, 255.0) as u8
                    })
                    .collect()
            } else if pi.starts_with("YBR") {
                (0..n)
                    .map(|p| (at(p, 0) / max * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect()
            } else {
                (0..n)
                    .map(|p| {
                        let y = 0.299 * at(p, 0) + 0.587 * at(p, 1) + 0.114 * at(p, 2);
                        (y / max * 255.0).round().clamp(0.0, 255.0) as u8
                    })
                    .collect()
            };
            return Ok((img(px)?, None));
        }
        if pi == "PALETTE COLOR" {
            let Some(l) = &self.palette else {
                return Err(PixelError::Malformed("palette missing".into()));
            };
            let px = (0..n)
                .map(|p| {
                    let idx = sample(p) - self.palette_first;
                    let get = |lut: &Vec<u8>| -> f64 {
                        let i = idx.clamp(0, lut.len() as i64 - 1) as usize;
                        lut[i] as f64
                    };
                    let y = 0.299 * get(&l[0]) + 0.587 * get(&l[1]) + 0.114 * get(&l[2]);
                    y.round().clamp(0.0, 255.0) as u8
                })
                .collect();
            return Ok((img(px)?, None));
        }
        if !matches!(pi, "MONOCHROME1" | "MONOCHROME2") {
            // named only when it is a defined term: the value comes from
            // the file, and a report must not copy text from it
            return Err(PixelError::Unsupported(format!(
                "photometric interpretation {}",
                veil_core::Echo::one_of(pi, PHOTOMETRIC_TERMS)
            )));
        }
        let values: Vec<i64> = (0..n).map(sample).collect();
        let mut px = if g.bits_alloc == 1 {
            values
                .iter()
                .map(|v| if *v != 0 { 255 } else { 0 })
                .collect()
        } else {
            let (slope, intercept) = self.rescale(index);
            let window = self.window(index);
            let windowed = window.map(|(c, w)| {
                let lo = c - 0.5 - (w - 1.0) / 2.0;
                let span = (w - 1.0).max(1.0);
                values
                    .iter()
                    .map(|v| {
                        let x = *v as f64 * slope + intercept;
                        (((x - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8
                    })
                    .collect::<Vec<u8>>()
            });
            match windowed.filter(|p| !nearly_constant(p)) {
                Some(p) => p,
                None => stretch(&values, g.bits_stored <= 8 && !g.signed),
            }
        };
        let mono1 = pi == "MONOCHROME1";
        if mono1 {
            px.iter_mut().for_each(|v| *v = 255 - *v);
        }
        let looks = (g.bits_alloc > 1).then(|| {
            values
                .iter()
                .map(|&v| {
                    let v = v.clamp(i32::MIN as i64 + 1, i32::MAX as i64) as i32;
                    if mono1 {
                        -v
                    } else {
                        v
                    }
                })
                .collect()
        });
        Ok((img(px)?, looks))
    }

    /// Functional group items that apply to frame `index`: per-frame first,
    /// then shared (enhanced multi-frame objects keep window and rescale
    /// there).
    fn groups(&self, index: u32, seq: Tag) -> Vec<Attrs<'a>> {
        let a = Attrs {
            ds: &self.file.dataset,
            big_endian: self.file.ts.big_endian,
        };
        let mut out = Vec::new();
        if let Some(item) = a.items(Tag(0x5200, 0x9230)).get(index as usize) {
            out.extend(a.with(item).items(seq).first().map(|d| a.with(d)));
        }
        if let Some(item) = a.items(Tag(0x5200, 0x9229)).first() {
            out.extend(a.with(item).items(seq).first().map(|d| a.with(d)));
        }
        out.push(a);
        out
    }

    fn rescale(&self, index: u32) -> (f64, f64) {
        for a in self.groups(index, Tag(0x0028, 0x9145)) {
            if let (Some(s), Some(i)) = (a.decimal(t(0x1053)), a.decimal(t(0x1052))) {
                if s != 0.0 && s.is_finite() && i.is_finite() {
                    return (s, i);
                }
            }
        }
        (1.0, 0.0)
    }

    fn window(&self, index: u32) -> Option<(f64, f64)> {
        for a in self.groups(index, Tag(0x0028, 0x9132)) {
            let c = a.decimals(t(0x1050));
            let w = a.decimals(t(0x1051));
            if let (Some(c), Some(w)) = (c.first(), w.first()) {
                if *w >= 1.0 && c.is_finite() && w.is_finite() {
                    return Some((*c, *w));
                }
            }
        }
        None
    }
}

/// Expands a segmented palette LUT (PS3.3 C.7.9.2): discrete and linear
/// segments; indirect segments (rare) are not supported.
fn expand_segmented(words: &[u16]) -> Result<Vec<u16>, PixelError> {
    let bad = || PixelError::Malformed("segmented palette".into());
    let mut out: Vec<u16> = Vec::new();
    let mut i = 0;
    while i + 1 < words.len() {
        let (op, n) = (words[i], words[i + 1] as usize);
        match op {
            0 => {
                out.extend(words.get(i + 2..i + 2 + n).ok_or_else(bad)?);
                i += 2 + n;
            }
            1 => {
                let y1 = *words.get(i + 2).ok_or_else(bad)? as f64;
                let y0 = *out.last().ok_or_else(bad)? as f64;
                for j in 1..=n {
                    out.push((y0 + (y1 - y0) * j as f64 / n as f64).round() as u16);
                }
                i += 3;
            }
            _ => {
                return Err(PixelError::Unsupported(
                    "indirect segments in a segmented palette".into(),
                ))
            }
        }
        if out.len() > 65536 {
            return Err(bad());
        }
    }
    Ok(out)
}

/// Clamps each sample's value (its Bits Stored bits at High Bit) to the
/// largest that many bits hold. Why: a lossy codec overshoots, and
/// 10-bit letters of 1023 come back as 1021..1025; masked to Bits Stored
/// (as every reader of stored samples does), 1024 is 0, the far end of
/// the range: the screen sees the letters as speckle, and a cleaned image
/// written back from these samples shows black specks outside any box.
/// Done once, where frames are decoded, for both the 8-bit frames and the
/// samples written back ([`crate::RawReader`]).
fn clamp_overshoot(raw: &mut [u8], g: &Geometry) {
    let bytes = (g.bits_alloc as usize).div_ceil(8).clamp(1, 8);
    let shift = (g.high_bit + 1).saturating_sub(g.bits_stored) as u32;
    let bits = (g.bits_stored as u32).min(32);
    if shift + bits >= 8 * bytes as u32 {
        // the value reaches the top of the word: nothing to overshoot into
        return;
    }
    let max = (1u64 << bits) - 1;
    let low = (1u64 << shift) - 1;
    for s in raw.chunks_exact_mut(bytes) {
        let mut word = [0u8; 8];
        word[..bytes].copy_from_slice(s);
        let v = u64::from_le_bytes(word);
        if v >> shift > max {
            s.copy_from_slice(&((max << shift) | (v & low)).to_le_bytes()[..bytes]);
        }
    }
}

/// Decodes one 12-bit JPEG Extended frame (process 4: sequential DCT,
/// Huffman coding, 12-bit samples) to 16-bit little-endian samples,
/// interleaved, color as RGB.
///
/// Why libjpeg-turbo-rs: the dicom-rs JPEG adapter uses jpeg-decoder,
/// which reads 12 bits only in lossless JPEG, and zune-jpeg parses 12-bit
/// headers but refuses their pixels. libjpeg-turbo 3's own 12-bit API
/// (`tj3Decompress12`) is reached only through raw FFI (turbojpeg-sys:
/// unsafe code, which the workspace forbids, and a C build). This port of
/// libjpeg-turbo in safe-to-call Rust decodes 12-bit frames as the IJG
/// library does, with one new dependency (its other, thiserror, is here
/// already); tests/jpeg12_dcmtk.rs grades it against dcmtk's IJG decoder.
fn jpeg12_decode(stream: &[u8], g: &Geometry) -> Result<(Vec<u8>, Geometry), PixelError> {
    let fail = |detail: String| PixelError::Decode {
        ts: TS_JPEG_EXTENDED.to_string(),
        detail,
    };
    // The decoder sizes its buffers from the stream's own header: bounded
    // here by the frame's Rows and Columns (checked against the header
    // before this), so a hostile header costs no more than the frame.
    let limits = libjpeg_turbo_rs::DecodeLimits {
        max_width: g.cols as usize,
        max_height: g.rows as usize,
        max_pixels: g.rows as u64 * g.cols as u64,
        max_memory: Some(MAX_FRAME_BYTES.saturating_mul(4)),
        ..Default::default()
    };
    // A codec that panics on a hostile stream fails this frame, not the
    // batch (as for the dicom-rs codecs).
    let image = std::panic::catch_unwind(|| {
        libjpeg_turbo_rs::decompress_12bit_with_limits(stream, &limits)
    })
    .map_err(|_| fail("the codec failed on this stream".into()))?
    .map_err(|e| fail(e.to_string()))?;
    if image.width != g.cols as usize
        || image.height != g.rows as usize
        || image.num_components != g.spp as usize
    {
        return Err(PixelError::Malformed(
            "JPEG frame size does not match the image".into(),
        ));
    }
    let mut out = g.clone();
    out.bits_alloc = 16;
    out.planar = false;
    if g.spp == 3 {
        out.pi = "RGB".into();
    }
    // 12-bit samples are 0..=4095 by construction; the clamp keeps a
    // decoder's out-of-range value from wrapping into the top bits.
    let data = image
        .data
        .iter()
        .flat_map(|v| (v.clamp(&0, &4095).unsigned_abs()).to_le_bytes())
        .collect();
    Ok((data, out))
}

/// Decodes one RLE Lossless frame (PS3.5 Annex G) to interleaved little
/// endian samples: one PackBits segment per sample and byte, most
/// significant byte first.
fn rle_decode(stream: &[u8], g: &Geometry) -> Result<Vec<u8>, PixelError> {
    let bad = |w: &str| PixelError::Malformed(format!("RLE {w}"));
    if g.bits_alloc < 8 {
        return Err(PixelError::Unsupported("RLE with Bits Allocated 1".into()));
    }
    let header = stream.get(..64).ok_or_else(|| bad("header missing"))?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ]) as usize
    };
    let bytes = g.bits_alloc as usize / 8;
    let spp = g.spp as usize;
    let nseg = word(0);
    if nseg != bytes * spp || nseg > 15 {
        return Err(bad("segment count does not match the image"));
    }
    let pixels = g.rows as usize * g.cols as usize;
    // Every segment must be able to fill the frame before the frame is
    // allocated: PackBits turns 2 bytes into at most 128, so a segment
    // shorter than 1/64 of the pixels is refused (a 100-byte stream
    // claiming 16384 x 16384 allocated 256 MB on main).
    let mut segments = Vec::with_capacity(nseg);
    for seg in 0..nseg {
        let start = word(seg + 1);
        let end = if seg + 1 < nseg {
            word(seg + 2)
        } else {
            stream.len()
        };
        let data = stream
            .get(start..end.min(stream.len()))
            .ok_or_else(|| bad("segment offset"))?;
        let most = (data.len() as u64).div_ceil(2) * 128;
        if most < pixels as u64 {
            return Err(PixelError::Limit {
                limit: Limit::FrameSize,
                max: most,
            });
        }
        segments.push(data);
    }
    let mut out = vec![0u8; pixels * spp * bytes];
    for (seg, data) in segments.into_iter().enumerate() {
        let (sample, msb_index) = (seg / bytes, seg % bytes);
        let byte = bytes - 1 - msb_index;
        let mut p = 0usize;
        let mut i = 0usize;
        let mut put = |v: u8, p: &mut usize| {
            if *p < pixels {
                out[(*p * spp + sample) * bytes + byte] = v;
            }
            *p += 1;
        };
        while i < data.len() && p < pixels {
            let n = data[i] as i8;
            i += 1;
            if n >= 0 {
                let run = data
                    .get(i..i + n as usize + 1)
                    .ok_or_else(|| bad("literal run"))?;
                for v in run {
                    put(*v, &mut p);
                }
                i += n as usize + 1;
            } else if n != -128 {
                let v = *data.get(i).ok_or_else(|| bad("repeat run"))?;
                i += 1;
                for _ in 0..(1 - n as isize) {
                    put(v, &mut p);
                }
            }
        }
        if p < pixels {
            return Err(bad("segment shorter than the frame"));
        }
    }
    Ok(out)
}

/// True when at least 99.5% of pixels have one value: a header window that
/// does not fit the data (it happens), which would hide everything.
fn nearly_constant(px: &[u8]) -> bool {
    let mut hist = [0usize; 256];
    px.iter().for_each(|v| hist[*v as usize] += 1);
    let max = hist.iter().copied().max().unwrap_or(0);
    max * 1000 >= px.len() * 995
}

/// Maps values to 0..255 between their 0.5th and 99.5th percentiles, so a
/// few extreme pixels do not squash the image; burned-in text is usually
/// at the top of the range and stays white. 8-bit unsigned data is already
/// display-ready and kept as is.
fn stretch(values: &[i64], display_ready: bool) -> Vec<u8> {
    if display_ready {
        return values.iter().map(|v| (*v).clamp(0, 255) as u8).collect();
    }
    let step = (values.len() / 65536).max(1);
    let mut s: Vec<i64> = values.iter().step_by(step).copied().collect();
    s.sort_unstable();
    let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    let (mut lo, mut hi) = (pick(0.005), pick(0.995));
    if hi <= lo {
        lo = s[0];
        hi = s[s.len() - 1];
    }
    if hi <= lo {
        return vec![0; values.len()];
    }
    let span = (hi - lo) as f64;
    values
        .iter()
        .map(|v| {
            (((*v - lo) as f64 / span) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// Sorts codec failures: a codec that is not built in is "unsupported",
/// anything else a decode error. Only the codec's own words are kept; the
/// photometric interpretation, which the codec may quote, is the file's
/// value and stays in only when it is a defined term.
fn classify(ts: &str, pi: &str, e: &dicom_pixeldata::Error) -> PixelError {
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    let shown = veil_core::Echo::one_of(pi, PHOTOMETRIC_TERMS);
    if !pi.is_empty() && !shown.is_valid() {
        detail = detail.replace(pi, shown.as_str());
    }
    if detail.contains("nsupported") || detail.contains("not supported") {
        PixelError::Unsupported(format!("transfer syntax {ts}: {detail}"))
    } else {
        PixelError::Decode {
            ts: ts.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(rows: u32, cols: u32) -> Geometry {
        Geometry {
            rows,
            cols,
            spp: 1,
            bits_alloc: 16,
            bits_stored: 12,
            high_bit: 11,
            signed: false,
            planar: false,
            pi: "MONOCHROME2".into(),
        }
    }

    /// Without the corpus: a 12-bit gradient compressed as process 4 comes
    /// back as 16-bit words near the values put in, the header is routed
    /// to this decoder, and a stream that does not fit the frame or is
    /// damaged is an error, not a panic.
    #[test]
    fn twelve_bit_jpeg_decodes() {
        let (rows, cols) = (16u32, 32u32);
        let values: Vec<i16> = (0..rows * cols).map(|i| (i * 8) as i16).collect();
        let stream = libjpeg_turbo_rs::compress_12bit(
            &values,
            cols as usize,
            rows as usize,
            1,
            100,
            libjpeg_turbo_rs::Subsampling::S444,
        )
        .expect("encode");
        assert_eq!(crate::jpeg::sequential_dct_precision(&stream), Some(12));
        let (raw, g) = jpeg12_decode(&stream, &geometry(rows, cols)).expect("decode");
        assert_eq!((g.bits_alloc, g.planar), (16, false));
        let back: Vec<i32> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
            .collect();
        assert_eq!(back.len(), values.len());
        let worst = values
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as i32 - b).abs())
            .max()
            .unwrap_or(0);
        assert!(worst <= 16, "quality 100 stays close: {worst}");
        assert!(back.iter().any(|v| *v > 255), "values past 8 bits");

        assert!(matches!(
            jpeg12_decode(&stream, &geometry(rows, cols + 8)),
            Err(PixelError::Malformed(_))
        ));
        let mut damaged = stream.clone();
        damaged.truncate(stream.len() / 3);
        assert!(jpeg12_decode(&damaged, &geometry(rows, cols)).is_err());
    }
}
