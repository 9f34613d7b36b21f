//! Head volumes for the cascade face check, read here rather than by
//! veil-deface: the check must not share the defacer's reader, or a bug
//! in how the defacer places voxels in space would blind both the same way.
//!
//! A volume is samples on a grid and an affine from voxel indices to
//! patient space in millimetres, RAS+ (x grows towards the patient's
//! right, y towards anterior, z towards superior), as NIfTI stores it. DICOM's LPS positions are turned into RAS on reading.

use std::io::Read;
use std::path::{Path, PathBuf};

use veil_core::Tag;

/// Samples on a grid, placed in patient space.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Samples along i, j, k.
    pub dims: [usize; 3],
    /// `dims[0] * dims[1] * dims[2]` samples, i fastest.
    pub data: Vec<f32>,
    /// Voxel (i, j, k, 1) to RAS millimetres (the bottom row is 0 0 0 1).
    pub affine: [[f64; 4]; 4],
}

impl Volume {
    /// Index of voxel (i, j, k) in `data`.
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        (k * self.dims[1] + j) * self.dims[0] + i
    }

    /// RAS position of a (fractional) voxel index.
    pub fn to_world(&self, v: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        std::array::from_fn(|r| a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3])
    }

    /// The same samples turned in patient space: by `yaw` degrees about
    /// the superior axis, then `pitch` degrees about the left-right axis,
    /// both through the origin (a head turned and tilted in the scanner).
    pub fn rotated(&self, yaw: f64, pitch: f64) -> Volume {
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sp, cp) = pitch.to_radians().sin_cos();
        let rz = [[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
        let r: [[f64; 3]; 3] = std::array::from_fn(|i| {
            std::array::from_fn(|j| (0..3).map(|k| rx[i][k] * rz[k][j]).sum())
        });
        let mut affine = self.affine;
        for (i, row) in affine.iter_mut().take(3).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = (0..3).map(|k| r[i][k] * self.affine[k][j]).sum();
            }
        }
        Volume {
            dims: self.dims,
            data: self.data.clone(),
            affine,
        }
    }

    /// The inverse of the affine's 3x3 part and its translation, for
    /// mapping RAS points back to voxel indices (`None`: degenerate).
    pub fn inverse(&self) -> Option<[[f64; 4]; 3]> {
        let a = &self.affine;
        let m = [
            [a[0][0], a[0][1], a[0][2]],
            [a[1][0], a[1][1], a[1][2]],
            [a[2][0], a[2][1], a[2][2]],
        ];
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        if !det.is_finite() || det.abs() < 1e-9 {
            return None;
        }
        let c = |r: usize, s: usize| {
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            let (s1, s2) = ((s + 1) % 3, (s + 2) % 3);
            m[r1][s1] * m[r2][s2] - m[r1][s2] * m[r2][s1]
        };
        let mut inv = [[0.0; 4]; 3];
        for (r, row) in inv.iter_mut().enumerate() {
            for (s, x) in row.iter_mut().take(3).enumerate() {
                *x = c(s, r) / det;
            }
            row[3] = -(row[0] * a[0][3] + row[1] * a[1][3] + row[2] * a[2][3]);
        }
        Some(inv)
    }
}

/// Why a file is not a head volume this check can read. Says what is
/// wrong with the structure, never a value from the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(&'static str);

/// Larger than any head volume (2^28 samples, 1 GiB as f32): a damaged
/// header must not make the reader allocate without bound.
const MAX_SAMPLES: usize = 1 << 28;

/// And no more than 1 GiB of stored voxels (2^28 doubles would be 2).
const MAX_VOXEL_BYTES: usize = 1 << 30;

/// Reads a NIfTI-1 file (`.nii`, or `.nii.gz` gzip-compressed), its first
/// 3D volume. The affine is the sform when set, else the qform, else the
/// voxel sizes alone (ANALYZE-style), as NIfTI readers do.
pub fn read_nifti(path: &Path) -> Result<Volume, VolumeError> {
    let raw = std::fs::read(path).map_err(|_| VolumeError("cannot read the file"))?;
    nifti_from_bytes(&raw)
}

/// [`read_nifti`] on a file's bytes, `.nii` or `.nii.gz`. A gzip stream is
/// inflated no further than its header says the voxels end: a small file
/// that inflates to gigabytes (a zip bomb) costs no more than its header
/// allows, and that is bounded by `MAX_SAMPLES`.
pub fn nifti_from_bytes(raw: &[u8]) -> Result<Volume, VolumeError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_nifti(raw);
    }
    let damaged = || VolumeError("damaged gzip stream");
    let mut z = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut z)
        .take(352)
        .read_to_end(&mut out)
        .map_err(|_| damaged())?;
    let end = header(&out)?.end;
    (&mut z)
        .take(end.saturating_sub(out.len()) as u64)
        .read_to_end(&mut out)
        .map_err(|_| damaged())?;
    parse_nifti(&out)
}

/// What a NIfTI-1 header says about the bytes that follow it.
struct Header {
    le: bool,
    dims: [usize; 3],
    datatype: i16,
    width: usize,
    offset: usize,
    /// Where the first volume's voxels end.
    end: usize,
}

/// The 16-bit integer at `o`, in the header's byte order.
fn i16_at(b: &[u8], le: bool, o: usize) -> i16 {
    let a = [b[o], b[o + 1]];
    if le {
        i16::from_le_bytes(a)
    } else {
        i16::from_be_bytes(a)
    }
}

/// The 32-bit float at `o`, in the header's byte order.
fn f32_at(b: &[u8], le: bool, o: usize) -> f64 {
    let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
    f64::from(if le {
        f32::from_le_bytes(a)
    } else {
        f32::from_be_bytes(a)
    })
}

/// Reads and checks the fixed header (the first 352 bytes).
fn header(b: &[u8]) -> Result<Header, VolumeError> {
    if b.len() < 352 {
        return Err(VolumeError("shorter than a NIfTI-1 header"));
    }
    let le = match (
        i32::from_le_bytes(b[0..4].try_into().expect("4")),
        i32::from_be_bytes(b[0..4].try_into().expect("4")),
    ) {
        (348, _) => true,
        (_, 348) => false,
        _ => return Err(VolumeError("not a NIfTI-1 header")),
    };
    if &b[344..347] != b"n+1" && &b[344..347] != b"ni1" {
        return Err(VolumeError("not a NIfTI-1 header"));
    }
    let (i16_at, f32_at) = (|o| i16_at(b, le, o), |o| f32_at(b, le, o));
    let ndim = i16_at(40);
    if !(3..=7).contains(&ndim) {
        return Err(VolumeError("not a 3D volume"));
    }
    let dim = |n: usize| i16_at(40 + 2 * n);
    let dims = [dim(1), dim(2), dim(3)];
    if dims.iter().any(|&d| d < 1) {
        return Err(VolumeError("a dimension is not positive"));
    }
    let dims = dims.map(|d| d as usize);
    let n = dims[0]
        .checked_mul(dims[1])
        .and_then(|x| x.checked_mul(dims[2]))
        .filter(|&n| n <= MAX_SAMPLES)
        .ok_or(VolumeError("too large for a head volume"))?;
    let datatype = i16_at(70);
    let width = match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 => 8,
        _ => return Err(VolumeError("unsupported NIfTI datatype")),
    };
    let offset = f32_at(108);
    let offset = if offset >= 352.0 {
        offset as usize
    } else {
        352
    };
    let end = n
        .checked_mul(width)
        .filter(|&bytes| bytes <= MAX_VOXEL_BYTES)
        .and_then(|x| x.checked_add(offset))
        .ok_or(VolumeError("too large for a head volume"))?;
    Ok(Header {
        le,
        dims,
        datatype,
        width,
        offset,
        end,
    })
}

/// [`read_nifti`] on the bytes of an uncompressed `.nii`.
pub fn parse_nifti(b: &[u8]) -> Result<Volume, VolumeError> {
    let h = header(b)?;
    let (le, dims, datatype, width, offset, end) =
        (h.le, h.dims, h.datatype, h.width, h.offset, h.end);
    if end > b.len() {
        return Err(VolumeError("truncated voxel data"));
    }
    let (i16_at, f32_at) = (|o| i16_at(b, le, o), |o| f32_at(b, le, o));
    let (slope, inter) = (f32_at(112), f32_at(116));
    let (slope, inter) = if slope.is_finite() && slope != 0.0 && inter.is_finite() {
        (slope, inter)
    } else {
        (1.0, 0.0)
    };
    let data: Vec<f32> = b[offset..end]
        .chunks_exact(width)
        .map(|c| {
            let v = sample(c, datatype, le);
            (v * slope + inter) as f32
        })
        .collect();

    let pixdim: [f64; 4] = std::array::from_fn(|i| f32_at(76 + 4 * i));
    let (qform, sform) = (i16_at(252), i16_at(254));
    let mut affine = [[0.0; 4]; 4];
    affine[3][3] = 1.0;
    if sform > 0 {
        for (r, row) in affine.iter_mut().take(3).enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                *x = f32_at(280 + 16 * r + 4 * c);
            }
        }
    } else if qform > 0 {
        // quaternion (b, c, d) with a = sqrt(1 - b² - c² - d²), qfac in
        // pixdim[0] (NIfTI-1 standard, method 2)
        let (qb, qc, qd) = (f32_at(256), f32_at(260), f32_at(264));
        let qa = (1.0 - (qb * qb + qc * qc + qd * qd)).max(0.0).sqrt();
        let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let r = [
            [
                qa * qa + qb * qb - qc * qc - qd * qd,
                2.0 * (qb * qc - qa * qd),
                2.0 * (qb * qd + qa * qc),
            ],
            [
                2.0 * (qb * qc + qa * qd),
                qa * qa + qc * qc - qb * qb - qd * qd,
                2.0 * (qc * qd - qa * qb),
            ],
            [
                2.0 * (qb * qd - qa * qc),
                2.0 * (qc * qd + qa * qb),
                qa * qa + qd * qd - qc * qc - qb * qb,
            ],
        ];
        let s = [pixdim[1], pixdim[2], pixdim[3] * qfac];
        for (row, (rr, t)) in affine.iter_mut().zip(r.iter().zip([268, 272, 276])) {
            for c in 0..3 {
                row[c] = rr[c] * s[c];
            }
            row[3] = f32_at(t);
        }
    } else {
        for (c, row) in affine.iter_mut().take(3).enumerate() {
            row[c] = if pixdim[c + 1] > 0.0 {
                pixdim[c + 1]
            } else {
                1.0
            };
        }
    }
    if affine.iter().flatten().any(|x| !x.is_finite()) {
        return Err(VolumeError("the affine is not finite"));
    }
    Ok(Volume { dims, data, affine })
}

fn sample(c: &[u8], datatype: i16, le: bool) -> f64 {
    macro_rules! num {
        ($t:ty) => {{
            let a = c.try_into().expect("width");
            f64::from(if le {
                <$t>::from_le_bytes(a)
            } else {
                <$t>::from_be_bytes(a)
            })
        }};
    }
    let v = match datatype {
        2 => f64::from(c[0]),
        256 => f64::from(c[0] as i8),
        4 => num!(i16),
        512 => num!(u16),
        8 => num!(i32),
        768 => num!(u32),
        16 => num!(f32),
        _ => {
            let a: [u8; 8] = c.try_into().expect("width");
            if le {
                f64::from_le_bytes(a)
            } else {
                f64::from_be_bytes(a)
            }
        }
    };
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// A DICOM instance's decimal strings.
fn numbers(ds: &veil_io::DataSet, tag: Tag) -> Option<Vec<f64>> {
    let s = ds.ascii(tag)?;
    s.split('\\')
        .map(|p| p.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect()
}

/// The numbers of `attr` for frame `frame` of a multi-frame (enhanced)
/// object: in the frame's Per-Frame Functional Groups item (5200,9230),
/// else in the Shared Functional Groups item (5200,9229), inside the
/// macro sequence `group`; else at the top level, where a single-frame
/// instance keeps them.
fn frame_numbers(ds: &veil_io::DataSet, frame: usize, group: u16, attr: Tag) -> Option<Vec<f64>> {
    let item = |seq: Tag, n: usize| match &ds.get(seq)?.value {
        veil_io::Value::Sequence(v) => v.get(n),
        _ => None,
    };
    let inside = |fg: Option<&veil_io::DataSet>| {
        let fg = fg?;
        let g = Tag(attr.0, group);
        match &fg.get(g)?.value {
            veil_io::Value::Sequence(v) => numbers(v.first()?, attr),
            _ => None,
        }
    };
    inside(item(Tag(0x5200, 0x9230), frame))
        .or_else(|| inside(item(Tag(0x5200, 0x9229), 0)))
        .or_else(|| numbers(ds, attr))
}

/// Assembles the images of one CT/MR series into a volume (single-frame
/// instances, or the frames of an enhanced multi-frame object, their
/// geometry in the functional groups): slices sorted by their position
/// along the normal of the image plane, the slice step from the first
/// and last positions, the in-plane steps from Pixel Spacing. Samples are
/// the decoded stored values through each image's Rescale Slope and
/// Intercept. A series whose images differ in size or orientation, or
/// that are not evenly stacked, is not one volume.
pub fn read_series(files: &[PathBuf]) -> Result<Volume, VolumeError> {
    struct Slice {
        pos: [f64; 3],
        values: Vec<f32>,
    }
    let mut frame: Option<(usize, usize, Vec<f64>, Vec<f64>)> = None;
    let mut slices = Vec::with_capacity(files.len());
    for p in files {
        let f = veil_io::read(p).map_err(|_| VolumeError("an instance cannot be read"))?;
        let ds = &f.dataset;
        let mut r = veil_pixels::FrameReader::new(&f)
            .map_err(|_| VolumeError("pixel data cannot be decoded"))?;
        let (cols, rows) = r.size();
        let (cols, rows) = (cols as usize, rows as usize);
        for n in 0..r.frame_count() {
            let at = |group: u16, attr: Tag| frame_numbers(ds, n as usize, group, attr);
            // the macros: Plane Orientation (0020,9116), Plane Position
            // (0020,9113), Pixel Measures (0028,9110), Pixel Value
            // Transformation (0028,9145)
            let iop = at(0x9116, Tag(0x0020, 0x0037))
                .filter(|v| v.len() == 6)
                .ok_or(VolumeError("Image Orientation (Patient) missing"))?;
            let ipp = at(0x9113, Tag(0x0020, 0x0032))
                .filter(|v| v.len() == 3)
                .ok_or(VolumeError("Image Position (Patient) missing"))?;
            let ps = at(0x9110, Tag(0x0028, 0x0030))
                .filter(|v| v.len() == 2 && v[0] > 0.0 && v[1] > 0.0)
                .ok_or(VolumeError("Pixel Spacing missing"))?;
            let slope = at(0x9145, Tag(0x0028, 0x1053))
                .and_then(|v| v.first().copied())
                .filter(|s| *s != 0.0)
                .unwrap_or(1.0);
            let intercept = at(0x9145, Tag(0x0028, 0x1052))
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0);
            let values = r
                .frame(n)
                .ok()
                .and_then(|fr| fr.values)
                .filter(|v| v.len() == rows * cols)
                .ok_or(VolumeError("pixel data cannot be decoded as grayscale"))?;
            match &frame {
                None => frame = Some((rows, cols, iop, ps)),
                Some((r0, c0, o0, s0)) => {
                    let same =
                        |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
                    if *r0 != rows || *c0 != cols || !same(o0, &iop) || !same(s0, &ps) {
                        return Err(VolumeError("images of different size or orientation"));
                    }
                }
            }
            slices.push(Slice {
                pos: [ipp[0], ipp[1], ipp[2]],
                values: values
                    .iter()
                    .map(|&v| (f64::from(v) * slope + intercept) as f32)
                    .collect(),
            });
            if slices.len().saturating_mul(rows * cols) > MAX_SAMPLES {
                return Err(VolumeError("too large for a head volume"));
            }
        }
    }
    let (rows, cols, o, ps) = frame.ok_or(VolumeError("no images"))?;
    let n = slices.len();
    if n < 2 {
        return Err(VolumeError("fewer than two images"));
    }
    let (row, col) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let mut normal = [
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    ];
    let len = normal.iter().map(|x| x * x).sum::<f64>().sqrt();
    if len < 0.9 {
        return Err(VolumeError("image orientation is degenerate"));
    }
    normal = normal.map(|x| x / len);
    let along = |p: [f64; 3]| p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
    slices.sort_by(|a, b| along(a.pos).total_cmp(&along(b.pos)));
    let (first, last) = (slices[0].pos, slices[n - 1].pos);
    let step = (along(last) - along(first)) / (n - 1) as f64;
    if step < 1e-3 {
        return Err(VolumeError("images at the same position"));
    }
    if slices
        .windows(2)
        .any(|w| ((along(w[1].pos) - along(w[0].pos)) - step).abs() > 0.1 * step)
    {
        return Err(VolumeError("images not evenly stacked"));
    }
    if n.checked_mul(rows * cols).is_none_or(|t| t > MAX_SAMPLES) {
        return Err(VolumeError("too large for a head volume"));
    }
    // LPS to RAS: negate x and y. Column index i moves along the row
    // direction by the column spacing (Pixel Spacing's second value), row
    // index j along the column direction by the row spacing (its first).
    let kdir: [f64; 3] = std::array::from_fn(|c| (last[c] - first[c]) / (n - 1) as f64);
    let mut affine = [[0.0; 4]; 4];
    affine[3][3] = 1.0;
    for (r, a) in affine.iter_mut().take(3).enumerate() {
        let flip = if r < 2 { -1.0 } else { 1.0 };
        a[0] = flip * row[r] * ps[1];
        a[1] = flip * col[r] * ps[0];
        a[2] = flip * kdir[r];
        a[3] = flip * first[r];
    }
    let mut data = Vec::with_capacity(n * rows * cols);
    for s in slices {
        data.extend(s.values);
    }
    Ok(Volume {
        dims: [cols, rows, n],
        data,
        affine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x3x2 int16 NIfTI-1 header and data, little or big endian, with
    /// the given qform/sform codes and quaternion (b, c, d).
    fn nifti(le: bool, qform: i16, sform: i16, quat: [f32; 3], qfac: f32) -> Vec<u8> {
        let mut b = vec![0u8; 352];
        let put_i16 = |b: &mut Vec<u8>, o: usize, v: i16| {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b[o..o + 2].copy_from_slice(&x);
        };
        let put_f32 = |b: &mut Vec<u8>, o: usize, v: f32| {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b[o..o + 4].copy_from_slice(&x);
        };
        let x = if le {
            348i32.to_le_bytes()
        } else {
            348i32.to_be_bytes()
        };
        b[0..4].copy_from_slice(&x);
        for (n, d) in [3i16, 4, 3, 2, 1].iter().enumerate() {
            put_i16(&mut b, 40 + 2 * n, *d);
        }
        put_i16(&mut b, 70, 4);
        put_i16(&mut b, 72, 16);
        for (n, p) in [qfac, 2.0, 3.0, 4.0].iter().enumerate() {
            put_f32(&mut b, 76 + 4 * n, *p);
        }
        put_f32(&mut b, 108, 352.0);
        put_f32(&mut b, 112, 2.0);
        put_f32(&mut b, 116, 10.0);
        put_i16(&mut b, 252, qform);
        put_i16(&mut b, 254, sform);
        for (n, q) in quat.iter().enumerate() {
            put_f32(&mut b, 256 + 4 * n, *q);
        }
        for (n, t) in [-5.0f32, 6.0, 7.0].iter().enumerate() {
            put_f32(&mut b, 268 + 4 * n, *t);
        }
        // sform: the 90° turn about z the quaternion below also encodes
        let srow = [
            [0.0f32, -3.0, 0.0, -5.0],
            [2.0, 0.0, 0.0, 6.0],
            [0.0, 0.0, 4.0, 7.0],
        ];
        for (r, row) in srow.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                put_f32(&mut b, 280 + 16 * r + 4 * c, *v);
            }
        }
        b[344..348].copy_from_slice(b"n+1\0");
        for v in 0..24i16 {
            let x = if le { v.to_le_bytes() } else { v.to_be_bytes() };
            b.extend_from_slice(&x);
        }
        b
    }

    #[test]
    fn nifti_affine_from_sform_qform_or_voxel_sizes_in_either_byte_order() {
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let turned = [
            [0.0, -3.0, 0.0, -5.0],
            [2.0, 0.0, 0.0, 6.0],
            [0.0, 0.0, 4.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        for le in [true, false] {
            let v = parse_nifti(&nifti(le, 0, 1, [0.0, 0.0, s], 1.0)).unwrap();
            assert_eq!(v.dims, [4, 3, 2]);
            assert_eq!(v.affine, turned);
            // scl_slope 2, scl_inter 10
            assert_eq!(v.data[..3], [10.0, 12.0, 14.0]);
            let q = parse_nifti(&nifti(le, 1, 0, [0.0, 0.0, s], 1.0)).unwrap();
            for (a, b) in q.affine.iter().flatten().zip(turned.iter().flatten()) {
                assert!((a - b).abs() < 1e-5, "{:?}", q.affine);
            }
            // qfac -1 flips k
            let f = parse_nifti(&nifti(le, 1, 0, [0.0, 0.0, 0.0], -1.0)).unwrap();
            assert_eq!(f.affine[2][2], -4.0);
            let plain = parse_nifti(&nifti(le, 0, 0, [0.0; 3], 1.0)).unwrap();
            assert_eq!(
                [plain.affine[0][0], plain.affine[1][1], plain.affine[2][2]],
                [2.0, 3.0, 4.0]
            );
        }
        let mut short = nifti(true, 0, 1, [0.0; 3], 1.0);
        short.truncate(360);
        assert!(parse_nifti(&short).is_err(), "truncated data");
        assert!(parse_nifti(b"not a nifti").is_err());
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn gzip_is_inflated_no_further_than_the_header_says() {
        let plain = nifti(true, 0, 1, [0.0, 0.0, 0.0], 1.0);
        let v = nifti_from_bytes(&gzip(&plain)).unwrap();
        assert_eq!(v.data, parse_nifti(&plain).unwrap().data);
        // 256 MiB of zeros after 24 voxels: inflated up to the voxels' end
        // only (the stream is never read that far)
        let mut bomb = plain.clone();
        bomb.resize(plain.len() + (256 << 20), 0);
        let v = nifti_from_bytes(&gzip(&bomb)).unwrap();
        assert_eq!(v.data.len(), 24);
        // a header asking for more than a head volume can hold
        let mut huge = plain.clone();
        for (n, d) in [3i16, 2048, 2048, 128].iter().enumerate() {
            huge[40 + 2 * n..42 + 2 * n].copy_from_slice(&d.to_le_bytes());
        }
        huge[70..72].copy_from_slice(&64i16.to_le_bytes());
        let e = nifti_from_bytes(&gzip(&huge)).unwrap_err();
        assert_eq!(e.to_string(), "too large for a head volume");
        // truncated and damaged streams are errors, not panics
        let gz = gzip(&plain);
        assert!(nifti_from_bytes(&gz[..gz.len() / 2]).is_err());
        assert!(nifti_from_bytes(&gz[..20]).is_err());
    }

    #[test]
    fn turning_and_inverting_the_affine() {
        let v = parse_nifti(&nifti(true, 0, 1, [0.0; 3], 1.0)).unwrap();
        let inv = v.inverse().unwrap();
        let w = v.to_world([1.0, 2.0, 1.0]);
        let back: [f64; 3] = std::array::from_fn(|r| {
            inv[r][0] * w[0] + inv[r][1] * w[1] + inv[r][2] * w[2] + inv[r][3]
        });
        for (a, b) in back.iter().zip([1.0, 2.0, 1.0]) {
            assert!((a - b).abs() < 1e-9);
        }
        // a quarter turn of yaw: (x, y) goes to (-y, x), a point in front
        // of the patient (+y) to their left (-x in RAS)
        let t = v.rotated(90.0, 0.0);
        let (a, b) = (v.to_world([1.0, 0.0, 0.0]), t.to_world([1.0, 0.0, 0.0]));
        assert!((b[0] + a[1]).abs() < 1e-9 && (b[1] - a[0]).abs() < 1e-9);
    }
}
