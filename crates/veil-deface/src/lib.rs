//! Clean Recognizable Visual Features (PS3.15 E.3.3 option): remove the
//! face from head CT and MR volumes, and check that no face is left.
//!
//! Data path: [`volume`] reads a NIfTI file or a DICOM series into a
//! [`Volume`] (voxels plus the voxel-to-patient affine), `deface` finds the
//! head and the face in patient space and fills the face with air,
//! `render`/`facecheck` render the skin surface and decide whether a face
//! is still there, and [`volume`] writes the result on the input's grid
//! in the input's format.

pub mod brain;
pub mod deface;
pub mod facecheck;
mod morph;
pub mod qc;
pub mod render;
pub mod series;
pub mod volume;

pub use deface::{deface, DefaceError, DefaceOptions, Defaced, Modality};
pub use volume::{Volume, VolumeError};
