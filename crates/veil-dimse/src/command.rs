//! DIMSE command sets (PS3.7 §9.3, §E): the group-0000 data set that heads
//! every DIMSE message.
//!
//! Why a small codec of our own rather than `dicom-object`: command sets
//! are always implicit VR little endian, hold a dozen short elements of
//! four value types, and must start with an exact CommandGroupLength; a
//! sorted map of element number to raw value is simpler to get right and
//! cannot drag a data set's VR rules into the command channel.

use std::collections::BTreeMap;

use dicom_dictionary_std::tags;

use crate::error::DimseError;

/// CommandDataSetType value meaning "no data set follows" (PS3.7 §E.1).
pub const NO_DATA_SET: u16 = 0x0101;
/// A CommandDataSetType value meaning "a data set follows" (any other
/// value means the same; this is what Veil sends).
pub const DATA_SET_PRESENT: u16 = 0x0000;

/// DIMSE command field values (PS3.7 §E.1) of the services Veil speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CommandField {
    CStoreRq = 0x0001,
    CStoreRsp = 0x8001,
    CFindRq = 0x0020,
    CFindRsp = 0x8020,
    CMoveRq = 0x0021,
    CMoveRsp = 0x8021,
    CEchoRq = 0x0030,
    CEchoRsp = 0x8030,
    CCancelRq = 0x0FFF,
}

impl CommandField {
    /// The command for a wire value, or `None` for services Veil does not
    /// speak (C-GET, N-*), which the SCP answers with "unrecognized
    /// operation".
    pub fn from_u16(v: u16) -> Option<Self> {
        use CommandField::*;
        Some(match v {
            0x0001 => CStoreRq,
            0x8001 => CStoreRsp,
            0x0020 => CFindRq,
            0x8020 => CFindRsp,
            0x0021 => CMoveRq,
            0x8021 => CMoveRsp,
            0x0030 => CEchoRq,
            0x8030 => CEchoRsp,
            0x0FFF => CCancelRq,
            _ => return None,
        })
    }
}

/// DIMSE status codes Veil sends or interprets (PS3.7 Annex C, PS3.4).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Pending (C-FIND, C-MOVE).
    pub const PENDING: u16 = 0xFF00;
    /// Pending, some optional keys were not supported (C-FIND).
    pub const PENDING_WARNING: u16 = 0xFF01;
    /// Cancelled.
    pub const CANCEL: u16 = 0xFE00;
    /// Processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    /// Refused: out of resources (C-STORE).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (C-STORE).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (C-STORE).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Sub-operations complete, one or more failures or warnings (C-MOVE).
    pub const SUB_OPERATIONS_WARNING: u16 = 0xB000;

    /// The status class of a code, as PS3.7 Annex C groups them.
    pub fn is_pending(code: u16) -> bool {
        code == PENDING || code == PENDING_WARNING
    }
    /// Warnings are 0001, Bxxx and 0107/0116 (PS3.7 C.3).
    pub fn is_warning(code: u16) -> bool {
        code == 0x0001 || code == 0x0107 || code == 0x0116 || (code & 0xF000) == 0xB000
    }
}

/// A decoded or to-be-encoded command set: element number (group 0000) to
/// raw value bytes. CommandGroupLength is never stored; it is computed on
/// encode and checked on decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSet {
    elements: BTreeMap<u16, Vec<u8>>,
}

/// Command sets are small; a peer claiming more is broken or hostile.
const MAX_COMMAND_LEN: usize = 64 * 1024;

impl CommandSet {
    /// An empty command set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A command set with its CommandField, MessageID (requests) or
    /// MessageIDBeingRespondedTo (responses) and CommandDataSetType.
    pub fn request(field: CommandField, message_id: u16, has_data: bool) -> Self {
        let mut c = Self::new();
        c.set_u16(tags::COMMAND_FIELD.element(), field as u16);
        c.set_u16(tags::MESSAGE_ID.element(), message_id);
        c.set_data_set(has_data);
        c
    }

    /// A response to `message_id` with a status.
    pub fn response(field: CommandField, message_id: u16, status: u16, has_data: bool) -> Self {
        let mut c = Self::new();
        c.set_u16(tags::COMMAND_FIELD.element(), field as u16);
        c.set_u16(tags::MESSAGE_ID_BEING_RESPONDED_TO.element(), message_id);
        c.set_u16(tags::STATUS.element(), status);
        c.set_data_set(has_data);
        c
    }

    fn set_data_set(&mut self, has_data: bool) {
        let v = if has_data {
            DATA_SET_PRESENT
        } else {
            NO_DATA_SET
        };
        self.set_u16(tags::COMMAND_DATA_SET_TYPE.element(), v);
    }

    /// Sets a US element.
    pub fn set_u16(&mut self, element: u16, v: u16) -> &mut Self {
        self.elements.insert(element, v.to_le_bytes().to_vec());
        self
    }

    /// Sets a UI element (padded to even length with NUL, PS3.5 §9.1).
    pub fn set_uid(&mut self, element: u16, uid: &str) -> &mut Self {
        let mut v = uid.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        self.elements.insert(element, v);
        self
    }

    /// Sets a text element (AE, LO: padded with a space).
    pub fn set_text(&mut self, element: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        self.elements.insert(element, v);
        self
    }

    /// A US element's value, if present and two bytes long.
    pub fn u16(&self, element: u16) -> Option<u16> {
        let v = self.elements.get(&element)?;
        (v.len() == 2).then(|| u16::from_le_bytes([v[0], v[1]]))
    }

    /// A text or UI element's value, trimmed of padding.
    pub fn text(&self, element: u16) -> Option<&str> {
        let v = self.elements.get(&element)?;
        let s = std::str::from_utf8(v).ok()?;
        Some(s.trim_matches(|c: char| c == '\0' || c == ' '))
    }

    /// The command field, if it is one Veil knows.
    pub fn command_field(&self) -> Option<CommandField> {
        self.u16(tags::COMMAND_FIELD.element())
            .and_then(CommandField::from_u16)
    }

    /// The raw command field value (for answering unknown commands).
    pub fn command_field_raw(&self) -> Option<u16> {
        self.u16(tags::COMMAND_FIELD.element())
    }

    /// MessageID of a request.
    pub fn message_id(&self) -> Option<u16> {
        self.u16(tags::MESSAGE_ID.element())
    }

    /// MessageIDBeingRespondedTo of a response.
    pub fn responded_to(&self) -> Option<u16> {
        self.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO.element())
    }

    /// Status of a response.
    pub fn status(&self) -> Option<u16> {
        self.u16(tags::STATUS.element())
    }

    /// Whether a data set follows this command (PS3.7 §E.1: any value other
    /// than 0101H).
    pub fn has_data_set(&self) -> bool {
        self.u16(tags::COMMAND_DATA_SET_TYPE.element()) != Some(NO_DATA_SET)
    }

    /// AffectedSOPClassUID.
    pub fn affected_sop_class(&self) -> Option<&str> {
        self.text(tags::AFFECTED_SOP_CLASS_UID.element())
    }

    /// AffectedSOPInstanceUID.
    pub fn affected_sop_instance(&self) -> Option<&str> {
        self.text(tags::AFFECTED_SOP_INSTANCE_UID.element())
    }

    /// Encodes as implicit VR little endian, CommandGroupLength first.
    pub fn encode(&self) -> Vec<u8> {
        let body_len: usize = self.elements.values().map(|v| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        let push = |out: &mut Vec<u8>, element: u16, v: &[u8]| {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&element.to_le_bytes());
            // command values are tiny (bounded by MAX_COMMAND_LEN on decode
            // and by the setters' inputs on encode)
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        };
        push(&mut out, 0x0000, &(body_len as u32).to_le_bytes());
        for (e, v) in &self.elements {
            push(&mut out, *e, v);
        }
        out
    }

    /// Decodes an implicit VR little endian group-0000 data set. A present
    /// CommandGroupLength must match the bytes that follow it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DimseError> {
        if bytes.len() > MAX_COMMAND_LEN {
            return Err(DimseError::BadCommand("command set too long"));
        }
        let mut elements = BTreeMap::new();
        let mut pos = 0usize;
        let mut group_length: Option<(usize, u32)> = None;
        while pos < bytes.len() {
            let head = bytes
                .get(pos..pos + 8)
                .ok_or(DimseError::BadCommand("truncated element header"))?;
            let group = u16::from_le_bytes([head[0], head[1]]);
            let element = u16::from_le_bytes([head[2], head[3]]);
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if group != 0x0000 {
                return Err(DimseError::BadCommand("element outside group 0000"));
            }
            let value = bytes
                .get(pos + 8..pos + 8 + len)
                .ok_or(DimseError::BadCommand("element value past the end"))?;
            pos += 8 + len;
            if element == 0x0000 {
                if len != 4 {
                    return Err(DimseError::BadCommand("CommandGroupLength is not UL"));
                }
                let v = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                group_length = Some((pos, v));
                continue;
            }
            if elements.insert(element, value.to_vec()).is_some() {
                return Err(DimseError::BadCommand("repeated element"));
            }
        }
        if let Some((after, v)) = group_length {
            if bytes.len() - after != v as usize {
                return Err(DimseError::BadCommand("CommandGroupLength mismatch"));
            }
        }
        let c = CommandSet { elements };
        if c.command_field_raw().is_none() {
            return Err(DimseError::BadCommand("no CommandField"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_18_command_set_round_trip_and_group_length() {
        let mut c = CommandSet::request(CommandField::CStoreRq, 7, true);
        c.set_uid(
            tags::AFFECTED_SOP_CLASS_UID.element(),
            "1.2.840.10008.5.1.4.1.1.2",
        );
        c.set_uid(tags::AFFECTED_SOP_INSTANCE_UID.element(), "1.2.3");
        c.set_u16(tags::PRIORITY.element(), 0);
        let bytes = c.encode();
        // (0000,0000) UL first, its value = bytes after it
        assert_eq!(&bytes[0..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let gl = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(gl, bytes.len() - 12);
        // UIDs padded with NUL to even length
        let d = CommandSet::decode(&bytes).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.affected_sop_class(), Some("1.2.840.10008.5.1.4.1.1.2"));
        assert_eq!(d.affected_sop_instance(), Some("1.2.3"));
        assert_eq!(d.message_id(), Some(7));
        assert!(d.has_data_set());
        assert_eq!(d.command_field(), Some(CommandField::CStoreRq));
        // elements are in ascending order on the wire
        let mut pos = 12;
        let mut last = 0u16;
        while pos < bytes.len() {
            let e = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            assert!(e > last);
            last = e;
            let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 2, 0);
            pos += 8 + len;
        }
    }

    #[test]
    fn issue_18_command_set_rejects_malformed() {
        let good = CommandSet::response(CommandField::CEchoRsp, 1, 0, false).encode();
        // wrong group length
        let mut bad = good.clone();
        bad[8] ^= 0x01;
        assert!(CommandSet::decode(&bad).is_err());
        // truncated
        assert!(CommandSet::decode(&good[..good.len() - 1]).is_err());
        // a data set element in the command
        let mut other = good.clone();
        other.extend_from_slice(&[8, 0, 0x18, 0, 2, 0, 0, 0, b'1', 0]);
        assert!(CommandSet::decode(&other).is_err());
        // garbage
        assert!(CommandSet::decode(b"this is not a command set").is_err());
        // no group length is tolerated (it is type 1 but some peers omit it)
        let d = CommandSet::decode(&good[12..]).unwrap();
        assert_eq!(d.status(), Some(0));
        assert!(!d.has_data_set());
        assert_eq!(d.responded_to(), Some(1));
    }
}
