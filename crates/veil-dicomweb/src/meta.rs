//! The PS3.10 File Meta Information of a received or outgoing instance:
//! just enough to name it in a STOW-RS response (SOP Class and Instance
//! UIDs) and to tell a DICOM file from anything else, without decoding
//! the data set. The gateway's intake parses the whole instance itself;
//! this crate only needs the header group 0002, which is always explicit
//! VR little endian and so needs no DICOM library.

/// Why a part is not a PS3.10 file. Says where, never what (no values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// No 128-byte preamble followed by `DICM`.
    #[error("not a DICOM PS3.10 file (no DICM prefix)")]
    NotPart10,
    /// The File Meta group ends inside an element.
    #[error("File Meta Information truncated at byte {offset}")]
    Truncated {
        /// Where the element that does not fit starts.
        offset: usize,
    },
    /// A required File Meta element is absent or empty.
    #[error("File Meta Information lacks {element}")]
    Missing {
        /// The element's keyword.
        element: &'static str,
    },
}

/// The identifying part of an instance's File Meta Information.
#[derive(Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// (0002,0002) Media Storage SOP Class UID.
    pub sop_class_uid: String,
    /// (0002,0003) Media Storage SOP Instance UID.
    pub sop_instance_uid: String,
    /// (0002,0010) Transfer Syntax UID.
    pub transfer_syntax_uid: String,
    /// Where the data set starts (after the File Meta group).
    pub dataset_offset: usize,
}

/// UIDs are identifiers of patient data: a `FileMeta` never prints them,
/// so that it can sit in a logged struct without leaking.
impl std::fmt::Debug for FileMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMeta")
            .field("dataset_offset", &self.dataset_offset)
            .finish_non_exhaustive()
    }
}

/// VRs whose explicit-VR length is 4 bytes after 2 reserved ones.
const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];

/// Reads the File Meta Information of `bytes`, a PS3.10 file.
pub fn read(bytes: &[u8]) -> Result<FileMeta, MetaError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(MetaError::NotPart10);
    }
    let (mut class, mut instance, mut syntax) = (None, None, None);
    let mut at = 132;
    while at + 8 <= bytes.len() {
        let group = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([bytes[at + 2], bytes[at + 3]]);
        let vr = [bytes[at + 4], bytes[at + 5]];
        let (header, len) = if LONG_VRS.contains(&&vr) {
            let Some(l) = bytes.get(at + 8..at + 12) else {
                return Err(MetaError::Truncated { offset: at });
            };
            (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
        } else {
            (
                8,
                u16::from_le_bytes([bytes[at + 6], bytes[at + 7]]) as usize,
            )
        };
        let start = at + header;
        let Some(value) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            return Err(MetaError::Truncated { offset: at });
        };
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_string()
        };
        match element {
            0x0002 => class = Some(text()),
            0x0003 => instance = Some(text()),
            0x0010 => syntax = Some(text()),
            _ => {}
        }
        at = start + len;
    }
    let need = |v: Option<String>, element| {
        v.filter(|s| !s.is_empty())
            .ok_or(MetaError::Missing { element })
    };
    Ok(FileMeta {
        sop_class_uid: need(class, "MediaStorageSOPClassUID")?,
        sop_instance_uid: need(instance, "MediaStorageSOPInstanceUID")?,
        transfer_syntax_uid: need(syntax, "TransferSyntaxUID")?,
        dataset_offset: at,
    })
}

/// The SOP Class and Instance UIDs of the data set itself, (0008,0016)
/// and (0008,0018): what a STOW-RS peer reports back, and they may differ
/// from the File Meta's (the corpus has such files; Orthanc answers with
/// the data set's). `None` when the data set cannot be read or either is
/// absent.
///
/// Why Veil's own reader (veil-io) and not dicom-object's: this runs on
/// every part a sender posts, and dicom-object 0.10 allocates the length
/// an element declares before reading it, so a real corpus file with an
/// undefined-length UN element took 3.4 GB (found by the `stow_part` fuzz
/// target; its input is a regression seed). veil-io holds every parser
/// to `veil_core::limits` and is fuzzed itself.
pub fn dataset_uids(bytes: &[u8]) -> Option<(String, String)> {
    let file = veil_io::read_bytes(bytes.to_vec()).ok()?;
    let text = |tag| {
        let v = file.dataset.ascii(tag)?;
        let v = v.trim_end_matches(['\0', ' ']).to_string();
        (!v.is_empty()).then_some(v)
    };
    Some((
        text(veil_core::Tag(0x0008, 0x0016))?,
        text(veil_core::Tag(0x0008, 0x0018))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&0x0002u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if LONG_VRS.contains(&vr) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    /// A File Meta group with a long-VR element before the UIDs is read
    /// through, padding is trimmed, and the data set offset is right after.
    #[test]
    fn reads_uids_and_dataset_offset() {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        element(&mut f, 0x0001, b"OB", &[0, 1]);
        element(&mut f, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
        element(&mut f, 0x0003, b"UI", b"1.2.3.4");
        element(&mut f, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        let end = f.len();
        f.extend_from_slice(&[0x08, 0x00, 0x16, 0x00]);
        let m = read(&f).unwrap();
        assert_eq!(m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.7");
        assert_eq!(m.sop_instance_uid, "1.2.3.4");
        assert_eq!(m.transfer_syntax_uid, "1.2.840.10008.1.2.1");
        assert_eq!(m.dataset_offset, end);
        assert!(!format!("{m:?}").contains("1.2.3.4"));
    }

    /// The `stow_part` fuzz target's out-of-memory input (a real corpus
    /// file's head: an undefined-length UN element): its UIDs are read,
    /// with Veil's bounded reader, not a 4 GiB allocation.
    #[test]
    fn an_undefined_length_un_element_does_not_allocate_its_declared_length() {
        let bytes = include_bytes!(
            "../../../fuzz/regressions/stow_part/oom-6f9bdca5acebc473c43a63317889e7d3aae5c59b"
        );
        assert!(read(bytes).is_ok());
        // the head holds no (0008,0016)/(0008,0018): None, promptly
        assert_eq!(dataset_uids(bytes), None);
    }

    /// Not DICOM, a cut-off element and a missing UID are each named.
    #[test]
    fn refuses_non_dicom_truncated_and_incomplete() {
        assert_eq!(read(b"hello"), Err(MetaError::NotPart10));
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        element(&mut f, 0x0002, b"UI", b"1.2");
        let mut cut = f.clone();
        element(&mut cut, 0x0003, b"UI", b"1.2.3.4");
        cut.truncate(cut.len() - 3);
        assert!(matches!(read(&cut), Err(MetaError::Truncated { .. })));
        assert_eq!(
            read(&f),
            Err(MetaError::Missing {
                element: "MediaStorageSOPInstanceUID"
            })
        );
    }
}
