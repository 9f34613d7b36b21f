//! The pixel stage of a build without OCR (feature `ocr` off): the
//! header-only `veil`. Clean Pixel Data and Clean Graphics need OCR, so a
//! policy that asks for either is refused before the batch starts
//! ([`crate::pixel_options_supported`]); no stage is ever made (the stage
//! type has no values): the batch's code that would use one is the same
//! in both builds and compiles here without any OCR library.

use std::path::Path;

use veil_deid::{Deidentified, Policy};
use veil_io::{DicomFile, TsInfo};

/// What the pixel stage did to one object: no object has one in this
/// build (the type exists so that [`crate::FileResult`] is the same in
/// both).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PixelReport {}

/// The stage: never made in this build (no value of this type exists, so
/// its methods cannot be called).
pub(crate) enum PixelStage {}

/// What the stage decided for one object (never made in this build).
pub(crate) struct Applied {
    pub ts: Option<TsInfo>,
    pub review: Option<String>,
    pub report: PixelReport,
}

impl PixelStage {
    /// No stage: pixel options were refused before the batch started.
    pub(crate) fn new(_: &Policy) -> Option<PixelStage> {
        None
    }

    pub(crate) fn apply(&self, _: &DicomFile, _: &mut Deidentified, _: &Policy) -> Applied {
        match *self {}
    }

    pub(crate) fn record(&self, _: &Path, _: &str, _: bool, _: Applied) {
        match *self {}
    }

    pub(crate) fn write_page(&self, _: &Path) -> std::io::Result<()> {
        match *self {}
    }

    pub(crate) fn runs(&self) -> usize {
        match *self {}
    }
}
