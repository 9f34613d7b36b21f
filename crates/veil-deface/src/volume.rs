//! A head volume in patient space.

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
    /// Reads a NIfTI-1 file (.nii or .nii.gz).
    pub fn read_nifti(path: &std::path::Path) -> Result<Volume, VolumeError> {
        let _ = path;
        Err(VolumeError::Nifti("not implemented yet".into()))
    }

    /// Reads the DICOM series in a folder (one series) as a volume.
    pub fn read_dicom_series(dir: &std::path::Path) -> Result<Volume, VolumeError> {
        let _ = dir;
        Err(VolumeError::Series("not implemented yet".into()))
    }
}
