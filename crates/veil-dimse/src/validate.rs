//! A check of the head of a received data set, before the handler sees it.
//!
//! Why: a C-STORE of bytes that are not a data set (or of another instance
//! than the command names) must be refused with a status, not spooled and
//! found broken minutes later in the pipeline. Parsing the whole data set
//! would mean holding it; the identity of an instance is at its start
//! (group 0008), so walking the element headers of the first bytes is
//! enough to tell a data set from garbage and to compare its SOP Class and
//! Instance UIDs with the command's.

use dicom_core::dictionary::DataDictionary;
use dicom_dictionary_std::tags;

/// Why the head of a data set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not a well-formed element stream.
    Malformed,
    /// No SOP Class / Instance UID where group 0008 should have them.
    MissingIdentity,
    /// The UIDs in the data set differ from the command's.
    Mismatch,
}

/// How the data set is encoded.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    /// explicit VR
    pub explicit: bool,
    /// big endian
    pub big_endian: bool,
}

fn long_vr(vr: &[u8]) -> Option<bool> {
    match vr {
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR"
        | b"UT" | b"UV" => Some(true),
        b"AE" | b"AS" | b"AT" | b"CS" | b"DA" | b"DS" | b"DT" | b"FD" | b"FL" | b"IS" | b"LO"
        | b"LT" | b"PN" | b"SH" | b"SL" | b"SS" | b"ST" | b"TM" | b"UI" | b"UL" | b"US" => {
            Some(false)
        }
        _ => None,
    }
}

/// Checks the head of a data set. `head` is the first bytes received;
/// `complete` says whether it is the whole data set. Returns Ok when the
/// elements up to (0008,0018) are well formed and the UIDs match, or when
/// the walk cannot go further (an undefined-length element before them,
/// or the head ends) without having seen anything wrong.
pub fn check_head(
    head: &[u8],
    complete: bool,
    enc: Encoding,
    sop_class: &str,
    sop_instance: &str,
) -> Result<(), HeadError> {
    let u16_at = |p: usize| -> u16 {
        let b = [head[p], head[p + 1]];
        if enc.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |p: usize| -> u32 {
        let b = [head[p], head[p + 1], head[p + 2], head[p + 3]];
        if enc.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let mut pos = 0usize;
    let mut last: Option<(u16, u16)> = None;
    let mut class_seen = None;
    let mut instance_seen = None;
    // whether the walk reached the place where the identity must have been
    let mut conclusive = false;
    loop {
        if head.len() - pos < 8 {
            if complete && pos != head.len() {
                return Err(HeadError::Malformed);
            }
            conclusive = complete;
            break;
        }
        let tag = (u16_at(pos), u16_at(pos + 2));
        if tag.0 == 0xFFFE || tag.0 < 0x0002 || last.is_some_and(|l| tag <= l) {
            return Err(HeadError::Malformed);
        }
        if tag > (0x0008, 0x0018) {
            conclusive = true;
            break;
        }
        let (len, header) = if enc.explicit {
            let vr = &head[pos + 4..pos + 6];
            match long_vr(vr) {
                None => return Err(HeadError::Malformed),
                Some(false) => (u16_at(pos + 6) as u32, 8),
                Some(true) => {
                    if head.len() - pos < 12 {
                        break;
                    }
                    (u32_at(pos + 8), 12)
                }
            }
        } else {
            // implicit VR: an unknown public tag this early is a sign of
            // garbage; the standard dictionary knows every group 0002/0008
            // element
            if tag.0 % 2 == 0
                && dicom_dictionary_std::StandardDataDictionary
                    .by_tag(dicom_core::Tag(tag.0, tag.1))
                    .is_none()
            {
                return Err(HeadError::Malformed);
            }
            (u32_at(pos + 4), 8)
        };
        if len == u32::MAX {
            // undefined length before the identity: stop here
            break;
        }
        let end = pos + header + len as usize;
        let value = if end <= head.len() {
            &head[pos + header..end]
        } else if complete {
            return Err(HeadError::Malformed);
        } else {
            break;
        };
        let text = || {
            std::str::from_utf8(value)
                .ok()
                .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').to_string())
        };
        if tag == (tags::SOP_CLASS_UID.group(), tags::SOP_CLASS_UID.element()) {
            class_seen = Some(text().ok_or(HeadError::Malformed)?);
        }
        if tag
            == (
                tags::SOP_INSTANCE_UID.group(),
                tags::SOP_INSTANCE_UID.element(),
            )
        {
            instance_seen = Some(text().ok_or(HeadError::Malformed)?);
        }
        last = Some(tag);
        pos = end;
    }
    match (class_seen, instance_seen) {
        (Some(c), Some(i)) if c == sop_class && i == sop_instance => Ok(()),
        (Some(_), Some(_)) => Err(HeadError::Mismatch),
        (Some(c), None) if c != sop_class => Err(HeadError::Mismatch),
        (None, Some(i)) if i != sop_instance => Err(HeadError::Mismatch),
        _ if conclusive => Err(HeadError::MissingIdentity),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const LE: Encoding = Encoding {
        explicit: true,
        big_endian: false,
    };
    const IMPLICIT: Encoding = Encoding {
        explicit: false,
        big_endian: false,
    };

    fn explicit(elements: &[(u16, u16, &[u8; 2], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (g, e, vr, v) in elements {
            out.extend_from_slice(&g.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(*vr);
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    fn implicit(elements: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (g, e, v) in elements {
            out.extend_from_slice(&g.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    #[test]
    fn issue_18_head_check_accepts_matching_and_refuses_garbage() {
        let good = explicit(&[
            (0x0008, 0x0005, b"CS", b"ISO_IR 100"),
            (0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
            (0x0008, 0x0018, b"UI", b"1.2.3.4\0"),
            (0x0010, 0x0010, b"PN", b"A^B "),
        ]);
        assert_eq!(check_head(&good, true, LE, CT, "1.2.3.4"), Ok(()));
        // incomplete head (more to come) is judged on what is there
        assert_eq!(
            check_head(&good[..good.len() - 3], false, LE, CT, "1.2.3.4"),
            Ok(())
        );
        // a data set that ends inside the SOP Instance UID is malformed
        assert_eq!(
            check_head(&good[..good.len() - 15], true, LE, CT, "1.2.3.4"),
            Err(HeadError::Malformed)
        );
        // another instance
        assert_eq!(
            check_head(&good, true, LE, CT, "1.2.3.5"),
            Err(HeadError::Mismatch)
        );
        // another class
        assert_eq!(
            check_head(&good, true, LE, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4"),
            Err(HeadError::Mismatch)
        );
        // no identity before group 0010
        let anon = explicit(&[(0x0010, 0x0010, b"PN", b"A^B ")]);
        assert_eq!(
            check_head(&anon, true, LE, CT, "1.2.3.4"),
            Err(HeadError::MissingIdentity)
        );
        // out of order tags
        let swapped = explicit(&[
            (0x0008, 0x0018, b"UI", b"1.2.3.4\0"),
            (0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"),
        ]);
        assert_eq!(
            check_head(&swapped, true, LE, CT, "1.2.3.4"),
            Err(HeadError::Malformed)
        );
        // text and PDF bytes, both encodings
        for junk in [
            &b"%PDF-1.7 this is not DICOM at all......"[..],
            &b"GET / HTTP/1.1\r\n\r\n"[..],
        ] {
            assert!(check_head(junk, true, LE, CT, "1.2.3.4").is_err());
            assert!(check_head(junk, true, IMPLICIT, CT, "1.2.3.4").is_err());
        }
        assert!(check_head(b"", true, LE, CT, "1.2.3.4").is_err());
        // implicit VR
        let imp = implicit(&[
            (0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.2\0"),
            (0x0008, 0x0018, b"1.2.3.4\0"),
            (0x0020, 0x000D, b"1.2\0"),
        ]);
        assert_eq!(check_head(&imp, true, IMPLICIT, CT, "1.2.3.4"), Ok(()));
        assert_eq!(
            check_head(&imp, true, IMPLICIT, CT, "9"),
            Err(HeadError::Mismatch)
        );
        // big endian explicit
        let mut be = Vec::new();
        for (e, v) in [
            (0x0016u16, &b"1.2.840.10008.5.1.4.1.1.2\0"[..]),
            (0x0018, &b"1.2.3.4\0"[..]),
        ] {
            be.extend_from_slice(&0x0008u16.to_be_bytes());
            be.extend_from_slice(&e.to_be_bytes());
            be.extend_from_slice(b"UI");
            be.extend_from_slice(&(v.len() as u16).to_be_bytes());
            be.extend_from_slice(v);
        }
        let enc = Encoding {
            explicit: true,
            big_endian: true,
        };
        assert_eq!(check_head(&be, true, enc, CT, "1.2.3.4"), Ok(()));
    }
}
