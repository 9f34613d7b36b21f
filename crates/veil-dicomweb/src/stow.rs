//! The PS3.18 STOW-RS response: a DICOM JSON object with the Referenced
//! SOP Sequence (stored) and the Failed SOP Sequence (with a Failure
//! Reason per instance), built by the server and read by the client.

use serde_json::{json, Map, Value};

/// (0008,1199) Referenced SOP Sequence.
pub const REFERENCED_SOP_SEQUENCE: &str = "00081199";
/// (0008,1198) Failed SOP Sequence.
pub const FAILED_SOP_SEQUENCE: &str = "00081198";
/// (0008,1150) Referenced SOP Class UID.
pub const REFERENCED_SOP_CLASS_UID: &str = "00081150";
/// (0008,1155) Referenced SOP Instance UID.
pub const REFERENCED_SOP_INSTANCE_UID: &str = "00081155";
/// (0008,1197) Failure Reason.
pub const FAILURE_REASON: &str = "00081197";

/// Why one instance was not stored: the Failure Reason codes of PS3.18
/// (STOW-RS) and PS3.4 (C-STORE status), so a sender's retry logic can
/// tell "try again later" from "never send this again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// 0110H: the receiver failed (e.g. a disk error); retrying may work.
    ProcessingFailure,
    /// A700H: out of resources (spool full); retrying later may work.
    OutOfResources,
    /// A900H: the data set does not match its SOP Class.
    DatasetMismatch,
    /// C000H: the part cannot be understood (not DICOM, damaged).
    CannotUnderstand,
    /// 0122H: the SOP Class is not supported.
    SopClassNotSupported,
    /// C122H: the Transfer Syntax is not supported.
    TransferSyntaxNotSupported,
    /// 0124H: refused, not authorized (e.g. a route policy).
    NotAuthorized,
    /// Any other code (read from a peer's response).
    Other(u16),
}

impl FailureReason {
    /// The numeric code as sent in (0008,1197).
    pub fn code(self) -> u16 {
        match self {
            FailureReason::ProcessingFailure => 0x0110,
            FailureReason::OutOfResources => 0xA700,
            FailureReason::DatasetMismatch => 0xA900,
            FailureReason::CannotUnderstand => 0xC000,
            FailureReason::SopClassNotSupported => 0x0122,
            FailureReason::TransferSyntaxNotSupported => 0xC122,
            FailureReason::NotAuthorized => 0x0124,
            FailureReason::Other(c) => c,
        }
    }

    /// The reason for a code read from a peer.
    pub fn from_code(code: u16) -> FailureReason {
        [
            FailureReason::ProcessingFailure,
            FailureReason::OutOfResources,
            FailureReason::DatasetMismatch,
            FailureReason::CannotUnderstand,
            FailureReason::SopClassNotSupported,
            FailureReason::TransferSyntaxNotSupported,
            FailureReason::NotAuthorized,
        ]
        .into_iter()
        .find(|r| r.code() == code)
        .unwrap_or(FailureReason::Other(code))
    }

    /// A short label for metrics and logs (no values).
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::ProcessingFailure => "processing_failure",
            FailureReason::OutOfResources => "out_of_resources",
            FailureReason::DatasetMismatch => "dataset_mismatch",
            FailureReason::CannotUnderstand => "cannot_understand",
            FailureReason::SopClassNotSupported => "sop_class_not_supported",
            FailureReason::TransferSyntaxNotSupported => "transfer_syntax_not_supported",
            FailureReason::NotAuthorized => "not_authorized",
            FailureReason::Other(_) => "other",
        }
    }
}

/// One entry of either sequence. UIDs are empty when the part was not
/// DICOM enough to name itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SopRef {
    /// Referenced SOP Class UID.
    pub class_uid: String,
    /// Referenced SOP Instance UID.
    pub instance_uid: String,
}

/// UIDs identify patient data: never printed.
impl std::fmt::Debug for SopRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SopRef(..)")
    }
}

/// A STOW-RS response body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StowResponse {
    /// Stored instances.
    pub referenced: Vec<SopRef>,
    /// Refused instances and why.
    pub failed: Vec<(SopRef, FailureReason)>,
}

fn uid(v: &str) -> Value {
    if v.is_empty() {
        json!({"vr": "UI"})
    } else {
        json!({"vr": "UI", "Value": [v]})
    }
}

fn item(r: &SopRef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(REFERENCED_SOP_CLASS_UID.into(), uid(&r.class_uid));
    m.insert(REFERENCED_SOP_INSTANCE_UID.into(), uid(&r.instance_uid));
    m
}

impl StowResponse {
    /// The application/dicom+json body. An empty sequence is left out, as
    /// PS3.18's examples do.
    pub fn to_json(&self) -> Vec<u8> {
        let mut top = Map::new();
        if !self.referenced.is_empty() {
            let items: Vec<Value> = self
                .referenced
                .iter()
                .map(|r| Value::Object(item(r)))
                .collect();
            top.insert(
                REFERENCED_SOP_SEQUENCE.into(),
                json!({"vr": "SQ", "Value": items}),
            );
        }
        if !self.failed.is_empty() {
            let items: Vec<Value> = self
                .failed
                .iter()
                .map(|(r, why)| {
                    let mut m = item(r);
                    m.insert(
                        FAILURE_REASON.into(),
                        json!({"vr": "US", "Value": [why.code()]}),
                    );
                    Value::Object(m)
                })
                .collect();
            top.insert(
                FAILED_SOP_SEQUENCE.into(),
                json!({"vr": "SQ", "Value": items}),
            );
        }
        Value::Object(top).to_string().into_bytes()
    }

    /// Reads a peer's response body (DICOM JSON; some servers wrap it in
    /// a one-element array). `None` when it is not such an object.
    pub fn from_json(body: &[u8]) -> Option<StowResponse> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let top = match &v {
            Value::Array(a) => a.first()?.as_object()?,
            Value::Object(o) => o,
            _ => return None,
        };
        let items = |tag: &str| -> Vec<Map<String, Value>> {
            top.get(tag)
                .and_then(|s| s.get("Value"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|i| i.as_object().cloned()).collect())
                .unwrap_or_default()
        };
        let text = |m: &Map<String, Value>, tag: &str| -> String {
            m.get(tag)
                .and_then(|e| e.get("Value"))
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let sop = |m: &Map<String, Value>| SopRef {
            class_uid: text(m, REFERENCED_SOP_CLASS_UID),
            instance_uid: text(m, REFERENCED_SOP_INSTANCE_UID),
        };
        let referenced = items(REFERENCED_SOP_SEQUENCE).iter().map(sop).collect();
        let failed = items(FAILED_SOP_SEQUENCE)
            .iter()
            .map(|m| {
                let code = m
                    .get(FAILURE_REASON)
                    .and_then(|e| e.get("Value"))
                    .and_then(|v| v.get(0))
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(0x0110);
                (sop(m), FailureReason::from_code(code))
            })
            .collect();
        Some(StowResponse { referenced, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server writes the client reads back, empty UIDs included;
    /// every named reason survives its code.
    #[test]
    fn response_round_trips() {
        let r = StowResponse {
            referenced: vec![SopRef {
                class_uid: "1.2".into(),
                instance_uid: "1.2.3".into(),
            }],
            failed: vec![(
                SopRef {
                    class_uid: String::new(),
                    instance_uid: String::new(),
                },
                FailureReason::CannotUnderstand,
            )],
        };
        let body = r.to_json();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v[FAILED_SOP_SEQUENCE]["Value"][0][FAILURE_REASON]["Value"][0],
            0xC000
        );
        assert_eq!(StowResponse::from_json(&body), Some(r));
        for code in [
            0x0110, 0xA700, 0xA900, 0xC000, 0x0122, 0xC122, 0x0124, 0xB000,
        ] {
            assert_eq!(FailureReason::from_code(code).code(), code);
        }
        assert_eq!(StowResponse::from_json(b"<html>"), None);
    }
}
