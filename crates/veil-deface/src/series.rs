//! DICOM series as volumes.

use std::path::PathBuf;

use crate::volume::{Volume, VolumeError};

/// Reads a series (stub).
pub fn read_series(files: &[PathBuf]) -> Result<(Volume, ()), VolumeError> {
    let _ = files;
    Err(VolumeError::Series("not implemented yet".into()))
}
