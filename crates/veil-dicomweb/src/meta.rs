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
/// the data set's). Reads the header only, up to Pixel Data. `None` when
/// this build cannot read the data set (e.g. deflated) or either is absent.
pub fn dataset_uids(bytes: &[u8]) -> Option<(String, String)> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(bytes)
        .ok()?;
    let text = |tag| {
        let v = obj.element(tag).ok()?.to_str().ok()?;
        let v = v.trim_end_matches(['\0', ' ']).to_string();
        (!v.is_empty()).then_some(v)
    };
    Some((text(tags::SOP_CLASS_UID)?, text(tags::SOP_INSTANCE_UID)?))
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
