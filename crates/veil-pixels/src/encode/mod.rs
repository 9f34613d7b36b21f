//! Encoding cleaned frames back into Pixel Data.
//!
//! Why: a redacted image must leave Veil in the transfer syntax it came in
//! whenever a lossless encoder for that syntax exists, so receivers see the
//! same kind of object, and it must never be re-compressed lossily behind
//! the user's back. Lossy sources (JPEG baseline/extended, JPEG 2000,
//! JPEG-LS near-lossless) have no lossless re-encode in their own syntax:
//! their decoded samples go out in JPEG-LS lossless (Explicit VR Little
//! Endian without the `jpegls` feature), which keeps every decoded value,
//! and the report says so.

mod jpeg_lossless;
mod rle;

use dicom_core::VR;
use veil_core::Tag;
use veil_io::{Element, TsInfo, Value};

use crate::raw::{deinterleave, RawFrame, RawLayout};
use crate::PixelError;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";
const JPEG_LS_NEAR: &str = "1.2.840.10008.1.2.4.81";
const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";

/// What the encoder may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodePolicy {
    /// Allow lossy re-compression (a recipe must ask for it): 8-bit JPEG
    /// Baseline sources (MONOCHROME or RGB after decoding) are then
    /// re-encoded as JPEG Baseline at quality [`LOSSY_QUALITY`] (color as
    /// YBR_FULL_422), a second generation of loss, instead of growing into
    /// JPEG-LS lossless. Other sources are unaffected.
    pub allow_lossy: bool,
}

/// JPEG quality of lossy re-encoding (see [`EncodePolicy::allow_lossy`]):
/// high, so the second generation adds little visible loss.
pub const LOSSY_QUALITY: u8 = 95;

/// Pixel Data and the Image Pixel attributes that go with it.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The output transfer syntax (the source's when an encoder exists).
    pub ts: TsInfo,
    /// (7FE0,0010): native bytes (OB/OW, byte order of `ts`) or an
    /// in-memory encapsulated item stream.
    pub pixel_data: Element,
    /// Attributes to put into the data set with it (byte order of `ts`):
    /// Photometric Interpretation, Planar Configuration (color), and, for
    /// lossy sources, Lossy Image Compression "01" and its method.
    pub header: Vec<Element>,
    /// Set when the transfer syntax changed: what to what and why (no
    /// values), for the report.
    pub transcoded: Option<String>,
    /// Attributes to remove: the Extended Offset Table and its lengths
    /// (7FE0,0001/0002) describe the old fragments, and after a transcode
    /// the Icon Image Sequence (0088,0200), whose pixel data would still be
    /// in the old syntax (PS3.15 removes it anyway).
    pub remove: Vec<Tag>,
}

impl Encoded {
    /// Puts the result into a data set read from the source: removes
    /// [`Encoded::remove`], sets [`Encoded::header`] and the Pixel Data.
    /// The data set is then written in [`Encoded::ts`]; its byte order
    /// always matches, since big-endian sources are never transcoded.
    pub fn apply_to(&self, ds: &mut veil_io::DataSet) {
        for t in &self.remove {
            ds.remove(*t);
        }
        for e in &self.header {
            ds.put(e.clone());
        }
        ds.put(self.pixel_data.clone());
    }
}

enum Kind {
    /// Uncompressed: big endian and planar as the source.
    Native {
        big_endian: bool,
        planar: bool,
    },
    Rle,
    #[cfg(feature = "jpegls")]
    JpegLs,
    JpegLossless,
    /// Lossy JPEG Baseline (only with [`EncodePolicy::allow_lossy`]).
    JpegBaseline,
}

/// Frame-by-frame encoder: push every frame in order (all of them: the
/// encoder does not know Number of Frames), then finish. The encoded
/// output is held in memory until [`FrameEncoder::finish`] hands it over
/// as one element; only one decoded frame need exist at a time.
pub struct FrameEncoder {
    layout: RawLayout,
    kind: Kind,
    ts: TsInfo,
    transcoded: Option<String>,
    /// Lossy Image Compression Method (0028,2114) of a lossy source.
    lossy_method: Option<&'static str>,
    native: Vec<u8>,
    fragments: Vec<Vec<u8>>,
    pushed: u32,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("ts", &self.ts.uid)
            .field("pushed", &self.pushed)
            .finish()
    }
}

/// A readable name for the report.
fn ts_name(uid: &str) -> String {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        EXPLICIT_LE => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        RLE => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended",
        JPEG_LOSSLESS => "JPEG Lossless",
        JPEG_LOSSLESS_SV1 => "JPEG Lossless SV1",
        JPEG_LS => "JPEG-LS Lossless",
        JPEG_LS_NEAR => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        other => return format!("transfer syntax {other}"),
    }
    .to_string()
}

/// The Lossy Image Compression Method term (PS3.3 C.7.6.1.1.5) of lossy
/// sources.
pub fn lossy_method(uid: &str) -> Option<&'static str> {
    match uid {
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" => Some("ISO_10918_1"),
        "1.2.840.10008.1.2.4.91" => Some("ISO_15444_1"),
        JPEG_LS_NEAR => Some("ISO_14495_1"),
        _ => None,
    }
}

impl FrameEncoder {
    /// Chooses the output for frames of `layout` read from a source in
    /// `source_ts`: the same syntax when Veil has a lossless encoder for
    /// it, otherwise JPEG-LS lossless (or Explicit VR Little Endian).
    pub fn new(
        layout: &RawLayout,
        source_ts: &TsInfo,
        policy: EncodePolicy,
    ) -> Result<FrameEncoder, PixelError> {
        if !matches!(layout.bits_alloc, 8 | 16) || !matches!(layout.spp, 1 | 3) {
            return Err(PixelError::Unsupported(format!(
                "encoding {} samples of {} bits",
                layout.spp, layout.bits_alloc
            )));
        }
        let uid = source_ts.uid.as_str();
        let (kind, ts) = if !source_ts.encapsulated {
            let kind = Kind::Native {
                big_endian: source_ts.big_endian,
                planar: layout.planar_in_source && layout.spp == 3,
            };
            (kind, source_ts.clone())
        } else if layout.subsampled() {
            return Err(PixelError::Unsupported(
                "encoding subsampled YBR_FULL_422 frames".into(),
            ));
        } else {
            let baseline_ok = layout.bits_alloc == 8
                && (layout.photometric == "RGB" || layout.photometric.starts_with("MONOCHROME"));
            match uid {
                JPEG_BASELINE if policy.allow_lossy && baseline_ok => {
                    (Kind::JpegBaseline, source_ts.clone())
                }
                RLE => (Kind::Rle, source_ts.clone()),
                JPEG_LOSSLESS | JPEG_LOSSLESS_SV1 => (Kind::JpegLossless, source_ts.clone()),
                #[cfg(feature = "jpegls")]
                JPEG_LS => (Kind::JpegLs, source_ts.clone()),
                #[cfg(feature = "jpegls")]
                _ => (
                    Kind::JpegLs,
                    TsInfo {
                        uid: JPEG_LS.into(),
                        big_endian: false,
                        deflated: false,
                        encapsulated: true,
                    },
                ),
                #[cfg(not(feature = "jpegls"))]
                _ => (
                    Kind::Native {
                        big_endian: false,
                        planar: false,
                    },
                    TsInfo::explicit_le(),
                ),
            }
        };
        let recompressed = matches!(kind, Kind::JpegBaseline).then(|| {
            format!("JPEG Baseline re-compressed lossily (quality {LOSSY_QUALITY}, allowed by the recipe)")
        });
        let transcoded = (ts.uid != source_ts.uid).then(|| {
            let why = if uid == JPEG_LS_NEAR {
                "no near-lossless re-encode without further loss"
            } else {
                "no lossless encoder for the source"
            };
            format!("{} → {} ({why})", ts_name(uid), ts_name(&ts.uid))
        });
        Ok(FrameEncoder {
            layout: layout.clone(),
            kind,
            ts,
            transcoded: transcoded.or(recompressed),
            lossy_method: lossy_method(uid),
            native: Vec::new(),
            fragments: Vec::new(),
            pushed: 0,
        })
    }

    /// The output transfer syntax.
    pub fn ts(&self) -> &TsInfo {
        &self.ts
    }

    /// Encodes the next frame (frames must come in order, 0 first).
    pub fn push(&mut self, frame: &RawFrame) -> Result<(), PixelError> {
        let l = &self.layout;
        if frame.index != self.pushed {
            return Err(PixelError::Malformed("frames pushed out of order".into()));
        }
        if frame.data.len() != l.frame_len() {
            return Err(PixelError::Malformed(
                "frame length does not match the layout".into(),
            ));
        }
        let pixels = l.rows as usize * l.cols as usize;
        match &self.kind {
            Kind::Native { big_endian, planar } => {
                let start = self.native.len();
                if *planar {
                    self.native
                        .extend(deinterleave(&frame.data, pixels, l.bytes_per_sample()));
                } else {
                    self.native.extend_from_slice(&frame.data);
                }
                if *big_endian && l.bits_alloc == 16 {
                    self.native[start..]
                        .chunks_exact_mut(2)
                        .for_each(|c| c.swap(0, 1));
                }
            }
            Kind::Rle => self.fragments.push(rle::encode(l, &frame.data)),
            Kind::JpegLossless => {
                let p = precision(l, &frame.data);
                self.fragments
                    .push(jpeg_lossless::encode(l, &frame.data, p));
            }
            #[cfg(feature = "jpegls")]
            Kind::JpegLs => self.fragments.push(jpeg_ls(l, &frame.data)?),
            Kind::JpegBaseline => self.fragments.push(jpeg_baseline(l, &frame.data)?),
        }
        self.pushed += 1;
        Ok(())
    }

    /// The Pixel Data element and the attributes that change with it.
    pub fn finish(self) -> Result<Encoded, PixelError> {
        let l = &self.layout;
        let be = self.ts.big_endian;
        let pixel_data = match self.kind {
            Kind::Native { .. } => Element {
                tag: Tag(0x7FE0, 0x0010),
                vr: if l.bits_alloc == 8 { VR::OB } else { VR::OW },
                value: Value::Bytes(self.native),
            },
            _ => Element {
                tag: Tag(0x7FE0, 0x0010),
                vr: VR::OB,
                value: Value::EncapsulatedBytes(item_stream(&self.fragments, true)),
            },
        };
        let cs = |e: u16, v: &str| {
            let mut b = v.as_bytes().to_vec();
            if b.len() % 2 == 1 {
                b.push(b' ');
            }
            Element {
                tag: Tag(0x0028, e),
                vr: VR::CS,
                value: Value::Bytes(b),
            }
        };
        // jpeg-encoder stores color as YCbCr with 2x1 chroma subsampling
        let photometric = match self.kind {
            Kind::JpegBaseline if l.spp == 3 => "YBR_FULL_422",
            _ => l.photometric.as_str(),
        };
        let mut header = vec![cs(0x0004, photometric)];
        if l.spp == 3 {
            // Native and RLE keep the source's value; the JPEG family
            // decodes to interleaved samples.
            let planar = match self.kind {
                Kind::Native { planar, .. } => planar,
                Kind::Rle => l.planar_in_source,
                _ => false,
            } as u16;
            header.push(Element {
                tag: Tag(0x0028, 0x0006),
                vr: VR::US,
                value: Value::Bytes(if be {
                    planar.to_be_bytes().to_vec()
                } else {
                    planar.to_le_bytes().to_vec()
                }),
            });
        }
        let transcoded = self.transcoded.is_some();
        if let Some(method) = self.lossy_method {
            header.push(cs(0x2110, "01"));
            header.push(cs(0x2114, method));
        }
        Ok(Encoded {
            ts: self.ts,
            pixel_data,
            header,
            transcoded: self.transcoded,
            remove: [Tag(0x7FE0, 0x0001), Tag(0x7FE0, 0x0002)]
                .into_iter()
                .chain(transcoded.then_some(Tag(0x0088, 0x0200)))
                .collect(),
        })
    }
}

/// The sample precision to declare in a JPEG or JPEG-LS frame: Bits Stored
/// when every sample fits (at least 9 for 16-bit samples, so decoders
/// return 16-bit samples), else all allocated bits (signed values stored
/// sign-extended, or bits above Bits Stored in use).
fn precision(l: &RawLayout, data: &[u8]) -> u8 {
    if l.bits_alloc == 8 {
        return 8;
    }
    let max = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .max()
        .unwrap_or(0) as u32;
    let p = l.bits_stored.clamp(9, 16) as u32;
    if max < 1 << p {
        p as u8
    } else {
        16
    }
}

/// One 8-bit frame as lossy JPEG Baseline (jpeg-encoder).
fn jpeg_baseline(l: &RawLayout, data: &[u8]) -> Result<Vec<u8>, PixelError> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let err = |e: jpeg_encoder::EncodingError| PixelError::Decode {
        ts: JPEG_BASELINE.into(),
        detail: format!("JPEG encoder: {e}"),
    };
    let size = |v: u32| {
        u16::try_from(v).map_err(|_| PixelError::Unsupported("JPEG image over 65535 pixels".into()))
    };
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out, LOSSY_QUALITY);
    let color = if l.spp == 3 {
        enc.set_sampling_factor(SamplingFactor::R_4_2_2);
        ColorType::Rgb
    } else {
        ColorType::Luma
    };
    enc.encode(data, size(l.cols)?, size(l.rows)?, color)
        .map_err(err)?;
    Ok(out)
}

/// One frame as JPEG-LS lossless (CharLS), samples interleaved.
#[cfg(feature = "jpegls")]
fn jpeg_ls(l: &RawLayout, data: &[u8]) -> Result<Vec<u8>, PixelError> {
    let err = |e: charls::Error| PixelError::Decode {
        ts: JPEG_LS.into(),
        detail: format!("JPEG-LS encoder: {e:?}"),
    };
    let mut codec = charls::CharLS::default();
    if l.spp == 3 {
        codec
            .set_interleave_mode(charls::InterleaveMode::Sample)
            .map_err(err)?;
    }
    let info = charls::FrameInfo {
        width: l.cols,
        height: l.rows,
        bits_per_sample: precision(l, data) as i32,
        component_count: l.spp as i32,
    };
    codec.encode(info, 0, data).map_err(err)
}

/// The encapsulated item stream: a Basic Offset Table (when each frame is
/// one fragment, so offsets are known) or an empty one (past 4 GiB too), the fragments
/// padded to even length, and the sequence delimiter.
pub(crate) fn item_stream(fragments: &[Vec<u8>], offsets_per_fragment: bool) -> Vec<u8> {
    let item = |out: &mut Vec<u8>, tag: u16, len: usize| {
        out.extend([0xFE, 0xFF]);
        out.extend(tag.to_le_bytes());
        out.extend((len as u32).to_le_bytes());
    };
    let padded = |f: &Vec<u8>| f.len() + f.len() % 2;
    let total: usize = fragments.iter().map(|f| padded(f) + 8).sum();
    // one Basic Offset Table entry per fragment is right only when each
    // frame is one fragment; otherwise the table stays empty (allowed)
    let mut offsets = Vec::new();
    if offsets_per_fragment && total <= u32::MAX as usize {
        let mut at = 0usize;
        for f in fragments {
            offsets.extend((at as u32).to_le_bytes());
            at += padded(f) + 8;
        }
    }
    let mut out = Vec::with_capacity(total + offsets.len() + 16);
    item(&mut out, 0xE000, offsets.len());
    out.extend(offsets);
    for f in fragments {
        item(&mut out, 0xE000, padded(f));
        out.extend_from_slice(f);
        if f.len() % 2 == 1 {
            out.push(0);
        }
    }
    item(&mut out, 0xE0DD, 0);
    out
}
