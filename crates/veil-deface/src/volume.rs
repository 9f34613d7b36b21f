//! A head volume in patient space, read from and written back to NIfTI-1
//! files; DICOM series are in [`crate::series`].

use std::io::{Read, Write};
use std::path::Path;

/// Voxels on a regular grid plus where the grid lies in the patient.
///
/// `data[i + dims[0] * (j + dims[1] * k)]` is voxel (i, j, k); values are
/// physical (NIfTI scl_slope/inter or DICOM RescaleSlope/Intercept
/// applied): Hounsfield units for CT.
#[derive(Clone)]
pub struct Volume {
    /// Grid size (i fastest).
    pub dims: [usize; 3],
    /// The voxels.
    pub data: Vec<f32>,
    /// Voxel (i, j, k, 1) to RAS+ millimetres: +x towards the patient's
    /// Right, +y Anterior, +z Superior (the NIfTI convention; DICOM LPS is
    /// converted on reading).
    pub affine: [[f64; 4]; 4],
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("dims", &self.dims)
            .field("affine", &self.affine)
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// Linear index of voxel (i, j, k).
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// RAS+ mm of voxel (i, j, k) (may be fractional).
    pub fn to_world(&self, v: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        let mut w = [0.0; 3];
        for (r, o) in w.iter_mut().enumerate() {
            *o = a[r][0] * v[0] + a[r][1] * v[1] + a[r][2] * v[2] + a[r][3];
        }
        w
    }

    /// Voxel size along each grid axis, mm.
    pub fn spacing(&self) -> [f64; 3] {
        let a = &self.affine;
        let mut s = [0.0; 3];
        for (c, o) in s.iter_mut().enumerate() {
            *o = (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt();
        }
        s
    }
}

/// Why a volume could not be read or written. Reasons name kinds and tags,
/// never values or paths (both may be PHI).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// I/O failure (kind only).
    #[error("I/O error: {0:?}")]
    Io(std::io::ErrorKind),
    /// Not a NIfTI file Veil reads, or a malformed one.
    #[error("NIfTI: {0}")]
    Nifti(String),
    /// The DICOM objects do not form one regular volume (gantry tilt,
    /// inconsistent spacing, orientation or size, missing attributes).
    #[error("DICOM series: {0}")]
    Series(String),
}

impl From<std::io::Error> for VolumeError {
    fn from(e: std::io::Error) -> Self {
        VolumeError::Io(e.kind())
    }
}

impl Volume {
    /// Reads a NIfTI-1 file (.nii or .nii.gz; gzip is detected from the
    /// bytes, not the name).
    pub fn read_nifti(path: &Path) -> Result<Volume, VolumeError> {
        Ok(read_nifti(path)?.0)
    }

    /// Reads the DICOM series in a folder (all files in it, recursively,
    /// must be one series) as a volume.
    pub fn read_dicom_series(dir: &Path) -> Result<Volume, VolumeError> {
        let files = veil_io::walk(&[dir.to_path_buf()])?;
        Ok(crate::series::read_series(&files)?.0)
    }
}

/// What a NIfTI file held besides the voxels, kept so that the output has
/// the input's header, extensions, data type and affine byte for byte
/// (only the voxel values change).
#[derive(Debug, Clone)]
pub struct NiftiHeader {
    /// The 348-byte header as read.
    raw: Vec<u8>,
    /// Bytes between the header and the voxels (extensions), as read.
    extra: Vec<u8>,
    big_endian: bool,
    datatype: i16,
    slope: f32,
    inter: f32,
    /// The input was gzipped.
    pub gzipped: bool,
}

struct Endian(bool);
impl Endian {
    fn i16(&self, b: &[u8], at: usize) -> i16 {
        let a = [b[at], b[at + 1]];
        if self.0 {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    }
    fn f32(&self, b: &[u8], at: usize) -> f32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.0 {
            f32::from_be_bytes(a)
        } else {
            f32::from_le_bytes(a)
        }
    }
}

/// Bytes per voxel of the NIfTI data types Veil reads (scalar ones).
fn nifti_width(datatype: i16) -> Option<usize> {
    Some(match datatype {
        2 | 256 => 1,
        4 | 512 => 2,
        8 | 16 | 768 => 4,
        64 => 8,
        _ => return None,
    })
}

/// Size of a NIfTI-1 header plus the 4-byte extension flag: the first
/// byte voxels may start at in a single-file (`n+1`) NIfTI.
const NIFTI_MIN_OFFSET: usize = 352;

/// Where a NIfTI-1 file's voxels are and what they are, from a header
/// that [`NiftiLayout::parse`] has checked.
struct NiftiLayout {
    endian: Endian,
    dims: [usize; 3],
    datatype: i16,
    width: usize,
    vox_offset: usize,
    /// `vox_offset` plus the voxel bytes: what the file must hold.
    end: usize,
}

impl NiftiLayout {
    /// Checks the header (the first 352 bytes) before any voxel is read.
    /// Why this strict: `vox_offset` is a float in the file, and 1e20
    /// panicked while 3.0, NaN or -inf read voxels out of the header, so
    /// it must be finite, whole, at least 352; the dimensions and data
    /// type give the voxel bytes with checked arithmetic, which the caller
    /// then finds present ([`NiftiLayout::end`]).
    fn parse(h: &[u8]) -> Result<NiftiLayout, VolumeError> {
        let bad = |w: &str| Err(VolumeError::Nifti(w.into()));
        if h.len() < NIFTI_MIN_OFFSET {
            return bad("shorter than a NIfTI-1 header");
        }
        let endian = Endian(match i32::from_le_bytes([h[0], h[1], h[2], h[3]]) {
            348 => false,
            0x5c01_0000 => true,
            540 => return bad("NIfTI-2 is not supported"),
            _ => return bad("not a NIfTI-1 header"),
        });
        if &h[344..347] != b"n+1" && &h[344..347] != b"ni1" {
            return bad("bad magic");
        }
        if &h[344..347] == b"ni1" {
            return bad("two-file NIfTI (.hdr/.img) is not supported");
        }
        let ndim = endian.i16(h, 40);
        if !(1..=7).contains(&ndim) {
            return bad("dimension count outside 1..7");
        }
        let mut dims = [1usize; 3];
        for (a, d) in dims.iter_mut().enumerate() {
            let v = endian.i16(h, 42 + 2 * a);
            if (a as i16) < ndim {
                if v < 1 {
                    return bad("non-positive dimension");
                }
                *d = v as usize;
            }
        }
        for a in 3..7 {
            if (a as i16) < ndim && endian.i16(h, 42 + 2 * a) > 1 {
                return bad("more than three dimensions (time series) is not supported");
            }
        }
        let datatype = endian.i16(h, 70);
        let width = nifti_width(datatype)
            .ok_or_else(|| VolumeError::Nifti(format!("data type {datatype} is not supported")))?;
        let off = endian.f32(h, 108);
        if !off.is_finite() || off.fract() != 0.0 {
            return bad("vox_offset is not a whole number");
        }
        if off < NIFTI_MIN_OFFSET as f32 || off > u32::MAX as f32 {
            return bad("vox_offset outside the file");
        }
        let vox_offset = off as usize;
        let end = dims
            .iter()
            .try_fold(width, |acc, d| acc.checked_mul(*d))
            .and_then(|n| n.checked_add(vox_offset))
            .ok_or_else(|| VolumeError::Nifti("voxel data size overflows".into()))?;
        Ok(NiftiLayout {
            endian,
            dims,
            datatype,
            width,
            vox_offset,
            end,
        })
    }
}

/// The bytes of a gzip NIfTI, inflated no further than its header says
/// the voxels end (trailing bytes are not needed), and refused when that
/// is more than [`veil_core::limits::inflate_cap`] of the compressed size:
/// a small file cannot make Veil allocate gigabytes.
fn gunzip_nifti(raw: &[u8]) -> Result<Vec<u8>, VolumeError> {
    let corrupt = || VolumeError::Nifti("corrupt gzip stream".into());
    let mut z = flate2::read::MultiGzDecoder::new(raw);
    let mut bytes = Vec::new();
    (&mut z)
        .take(NIFTI_MIN_OFFSET as u64)
        .read_to_end(&mut bytes)
        .map_err(|_| corrupt())?;
    let layout = NiftiLayout::parse(&bytes)?;
    let cap = veil_core::limits::inflate_cap(raw.len() as u64);
    if layout.end as u64 > cap {
        return Err(VolumeError::Nifti(format!(
            "voxel data inflates past the {} limit of {cap} bytes",
            veil_core::Limit::InflatedSize.name()
        )));
    }
    z.take((layout.end - bytes.len()) as u64)
        .read_to_end(&mut bytes)
        .map_err(|_| corrupt())?;
    Ok(bytes)
}

/// Reads a NIfTI-1 file: the volume and what is needed to write it back.
pub fn read_nifti(path: &Path) -> Result<(Volume, NiftiHeader), VolumeError> {
    nifti_from_bytes(std::fs::read(path)?)
}

/// A NIfTI-1 file's bytes (.nii, or .nii.gz: gzip is detected from the
/// bytes): the volume and what is needed to write it back.
pub fn nifti_from_bytes(raw: Vec<u8>) -> Result<(Volume, NiftiHeader), VolumeError> {
    let gzipped = raw.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzipped { gunzip_nifti(&raw)? } else { raw };
    parse_nifti(&bytes, gzipped)
}

/// An inflated NIfTI-1 file: the volume and its header. Validates the
/// header ([`NiftiLayout::parse`]) and that the voxels are present before
/// reading any.
fn parse_nifti(bytes: &[u8], gzipped: bool) -> Result<(Volume, NiftiHeader), VolumeError> {
    let NiftiLayout {
        endian: e,
        dims,
        datatype,
        width,
        vox_offset,
        end,
    } = NiftiLayout::parse(bytes)?;
    if bytes.len() < end {
        return Err(VolumeError::Nifti("truncated voxel data".into()));
    }
    let mut slope = e.f32(bytes, 112);
    let inter = e.f32(bytes, 116);
    if slope == 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let inter_eff = if inter.is_finite() { inter } else { 0.0 };
    let vox = &bytes[vox_offset..end];
    let be = e.0;
    let data: Vec<f32> = vox
        .chunks_exact(width)
        .map(|c| {
            let v = decode_sample(datatype, c, be);
            (v * slope as f64 + inter_eff as f64) as f32
        })
        .collect();
    let affine = nifti_affine(bytes, &e);
    let header = NiftiHeader {
        raw: bytes[..348].to_vec(),
        extra: bytes[348..vox_offset].to_vec(),
        big_endian: be,
        datatype,
        slope,
        inter: inter_eff,
        gzipped,
    };
    Ok((Volume { dims, data, affine }, header))
}

fn decode_sample(datatype: i16, c: &[u8], be: bool) -> f64 {
    macro_rules! num {
        ($t:ty) => {{
            let a = c.try_into().expect("width checked");
            (if be {
                <$t>::from_be_bytes(a)
            } else {
                <$t>::from_le_bytes(a)
            }) as f64
        }};
    }
    match datatype {
        2 => c[0] as f64,
        256 => c[0] as i8 as f64,
        4 => num!(i16),
        512 => num!(u16),
        8 => num!(i32),
        768 => num!(u32),
        16 => num!(f32),
        _ => num!(f64),
    }
}

/// The voxel-to-RAS+ affine: sform if set, else qform, else the
/// spacing alone (NIfTI-1 methods 3, 2, 1).
fn nifti_affine(b: &[u8], e: &Endian) -> [[f64; 4]; 4] {
    let mut a = [[0.0; 4]; 4];
    a[3][3] = 1.0;
    let pix: Vec<f64> = (0..8).map(|i| e.f32(b, 76 + 4 * i) as f64).collect();
    let qform = e.i16(b, 252);
    let sform = e.i16(b, 254);
    if sform > 0 {
        for (r, row) in a.iter_mut().take(3).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = e.f32(b, 280 + 16 * r + 4 * c) as f64;
            }
        }
    } else if qform > 0 {
        let (qb, qc, qd) = (
            e.f32(b, 256) as f64,
            e.f32(b, 260) as f64,
            e.f32(b, 264) as f64,
        );
        let qa = (1.0 - (qb * qb + qc * qc + qd * qd)).max(0.0).sqrt();
        let qfac = if pix[0] < 0.0 { -1.0 } else { 1.0 };
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
        let s = [pix[1], pix[2], pix[3] * qfac];
        for rr in 0..3 {
            for c in 0..3 {
                a[rr][c] = r[rr][c] * s[c];
            }
            a[rr][3] = e.f32(b, 268 + 4 * rr) as f64;
        }
    } else {
        for i in 0..3 {
            a[i][i] = if pix[i + 1] > 0.0 { pix[i + 1] } else { 1.0 };
        }
    }
    a
}

/// Writes a volume with the header, extensions, data type and scaling of
/// the file it was read from. Values are converted back to the stored type
/// (inverse scaling, rounded, clamped to the type's range). Gzipped when
/// `path` ends in `.gz`, at the fastest level (writing dominated the
/// command's time at the default level; the files are about 15% larger).
pub fn write_nifti(path: &Path, vol: &Volume, header: &NiftiHeader) -> Result<(), VolumeError> {
    let width = nifti_width(header.datatype).expect("checked on reading");
    let n = vol.data.len();
    let mut bytes = Vec::with_capacity(348 + header.extra.len() + 4 + n * width);
    bytes.extend_from_slice(&header.raw);
    let vox_offset = 348 + header.extra.len().max(4);
    bytes.extend_from_slice(&header.extra);
    bytes.resize(vox_offset, 0);
    // vox_offset stays what it was (extra holds exactly the bytes up to it).
    let be = header.big_endian;
    for &v in &vol.data {
        let s = (v as f64 - header.inter as f64) / header.slope as f64;
        macro_rules! int {
            ($t:ty) => {{
                let x = s.round().clamp(<$t>::MIN as f64, <$t>::MAX as f64) as $t;
                if be {
                    bytes.extend_from_slice(&x.to_be_bytes())
                } else {
                    bytes.extend_from_slice(&x.to_le_bytes())
                }
            }};
        }
        match header.datatype {
            2 => int!(u8),
            256 => int!(i8),
            4 => int!(i16),
            512 => int!(u16),
            8 => int!(i32),
            768 => int!(u32),
            16 => {
                let x = s as f32;
                bytes.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
            }
            _ => bytes.extend_from_slice(&if be { s.to_be_bytes() } else { s.to_le_bytes() }),
        }
    }
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let out = if gz {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&bytes)?;
        z.finish()?
    } else {
        bytes
    };
    veil_io::atomic::write_all(path, &out)?;
    Ok(())
}

impl NiftiHeader {
    /// A NIfTI-1 header for a volume that came from elsewhere (a DICOM
    /// series): float32 voxels, no scaling, sform and qform method codes
    /// "scanner" with the volume's affine in the sform.
    pub fn for_volume(vol: &Volume) -> NiftiHeader {
        let mut h = vec![0u8; 348];
        h[0..4].copy_from_slice(&348i32.to_le_bytes());
        let put16 =
            |h: &mut Vec<u8>, at: usize, v: i16| h[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |h: &mut Vec<u8>, at: usize, v: f32| h[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut h, 40, 3);
        for a in 0..3 {
            put16(&mut h, 42 + 2 * a, vol.dims[a] as i16);
        }
        for a in 3..7 {
            put16(&mut h, 42 + 2 * a, 1);
        }
        put16(&mut h, 70, 16);
        put16(&mut h, 72, 32);
        let sp = vol.spacing();
        put32(&mut h, 76, 1.0);
        for (a, s) in sp.iter().enumerate() {
            put32(&mut h, 80 + 4 * a, *s as f32);
        }
        put32(&mut h, 108, 352.0);
        put32(&mut h, 112, 1.0);
        h[123] = 10; // xyzt_units: mm, s
        put16(&mut h, 254, 1);
        for r in 0..3 {
            for c in 0..4 {
                put32(&mut h, 280 + 16 * r + 4 * c, vol.affine[r][c] as f32);
            }
        }
        h[344..348].copy_from_slice(b"n+1\0");
        NiftiHeader {
            raw: h,
            extra: vec![0; 4],
            big_endian: false,
            datatype: 16,
            slope: 1.0,
            inter: 0.0,
            gzipped: true,
        }
    }

    /// This header for a 0/1 mask on the same grid: uint8, no scaling,
    /// same affine and extensions.
    pub fn for_mask(&self) -> NiftiHeader {
        let mut h = self.clone();
        let e = Endian(self.big_endian);
        let put16 = |h: &mut Vec<u8>, at: usize, v: i16| {
            h[at..at + 2].copy_from_slice(&if e.0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let put32 = |h: &mut Vec<u8>, at: usize, v: f32| {
            h[at..at + 4].copy_from_slice(&if e.0 {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        put16(&mut h.raw, 70, 2);
        put16(&mut h.raw, 72, 8);
        put32(&mut h.raw, 112, 1.0);
        put32(&mut h.raw, 116, 0.0);
        put32(&mut h.raw, 124, 1.0); // cal_max
        put32(&mut h.raw, 128, 0.0); // cal_min
        h.datatype = 2;
        h.slope = 1.0;
        h.inter = 0.0;
        h
    }
}

/// Writes a mask (true = 1) on `vol`'s grid as a uint8 NIfTI with the
/// geometry of `header`.
pub fn write_nifti_mask(
    path: &Path,
    vol: &Volume,
    mask: &[bool],
    header: &NiftiHeader,
) -> Result<(), VolumeError> {
    let m = Volume {
        dims: vol.dims,
        data: mask.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
        affine: vol.affine,
    };
    write_nifti(path, &m, &header.for_mask())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("veil-nifti-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Reads `bytes` as a file named `name` (read_nifti, as `veil deface`).
    fn read_as(name: &str, bytes: &[u8]) -> Result<(Volume, NiftiHeader), VolumeError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = scratch().join(format!("{n}-{name}"));
        veil_io::atomic::write_all(&p, bytes).unwrap();
        let r = read_nifti(&p);
        let _ = std::fs::remove_file(&p);
        r
    }

    /// A 4 x 3 x 2 float volume written as a plain .nii, as bytes.
    fn small_nii() -> Vec<u8> {
        let mut affine = [[0.0; 4]; 4];
        for (i, row) in affine.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        let vol = Volume {
            dims: [4, 3, 2],
            data: (0..24).map(|v| v as f32).collect(),
            affine,
        };
        let p = scratch().join(format!("small-{:?}.nii", std::thread::current().id()));
        write_nifti(&p, &vol, &NiftiHeader::for_volume(&vol)).unwrap();
        let b = std::fs::read(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        b
    }

    fn with_f32(mut b: Vec<u8>, at: usize, v: f32) -> Vec<u8> {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    }

    fn with_i16(mut b: Vec<u8>, at: usize, v: i16) -> Vec<u8> {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        b
    }

    fn refused(b: &[u8]) -> String {
        match read_as("refused.nii", b) {
            Err(VolumeError::Nifti(w)) => w,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("an invalid header was read"),
        }
    }

    #[test]
    fn issue_22_vox_offset_is_validated_before_any_voxel_is_read() {
        let good = small_nii();
        let (v, _) = read_as("good.nii", &good).expect("the valid file reads");
        assert_eq!(v.data[23], 23.0);
        // on main: 1e20 panicked (range start usize::MAX), and 3.0, NaN and
        // -inf were clamped to 352, reading the extension bytes as voxels
        for off in [
            1e20,
            3.0,
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            351.0,
            352.5,
        ] {
            let w = refused(&with_f32(good.clone(), 108, off));
            assert!(w.contains("vox_offset"), "{off}: {w}");
        }
        // past the end of the file
        let w = refused(&with_f32(good.clone(), 108, 1e9));
        assert!(w.contains("truncated"), "{w}");
    }

    #[test]
    fn issue_22_dims_and_datatype_must_match_the_data() {
        let good = small_nii();
        // more voxels than the file holds
        assert!(refused(&with_i16(good.clone(), 42, 5)).contains("truncated"));
        // a wider data type than the file holds (float64 for float32)
        assert!(refused(&with_i16(good.clone(), 70, 64)).contains("truncated"));
        // a dimension count out of range, a negative dimension
        assert!(refused(&with_i16(good.clone(), 40, 0)).contains("dimension count"));
        assert!(refused(&with_i16(good.clone(), 40, 8)).contains("dimension count"));
        assert!(refused(&with_i16(good.clone(), 44, -3)).contains("non-positive"));
        // the largest dimensions with the widest type: no overflow, refused
        let mut huge = with_i16(good.clone(), 70, 64);
        for a in 0..3 {
            huge = with_i16(huge, 42 + 2 * a, i16::MAX);
        }
        assert!(refused(&huge).contains("truncated"));
    }

    #[test]
    fn issue_22_gzip_nifti_does_not_inflate_past_the_limit() {
        use std::io::Write;
        // uint8 1024 x 1024 x 300: 300 MiB of zeros in about 300 kB of
        // gzip, consistent with its header; on main it was inflated whole
        // (and expanded to 1.2 GB of floats)
        let mut h = with_i16(small_nii(), 70, 2);
        for (a, d) in [1024, 1024, 300].into_iter().enumerate() {
            h = with_i16(h, 42 + 2 * a, d);
        }
        h.truncate(352);
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&h).unwrap();
        let mb = vec![0u8; 1 << 20];
        for _ in 0..300 {
            z.write_all(&mb).unwrap();
        }
        let gz = z.finish().unwrap();
        assert!(gz.len() < 1 << 20);
        match read_as("bomb.nii.gz", &gz) {
            Err(VolumeError::Nifti(w)) => assert!(w.contains("inflated size"), "{w}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a gzip bomb was inflated"),
        }
        // the small file gzipped reads back
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&small_nii()).unwrap();
        let (v, h) = read_as("small.nii.gz", &z.finish().unwrap()).unwrap();
        assert!(h.gzipped && v.data[5] == 5.0);
    }
}
