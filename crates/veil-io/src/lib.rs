//! Reading and writing DICOM files for Veil.
//!
//! Why Veil has its own element walker instead of `dicom_object::open_file`:
//! de-identification needs the header as a tree to edit, but not the pixel
//! data, which is often 99% of the bytes. [`read`] parses headers with
//! dicom-rs's element decoders and leaves every large binary value (pixel
//! data, encapsulated frames, overlays, waveforms) on disk as an offset and
//! length; [`write`] copies those bytes straight from the source file, so
//! memory stays flat whatever the file size and frames stay byte-identical.
//! It also reads private sequences stored as UN with undefined length as
//! implicit VR little endian (CP-246), which dicom-rs 0.10 cannot.
//!
//! This is the only crate that opens files for writing: [`atomic`] writes to
//! a temporary file, fsyncs and renames, so no partial output can exist.

pub mod atomic;
mod dataset;
mod dicomdir;
pub mod lock;
#[cfg(feature = "s3")]
pub mod objects;
#[cfg(feature = "s3")]
pub mod place;
mod read;
mod walk;
mod write;

pub use dataset::{DataSet, Element, Value};
pub use dicomdir::{encode_dicomdir, write_dicomdir, DirEntry};
pub use read::{read, read_bytes, DicomFile, FileMeta, ReadError, Source, TsInfo};
pub use walk::{describe, input_error, walk, walk_with, Skip, WalkOptions, Walked};
pub use write::{
    encode_dataset, encode_file, file_header, write_explicit_le, write_file, write_file_with_meta,
    write_pending, BulkSource, WriteError, WriteMeta,
};

/// Veil's marker in an output folder (`veil deid`'s OUT): the key id,
/// recipe digest and options it was written with, no PHI. It is Veil's
/// bookkeeping, not an output: the walker never lists it (so `veil verify`,
/// `veil risk`, DICOMDIR and a later run never take it for one).
pub const OUT_MARKER: &str = ".veil-out.json";

/// The review folder's queue index (`veil review`): each object's relative
/// path and why it is there. Bookkeeping, never listed by the walker.
pub const REVIEW_INDEX: &str = ".veil-review.json";

/// Whether a file name is one of Veil's bookkeeping files above.
pub fn is_bookkeeping(name: &std::ffi::OsStr) -> bool {
    name == OUT_MARKER || name == REVIEW_INDEX
}

/// The UID that Veil writes as Implementation Class UID (0002,0012): a
/// UUID-derived UID fixed for the project, so outputs say who wrote them
/// without carrying the input's implementation or AE titles.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.169287235426488201870981932431873690391";

/// Implementation Version Name (0002,0013), at most 16 characters.
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("VEIL_", env!("CARGO_PKG_VERSION"));
