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

/// Reads a NIfTI-1 file: the volume and what is needed to write it back.
pub fn read_nifti(path: &Path) -> Result<(Volume, NiftiHeader), VolumeError> {
    let raw = std::fs::read(path)?;
    let gzipped = raw.starts_with(&[0x1f, 0x8b]);
    let bytes = if gzipped {
        let mut out = Vec::with_capacity(raw.len() * 3);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|_| VolumeError::Nifti("corrupt gzip stream".into()))?;
        out
    } else {
        raw
    };
    if bytes.len() < 352 {
        return Err(VolumeError::Nifti("shorter than a NIfTI-1 header".into()));
    }
    let e = Endian(
        match i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) {
            348 => false,
            0x5c01_0000 => true,
            540 => return Err(VolumeError::Nifti("NIfTI-2 is not supported".into())),
            _ => return Err(VolumeError::Nifti("not a NIfTI-1 header".into())),
        },
    );
    if &bytes[344..347] != b"n+1" && &bytes[344..347] != b"ni1" {
        return Err(VolumeError::Nifti("bad magic".into()));
    }
    if &bytes[344..347] == b"ni1" {
        return Err(VolumeError::Nifti(
            "two-file NIfTI (.hdr/.img) is not supported".into(),
        ));
    }
    let ndim = e.i16(&bytes, 40);
    let mut dims = [1usize; 3];
    for (a, d) in dims.iter_mut().enumerate() {
        let v = e.i16(&bytes, 42 + 2 * a);
        if (a as i16) < ndim {
            if v < 1 {
                return Err(VolumeError::Nifti("non-positive dimension".into()));
            }
            *d = v as usize;
        }
    }
    for a in 3..7 {
        if (a as i16) < ndim && e.i16(&bytes, 42 + 2 * a) > 1 {
            return Err(VolumeError::Nifti(
                "more than three dimensions (time series) is not supported".into(),
            ));
        }
    }
    let datatype = e.i16(&bytes, 70);
    let width = nifti_width(datatype)
        .ok_or_else(|| VolumeError::Nifti(format!("data type {datatype} is not supported")))?;
    let vox_offset = e.f32(&bytes, 108).max(352.0) as usize;
    let n = dims[0] * dims[1] * dims[2];
    if bytes.len() < vox_offset + n * width {
        return Err(VolumeError::Nifti("truncated voxel data".into()));
    }
    let mut slope = e.f32(&bytes, 112);
    let inter = e.f32(&bytes, 116);
    if slope == 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let inter_eff = if inter.is_finite() { inter } else { 0.0 };
    let vox = &bytes[vox_offset..vox_offset + n * width];
    let be = e.0;
    let data: Vec<f32> = vox
        .chunks_exact(width)
        .map(|c| {
            let v = decode_sample(datatype, c, be);
            (v * slope as f64 + inter_eff as f64) as f32
        })
        .collect();
    let affine = nifti_affine(&bytes, &e);
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
