//! OUT's DICOMDIR (`veil deid --dicomdir`), from the headers of the
//! released outputs. Shared by the batch, which reads them from OUT, and
//! by callers holding the outputs elsewhere (the Spark job's roots, local
//! or S3, through the Python package), so both write the same DICOMDIR.

use veil_core::Tag;
use veil_deid::{pseudonym, Policy};
use veil_io::{DicomFile, DirEntry};

/// The DICOMDIR's records for the outputs `(relative name, parsed
/// output)`, and its SOP Instance UID: keyed from the outputs' SOP
/// Instance UIDs, so the same release gets the same DICOMDIR on any run.
pub fn entries(
    policy: &Policy,
    outputs: impl IntoIterator<Item = (String, DicomFile)>,
) -> (Vec<DirEntry>, String) {
    let entries: Vec<DirEntry> = outputs
        .into_iter()
        .map(|(rel, f)| DirEntry {
            file_id: rel.split('/').map(str::to_string).collect(),
            ts_uid: f.ts.uid.clone(),
            dataset: f.dataset,
        })
        .collect();
    let mut sops: Vec<String> = entries
        .iter()
        .filter_map(|e| e.dataset.ascii(Tag(0x0008, 0x0018)))
        .collect();
    sops.sort_unstable();
    let uid = pseudonym::uid(policy.key(), &format!("DICOMDIR {}", sops.join(" ")));
    (entries, uid)
}

/// The DICOMDIR's bytes for outputs held in memory `(relative name,
/// bytes)`; an output that does not parse is left out, as the batch
/// leaves out one it cannot read back.
pub fn encode(
    policy: &Policy,
    outputs: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<Vec<u8>, veil_io::WriteError> {
    let parsed = outputs
        .into_iter()
        .filter_map(|(rel, b)| veil_io::read_bytes(b).ok().map(|f| (rel, f)));
    let (entries, uid) = entries(policy, parsed);
    veil_io::encode_dicomdir(&entries, &uid)
}
