//! Removing the face from a head volume, in patient space, without a template.

use crate::volume::Volume;

/// What kind of values the volume holds, which decides the thresholds and
/// the fill value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Magnetic resonance: arbitrary units, background near the minimum.
    Mr,
    /// Computed tomography: Hounsfield units, air about -1000.
    Ct,
}

/// How to deface.
#[derive(Debug, Clone)]
pub struct DefaceOptions {
    /// Also remove the ears (soft tissue lateral to the brain, around the
    /// level of the ear canals).
    pub remove_ears: bool,
    /// The modality; `None` detects it from the values (CT when values
    /// reach below -500 and bone above +300).
    pub modality: Option<Modality>,
}

impl Default for DefaceOptions {
    fn default() -> Self {
        DefaceOptions {
            remove_ears: false,
            modality: None,
        }
    }
}

/// The result of [`deface`].
#[derive(Debug, Clone)]
pub struct Defaced {
    /// The input with the face (and ears, if asked) replaced by background.
    pub volume: Volume,
    /// Voxels that were replaced (same grid, `Volume::index` order).
    pub removed: Vec<bool>,
    /// The brain mask Veil computed (same grid); no voxel in it is removed.
    pub brain: Vec<bool>,
    /// The modality used.
    pub modality: Modality,
    /// The value the removed voxels now hold (air for CT, background for MR).
    pub fill: f32,
    /// How sure the face was found, 0..1 (below the acceptance level the
    /// call fails instead).
    pub confidence: f64,
}

/// Why a volume could not be defaced. Reasons name what was not found, never
/// values or paths.
#[derive(Debug, thiserror::Error)]
pub enum DefaceError {
    /// No head could be found with confidence.
    #[error("no head found: {0}")]
    NoHead(String),
    /// The head was found but not the brain or the face.
    #[error("face not found with confidence: {0}")]
    NoFace(String),
    /// The volume cannot be processed (too small, degenerate affine...).
    #[error("unsupported volume: {0}")]
    Unsupported(String),
}

/// Removes the face from a head volume. See the module docs for the method.
pub fn deface(vol: &Volume, opts: &DefaceOptions) -> Result<Defaced, DefaceError> {
    let _ = (vol, opts);
    Err(DefaceError::Unsupported("not implemented yet".into()))
}
