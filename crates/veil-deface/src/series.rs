//! DICOM series as volumes, and the defaced volume written back as the same
//! series.
//!
//! Why this is strict: a face cut in patient space is only right if every
//! slice is where the header says. Slices are sorted by their position
//! along the slice normal; a series whose slices are not stacked straight
//! along the normal (gantry tilt), not evenly spaced, or that changes
//! orientation, size, pixel spacing or pixel format is refused with the
//! reason, and the caller sends it to review.
//!
//! Pixels come in and go out through the pixel stage's codecs
//! ([`veil_pixels::RawReader`], [`veil_pixels::FrameEncoder`]): a head
//! series stored compressed or big endian is defaced like a native one
//! and keeps its transfer syntax where a lossless encoder exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use veil_core::Tag;
use veil_io::{DataSet, DicomFile, TsInfo, Value};
use veil_pixels::{EncodePolicy, Encoded, FrameEncoder, RawFrame, RawLayout, RawReader};

use crate::volume::{Volume, VolumeError};

/// The DCM code that says the Clean Recognizable Visual Features Option
/// was applied (PS3.16 CID 7050).
pub const CLEAN_VISUAL_FEATURES_CODE: (&str, &str) =
    ("113102", "Clean Recognizable Visual Features Option");

/// One slice of a series, in slice order: a single-frame instance, or
/// one frame of a multi-frame (enhanced) instance.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Where it was read from.
    pub path: PathBuf,
    /// The parsed file (pixel data left on disk), shared by the slices of
    /// a multi-frame instance.
    pub file: Arc<DicomFile>,
    /// SOP Instance UID (to key per-instance results; never logged).
    pub sop_instance_uid: String,
    /// The frame of `file` this slice is (0 for a single-frame instance).
    pub frame: u32,
    slope: f64,
    intercept: f64,
    layout: RawLayout,
}

/// A series assembled into a volume: the slices in slice order (slice k
/// of the volume is `slices[k]`), the instances they come from, and their
/// common pixel format.
#[derive(Debug, Clone)]
pub struct Series {
    /// The slices, sorted along the slice normal.
    pub slices: Vec<Slice>,
    /// For each instance, its slices in frame order (see
    /// [`Series::instances`]).
    instances: Vec<Vec<usize>>,
    rows: usize,
    cols: usize,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
}

fn err(s: impl Into<String>) -> VolumeError {
    VolumeError::Series(s.into())
}

fn ds_numbers(ds: &DataSet, tag: Tag) -> Option<Vec<f64>> {
    let s = ds.ascii(tag)?;
    s.split('\\')
        .map(|p| p.trim().parse::<f64>().ok())
        .collect::<Option<Vec<f64>>>()
        .filter(|v| v.iter().all(|x| x.is_finite()))
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Shared Functional Groups Sequence (5200,9229).
const SHARED_GROUPS: Tag = Tag(0x5200, 0x9229);
/// Per-Frame Functional Groups Sequence (5200,9230).
const PER_FRAME_GROUPS: Tag = Tag(0x5200, 0x9230);
/// Plane Position Sequence (0020,9113) > Image Position (Patient).
const PLANE_POSITION: (Tag, Tag) = (Tag(0x0020, 0x9113), Tag(0x0020, 0x0032));
/// Plane Orientation Sequence (0020,9116) > Image Orientation (Patient).
const PLANE_ORIENTATION: (Tag, Tag) = (Tag(0x0020, 0x9116), Tag(0x0020, 0x0037));
/// Pixel Measures Sequence (0028,9110) > Pixel Spacing.
const PIXEL_SPACING: (Tag, Tag) = (Tag(0x0028, 0x9110), Tag(0x0028, 0x0030));
/// Pixel Value Transformation Sequence (0028,9145) > Rescale Slope.
const RESCALE_SLOPE: (Tag, Tag) = (Tag(0x0028, 0x9145), Tag(0x0028, 0x1053));
/// Pixel Value Transformation Sequence (0028,9145) > Rescale Intercept.
const RESCALE_INTERCEPT: (Tag, Tag) = (Tag(0x0028, 0x9145), Tag(0x0028, 0x1052));

fn items(ds: &DataSet, tag: Tag) -> Option<&[DataSet]> {
    match &ds.get(tag)?.value {
        Value::Sequence(v) => Some(v),
        _ => None,
    }
}

/// The numbers of `attr` for frame `frame`: from the frame's item of the
/// Per-Frame Functional Groups Sequence (its `group` macro), else from
/// the Shared Functional Groups Sequence, else from the top level, where
/// a single-frame instance keeps them. Why one lookup for both: an
/// enhanced object and a classic series then go through the same checks,
/// sort and affine, and cannot drift apart.
fn frame_numbers(ds: &DataSet, frame: usize, (group, attr): (Tag, Tag)) -> Option<Vec<f64>> {
    let in_group = |fg: Option<&DataSet>| {
        fg.and_then(|i| items(i, group))
            .and_then(|g| g.first())
            .and_then(|m| ds_numbers(m, attr))
    };
    in_group(items(ds, PER_FRAME_GROUPS).and_then(|v| v.get(frame)))
        .or_else(|| in_group(items(ds, SHARED_GROUPS).and_then(|v| v.first())))
        .or_else(|| ds_numbers(ds, attr))
}

/// Reads the files of one series into a volume: single-frame images of
/// the same series, or one multi-frame (Enhanced CT/MR) object whose
/// frames form the volume, its geometry in the functional groups. Every
/// image must be single-sample.
pub fn read_series(files: &[PathBuf]) -> Result<(Volume, Series), VolumeError> {
    /// One frame before sorting: where it comes from and where it is.
    struct Raw {
        src: usize,
        frame: usize,
        pos: [f64; 3],
        slope: f64,
        intercept: f64,
    }
    if files.is_empty() {
        return Err(err("fewer than two images: not a volume"));
    }
    let mut sources: Vec<(PathBuf, Arc<DicomFile>, usize)> = Vec::with_capacity(files.len());
    let mut raws = Vec::with_capacity(files.len());
    let mut series_uid: Option<String> = None;
    let mut iop: Option<Vec<f64>> = None;
    let mut spacing: Option<Vec<f64>> = None;
    let mut geom: Option<(u16, u16, u16, u16, u16)> = None;
    for p in files {
        let file = veil_io::read(p).map_err(|e| err(format!("cannot read an instance: {e}")))?;
        let ds = &file.dataset;
        let be = file.ts.big_endian;
        let uid = ds.ascii(Tag(0x0020, 0x000E)).unwrap_or_default();
        match &series_uid {
            None => series_uid = Some(uid),
            Some(u) if *u != uid => return Err(err("instances of more than one series")),
            _ => {}
        }
        let frames = match ds_numbers(ds, Tag(0x0028, 0x0008)).and_then(|n| n.first().copied()) {
            None => 1,
            // far above any head volume: a damaged header must not make
            // the reader allocate without bound
            Some(n) if (1.0..=65536.0).contains(&n) && n.fract() == 0.0 => n as usize,
            Some(_) => return Err(err("Number of Frames (0028,0008) is malformed")),
        };
        if items(ds, PER_FRAME_GROUPS).is_some_and(|v| v.len() != frames) {
            return Err(err(
                "Per-Frame Functional Groups Sequence does not have one item per frame",
            ));
        }
        let g = (
            ds.u16(Tag(0x0028, 0x0010), be)
                .ok_or_else(|| err("Rows (0028,0010) missing"))?,
            ds.u16(Tag(0x0028, 0x0011), be)
                .ok_or_else(|| err("Columns (0028,0011) missing"))?,
            ds.u16(Tag(0x0028, 0x0100), be)
                .ok_or_else(|| err("BitsAllocated missing"))?,
            ds.u16(Tag(0x0028, 0x0101), be).unwrap_or(0),
            ds.u16(Tag(0x0028, 0x0103), be).unwrap_or(0),
        );
        if ds.u16(Tag(0x0028, 0x0002), be).unwrap_or(1) != 1 {
            return Err(err("colour images are not a volume"));
        }
        match geom {
            None => geom = Some(g),
            Some(x) if x != g => {
                return Err(err(
                    "rows, columns or pixel format change within the series",
                ))
            }
            _ => {}
        }
        for f in 0..frames {
            let o = frame_numbers(ds, f, PLANE_ORIENTATION)
                .filter(|v| v.len() == 6)
                .ok_or_else(|| err("ImageOrientationPatient (0020,0037) missing or malformed"))?;
            match &iop {
                None => iop = Some(o),
                Some(x) if x.iter().zip(&o).any(|(a, b)| (a - b).abs() > 1e-4) => {
                    return Err(err("ImageOrientationPatient differs between instances"))
                }
                _ => {}
            }
            let s = frame_numbers(ds, f, PIXEL_SPACING)
                .filter(|v| v.len() == 2 && v[0] > 0.0 && v[1] > 0.0)
                .ok_or_else(|| err("PixelSpacing (0028,0030) missing or malformed"))?;
            match &spacing {
                None => spacing = Some(s),
                Some(x) if x.iter().zip(&s).any(|(a, b)| (a - b).abs() > 1e-4) => {
                    return Err(err("PixelSpacing differs between instances"))
                }
                _ => {}
            }
            let pos = frame_numbers(ds, f, PLANE_POSITION)
                .filter(|v| v.len() == 3)
                .ok_or_else(|| err("ImagePositionPatient (0020,0032) missing or malformed"))?;
            let slope = frame_numbers(ds, f, RESCALE_SLOPE)
                .and_then(|v| v.first().copied())
                .filter(|s| *s != 0.0)
                .unwrap_or(1.0);
            let intercept = frame_numbers(ds, f, RESCALE_INTERCEPT)
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0);
            raws.push(Raw {
                src: sources.len(),
                frame: f,
                pos: [pos[0], pos[1], pos[2]],
                slope,
                intercept,
            });
        }
        sources.push((p.clone(), Arc::new(file), frames));
    }
    // Frames of one object at one position are stacks or time points
    // (cine, diffusion, perfusion), not a head volume to cut.
    let same_position = if sources.iter().any(|s| s.2 > 1) {
        "frames at the same position: more than one stack or time point"
    } else {
        "two instances at the same position"
    };
    if raws.len() < 2 {
        return Err(err("fewer than two images: not a volume"));
    }
    let (rows, cols, bits_allocated, bits_stored, pixrep) = geom.expect("at least one file");
    if !matches!(bits_allocated, 8 | 16) {
        return Err(err(format!(
            "BitsAllocated {bits_allocated} is not supported"
        )));
    }
    let bits_stored = if bits_stored == 0 || bits_stored > bits_allocated {
        bits_allocated
    } else {
        bits_stored
    };
    let o = iop.expect("set");
    let row_dir = [o[0], o[1], o[2]];
    let col_dir = [o[3], o[4], o[5]];
    let normal = cross(row_dir, col_dir);
    let nn = dot(normal, normal).sqrt();
    if (dot(row_dir, row_dir).sqrt() - 1.0).abs() > 1e-3
        || (dot(col_dir, col_dir).sqrt() - 1.0).abs() > 1e-3
        || dot(row_dir, col_dir).abs() > 1e-3
    {
        return Err(err(
            "ImageOrientationPatient is not two orthonormal directions",
        ));
    }
    let normal = normal.map(|x| x / nn);
    raws.sort_by(|a, b| dot(a.pos, normal).total_cmp(&dot(b.pos, normal)));
    let n = raws.len();
    let first = raws[0].pos;
    let last = raws[n - 1].pos;
    let span = dot(
        [last[0] - first[0], last[1] - first[1], last[2] - first[2]],
        normal,
    );
    let step = span / (n - 1) as f64;
    if step < 1e-3 {
        return Err(err(same_position));
    }
    for w in raws.windows(2) {
        let d = [
            w[1].pos[0] - w[0].pos[0],
            w[1].pos[1] - w[0].pos[1],
            w[1].pos[2] - w[0].pos[2],
        ];
        let along = dot(d, normal);
        if along < 1e-3 {
            return Err(err(same_position));
        }
        if (along - step).abs() > 0.02 * step + 0.01 {
            return Err(err("uneven slice spacing (missing or extra slices)"));
        }
        let across = (dot(d, d) - along * along).max(0.0).sqrt();
        if across > 0.01 * along + 0.01 {
            return Err(err("slices are not stacked along the normal (gantry tilt)"));
        }
    }
    let spacing = spacing.expect("set");
    // LPS: column index i moves along the row direction by the column
    // spacing (PixelSpacing[1]), row index j along the column direction by
    // the row spacing (PixelSpacing[0]); k from the first to the last slice.
    let kdir = [
        (last[0] - first[0]) / (n - 1) as f64,
        (last[1] - first[1]) / (n - 1) as f64,
        (last[2] - first[2]) / (n - 1) as f64,
    ];
    let mut affine = [[0.0; 4]; 4];
    affine[3][3] = 1.0;
    for r in 0..3 {
        let flip = if r < 2 { -1.0 } else { 1.0 };
        affine[r][0] = flip * row_dir[r] * spacing[1];
        affine[r][1] = flip * col_dir[r] * spacing[0];
        affine[r][2] = flip * kdir[r];
        affine[r][3] = flip * first[r];
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let signed = pixrep == 1;
    let plane = rows * cols;
    let mut data = vec![0f32; plane * n];
    // where each frame of each instance goes in slice order
    let mut instances: Vec<Vec<usize>> = sources.iter().map(|s| vec![0; s.2]).collect();
    for (k, r) in raws.iter().enumerate() {
        instances[r.src][r.frame] = k;
    }
    let mask: u32 = if bits_stored >= 32 {
        u32::MAX
    } else {
        (1u32 << bits_stored) - 1
    };
    let sign_bit = 1u32 << (bits_stored - 1);
    let pixels = |e: veil_pixels::PixelError| err(format!("pixel data: {e}"));
    let mut slices: Vec<Option<Slice>> = (0..n).map(|_| None).collect();
    for ((path, file, frames), at) in sources.iter().zip(&instances) {
        // The reader checks each decoded frame against Rows, Columns and
        // Bits Allocated; samples per pixel were checked on the header.
        let mut reader = RawReader::new(file).map_err(pixels)?;
        if reader.frame_count() as usize != *frames {
            return Err(err("Number of Frames does not match the pixel data"));
        }
        let layout = reader.layout().clone();
        let sop = file.dataset.ascii(Tag(0x0008, 0x0018)).unwrap_or_default();
        for (f, &k) in at.iter().enumerate() {
            let frame = reader.frame(f as u32).map_err(pixels)?;
            let r = &raws[k];
            let out = &mut data[k * plane..(k + 1) * plane];
            let samples = frame.data.chunks_exact(bits_allocated as usize / 8);
            for (o, c) in out.iter_mut().zip(samples) {
                let raw = if bits_allocated == 8 {
                    c[0] as u32
                } else {
                    u16::from_le_bytes([c[0], c[1]]) as u32
                } & mask;
                let v = if signed && raw & sign_bit != 0 {
                    raw as i64 - (1i64 << bits_stored)
                } else {
                    raw as i64
                };
                *o = (v as f64 * r.slope + r.intercept) as f32;
            }
            slices[k] = Some(Slice {
                path: path.clone(),
                file: file.clone(),
                sop_instance_uid: sop.clone(),
                frame: f as u32,
                slope: r.slope,
                intercept: r.intercept,
                layout: layout.clone(),
            });
        }
    }
    let slices: Vec<Slice> = slices
        .into_iter()
        .map(|s| s.expect("every frame"))
        .collect();
    // instances in the slice order of their first frame, so a classic
    // series is written as IM00001... in slice order as before
    instances.sort_by_key(|at| at.iter().copied().min().unwrap_or(0));
    let vol = Volume {
        dims: [cols, rows, n],
        data,
        affine,
    };
    Ok((
        vol,
        Series {
            slices,
            instances,
            rows,
            cols,
            bits_allocated,
            bits_stored,
            signed,
        },
    ))
}

impl Slice {
    /// What its stored samples mean (for [`encode_slice`]).
    pub fn layout(&self) -> &RawLayout {
        &self.layout
    }
}

impl Series {
    /// The stored pixel bytes of slice `k` of `vol` (the defaced volume,
    /// on this series' grid): inverse rescale of that instance, rounded
    /// and clamped to the stored range, in the input's pixel format.
    pub fn pixel_bytes(&self, vol: &Volume, k: usize) -> Vec<u8> {
        let s = &self.slices[k];
        let n = self.rows * self.cols;
        let plane = &vol.data[k * n..(k + 1) * n];
        let (lo, hi) = if self.signed {
            (
                -(1i64 << (self.bits_stored - 1)),
                (1i64 << (self.bits_stored - 1)) - 1,
            )
        } else {
            (0, (1i64 << self.bits_stored) - 1)
        };
        let width = self.bits_allocated as usize / 8;
        let mut out = Vec::with_capacity(n * width);
        for &v in plane {
            let x = ((v as f64 - s.intercept) / s.slope)
                .round()
                .clamp(lo as f64, hi as f64) as i64;
            let raw = (x as u64) & ((1u64 << self.bits_allocated) - 1);
            if width == 1 {
                out.push(raw as u8);
            } else {
                out.extend_from_slice(&(raw as u16).to_le_bytes());
            }
        }
        out
    }

    /// The instances the slices come from, in the slice order of their
    /// first frame: for each, the indices of its slices in frame order.
    /// A classic series has one slice per instance; an enhanced object
    /// is one instance holding every slice.
    pub fn instances(&self) -> &[Vec<usize>] {
        &self.instances
    }

    /// The stored pixel bytes of instance `i` (see [`Series::instances`])
    /// from `vol`: its frames' [`Series::pixel_bytes`], in frame order.
    pub fn instance_pixel_bytes(&self, vol: &Volume, i: usize) -> Vec<u8> {
        self.instances[i]
            .iter()
            .flat_map(|&k| self.pixel_bytes(vol, k))
            .collect()
    }

    /// Instance `i` (see [`Series::instances`]) with the defaced pixel
    /// data in place (see [`encode_slice`]), every frame replaced: the
    /// data set and the syntax to write it in, and what was transcoded
    /// (for the report; no values).
    pub fn defaced(
        &self,
        vol: &Volume,
        i: usize,
    ) -> Result<(DataSet, TsInfo, Option<String>), VolumeError> {
        let s = &self.slices[self.instances[i][0]];
        let encoded = encode_slice(&s.layout, &s.file.ts, self.instance_pixel_bytes(vol, i))?;
        let mut ds = s.file.dataset.clone();
        encoded.apply_to(&mut ds);
        Ok((ds, encoded.ts, encoded.transcoded))
    }

    /// Writes every instance, defaced, into `out_dir` as `IM00001.dcm`...
    /// in slice order (names carry nothing of the input); an enhanced
    /// object stays one object. With `mark_method`, code 113102 is added
    /// to De-identification Method Code Sequence (when `veil deface` runs
    /// alone; in a `veil deid` batch the pipeline adds it with the rest
    /// of the method codes). Returns what was transcoded, if any instance
    /// was (syntax names only).
    pub fn write(
        &self,
        vol: &Volume,
        out_dir: &Path,
        mark_method: bool,
    ) -> Result<Option<String>, VolumeError> {
        std::fs::create_dir_all(out_dir)?;
        let mut note = None;
        for i in 0..self.instances.len() {
            let (mut ds, ts, transcoded) = self.defaced(vol, i)?;
            note = note.or(transcoded);
            if mark_method {
                add_method_code(&mut ds);
            }
            let s = &self.slices[self.instances[i][0]];
            let meta = veil_io::WriteMeta {
                sop_class: s.file.sop_class().unwrap_or_default(),
                sop_instance: s.sop_instance_uid.clone(),
            };
            let path = out_dir.join(format!("IM{:05}.dcm", i + 1));
            veil_io::write_file(&path, &meta, &ts, &ds, &s.file.source)
                .map_err(|e| err(format!("cannot write an instance: {e}")))?;
        }
        Ok(note)
    }
}

/// A defaced instance's stored samples (little endian, as
/// [`Series::instance_pixel_bytes`] gives them: one or more frames, in
/// frame order) encoded for writing: in the source's transfer syntax
/// when Veil has a lossless encoder for it, else JPEG-LS lossless (a
/// lossy source keeps Lossy Image Compression "01"), as the pixel stage
/// writes cleaned frames. Why not always native: a compressed head
/// series written uncompressed is several times larger, and the syntax
/// is the receiver's to choose, not ours.
pub fn encode_slice(
    layout: &RawLayout,
    source_ts: &TsInfo,
    samples: Vec<u8>,
) -> Result<Encoded, VolumeError> {
    let encode = |e: veil_pixels::PixelError| err(format!("cannot encode a defaced slice: {e}"));
    let len = layout.frame_len();
    if len == 0 || samples.is_empty() || samples.len() % len != 0 {
        return Err(err(
            "cannot encode a defaced slice: not a whole number of frames",
        ));
    }
    let mut enc = FrameEncoder::new(layout, source_ts, EncodePolicy::default()).map_err(encode)?;
    for (index, data) in samples.chunks_exact(len).enumerate() {
        enc.push(&RawFrame {
            index: index as u32,
            data: data.to_vec(),
        })
        .map_err(encode)?;
    }
    enc.finish().map_err(encode)
}

/// Adds code 113102 (Clean Recognizable Visual Features Option) to
/// De-identification Method Code Sequence (0012,0064), once.
pub fn add_method_code(ds: &mut DataSet) {
    let (code, meaning) = CLEAN_VISUAL_FEATURES_CODE;
    ds.add_code_item(Tag(0x0012, 0x0064), code, "DCM", meaning);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::VR;
    use veil_io::Element;

    fn seq(g: u16, e: u16, item: Vec<Element>) -> Element {
        Element::sequence(Tag(g, e), vec![DataSet::of(item)])
    }

    /// A 3x2 signed 16-bit Enhanced MR object whose frame `n` holds the
    /// value `n` and lies at `z[n]` mm; orientation, spacing and a rescale
    /// (slope 2, intercept -1) shared.
    fn enhanced(path: &Path, z: &[f64]) {
        let us = |e: u16, v: u16| Element::bytes(Tag(0x0028, e), VR::US, v.to_le_bytes().to_vec());
        let text = |g: u16, e: u16, vr: VR, v: &str| Element::text(Tag(g, e), vr, v);
        let per_frame = z
            .iter()
            .map(|z| {
                DataSet::of([seq(
                    0x0020,
                    0x9113,
                    vec![text(0x0020, 0x0032, VR::DS, &format!("0\\0\\{z}"))],
                )])
            })
            .collect();
        let shared = DataSet::of([
            seq(
                0x0020,
                0x9116,
                vec![text(0x0020, 0x0037, VR::DS, "1\\0\\0\\0\\1\\0")],
            ),
            seq(0x0028, 0x9110, vec![text(0x0028, 0x0030, VR::DS, "1\\1")]),
            seq(
                0x0028,
                0x9145,
                vec![
                    text(0x0028, 0x1052, VR::DS, "-1"),
                    text(0x0028, 0x1053, VR::DS, "2"),
                ],
            ),
        ]);
        let px: Vec<u8> = (0..z.len())
            .flat_map(|n| std::iter::repeat_n(n as i16, 6).flat_map(i16::to_le_bytes))
            .collect();
        let ds = DataSet::of([
            text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.4.1"),
            text(0x0008, 0x0018, VR::UI, "2.25.1"),
            text(0x0008, 0x0060, VR::CS, "MR"),
            text(0x0020, 0x000E, VR::UI, "2.25.2"),
            us(0x0002, 1),
            text(0x0028, 0x0004, VR::CS, "MONOCHROME2"),
            text(0x0028, 0x0008, VR::IS, &z.len().to_string()),
            us(0x0010, 2),
            us(0x0011, 3),
            us(0x0100, 16),
            us(0x0101, 16),
            us(0x0102, 15),
            us(0x0103, 1),
            Element::sequence(Tag(0x5200, 0x9229), vec![shared]),
            Element::sequence(Tag(0x5200, 0x9230), per_frame),
            Element::bytes(Tag(0x7FE0, 0x0010), VR::OW, px),
        ]);
        veil_io::write_explicit_le(path, &ds).unwrap();
    }

    #[test]
    fn enhanced_frames_sorted_by_position_and_written_back_as_one_object() {
        let dir = veil_test::scratch("series-enhanced");
        let f = dir.join("in.dcm");
        enhanced(&f, &[4.0, 0.0, 2.0]);
        let (vol, s) = read_series(std::slice::from_ref(&f)).unwrap();
        assert_eq!(vol.dims, [3, 2, 3]);
        // frames 1, 2, 0 in slice order, through slope 2 and intercept -1
        assert_eq!([vol.data[0], vol.data[6], vol.data[12]], [1.0, 3.0, -1.0]);
        assert_eq!(vol.affine[2][2], 2.0);
        assert_eq!(s.instances(), [vec![2, 0, 1]]);
        let out = dir.join("out");
        s.write(&vol, &out, true).unwrap();
        let (again, s2) = read_series(&[out.join("IM00001.dcm")]).unwrap();
        assert_eq!(again.data, vol.data, "the same samples back");
        assert_eq!(s2.slices[0].sop_instance_uid, "2.25.1");

        enhanced(&f, &[0.0, 0.0, 2.0, 2.0]);
        let e = read_series(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than one stack or time point"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
