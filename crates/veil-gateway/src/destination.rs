//! Where released instances go: the seam for the network layers.
//!
//! A [`Destination`] receives one study at a time, instance by instance.
//! The service records each instance as delivered only after
//! [`Destination::deliver`] returned `Ok`, so after a crash between the
//! two, the instance is delivered again. Exactly-once at the recipient
//! therefore rests on one contract every implementation keeps: **delivering
//! the same `name` again leaves the recipient holding one copy**. `name` is
//! the instance's pseudonymous path (it encodes the de-identified SOP
//! Instance UID, which is the same on every retry because pseudonyms are
//! keyed, not random). A folder replaces the file of that name atomically;
//! a DICOM peer or a DICOMweb origin stores a SOP Instance UID once (a
//! repeat replaces or is ignored, per PS3.4 B.4.1 and PS3.18 STOW-RS).

use std::path::{Path, PathBuf};

/// Why a delivery failed: a reason for the queue and logs, without PHI
/// or paths (an error kind, a DIMSE status, an HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// A place released instances are delivered to.
pub trait Destination: Send {
    /// Before the first instance of a study, with the files about to be
    /// delivered (to open one association proposing their SOP classes and
    /// transfer syntaxes, say).
    fn begin_study(&mut self, _files: &[PathBuf]) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Delivers one de-identified instance: `file` holds it, `name` is its
    /// pseudonymous relative path, stable across retries. Idempotent by
    /// `name` (see the module documentation). Returns only once the
    /// recipient holds it (a C-STORE success, a STOW-RS 200, a renamed and
    /// synced file).
    fn deliver(&mut self, name: &str, file: &Path) -> Result<(), DeliveryError>;

    /// After the last instance of a study, or after a failure (release the
    /// association). An error here fails the study's attempt.
    fn end_study(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// `file:///dir`: each instance written under `dir` by its name, through
/// a temporary file, fsync and rename, so a reader never sees half a file
/// and a repeat replaces the same file with the same bytes.
#[derive(Debug, Clone)]
pub struct FileDestination {
    dir: PathBuf,
}

impl FileDestination {
    /// A destination writing below `dir` (created on first delivery).
    pub fn new(dir: &Path) -> FileDestination {
        FileDestination {
            dir: dir.to_path_buf(),
        }
    }
}

impl Destination for FileDestination {
    fn deliver(&mut self, name: &str, file: &Path) -> Result<(), DeliveryError> {
        let rel = Path::new(name);
        // names come from the pipeline (pseudonyms); a name that would
        // leave the folder is refused rather than trusted
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(DeliveryError(
                "file: an output name that leaves the folder".into(),
            ));
        }
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| DeliveryError(format!("file: {what}: {:?}", e.kind()))
        };
        let bytes = std::fs::read(file).map_err(io("reading the staged instance"))?;
        veil_io::atomic::write_all(&self.dir.join(rel), &bytes).map_err(io("writing the instance"))
    }
}
