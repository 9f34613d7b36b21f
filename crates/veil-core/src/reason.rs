//! Why an input was not released. These travel in reports, so they carry
//! tags, offsets and kinds, never values or paths.

use std::fmt;

use crate::{Echo, Limit, Tag};

/// Why a file was quarantined (not written to the output).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum QuarantineReason {
    /// The file does not start like DICOM (no `DICM` marker and no plausible
    /// data set at offset 0).
    NotDicom,
    /// The File Meta Information could not be read.
    BadFileMeta {
        /// what was wrong, in words without values
        detail: String,
    },
    /// The transfer syntax is not one Veil can parse.
    UnsupportedTransferSyntax {
        /// the transfer syntax UID as the file declares it, checked against
        /// the UID grammar (a file can declare any text here)
        uid: Echo,
    },
    /// The data set ended before an element was complete.
    Truncated {
        /// byte offset in the (decompressed) data set stream
        offset: u64,
        /// the element being read, when known
        tag: Option<String>,
    },
    /// The data set is structurally invalid.
    Malformed {
        /// byte offset where parsing failed
        offset: u64,
        /// what was wrong
        detail: String,
    },
    /// A DICOMDIR lists names and IDs; Veil never copies one.
    Dicomdir,
    /// A required attribute is missing, so the object cannot be placed in
    /// the output tree.
    MissingAttribute {
        /// the attribute
        tag: String,
    },
    /// Parsing would have gone past one of Veil's bounds on untrusted
    /// input ([`crate::limits`]): nesting, inflated size, frame size.
    LimitExceeded {
        /// which bound
        limit: Limit,
        /// the bound (Veil's setting, never a value from the file)
        max: u64,
        /// byte offset in the (decompressed) data set stream where it was
        /// crossed, when known
        offset: Option<u64>,
    },
    /// An I/O error while reading or writing.
    Io {
        /// the error kind
        detail: String,
    },
}

impl QuarantineReason {
    /// A reason for a file that went past `limit`, whose bound is `max`.
    pub fn limit(limit: Limit, max: u64, offset: Option<u64>) -> Self {
        QuarantineReason::LimitExceeded { limit, max, offset }
    }

    /// A reason for a parse failure at a known element.
    pub fn truncated_at(offset: u64, tag: Option<Tag>) -> Self {
        QuarantineReason::Truncated {
            offset,
            tag: tag.map(|t| t.to_string()),
        }
    }
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineReason::NotDicom => f.write_str("not a DICOM file"),
            QuarantineReason::BadFileMeta { detail } => write!(f, "bad File Meta: {detail}"),
            QuarantineReason::UnsupportedTransferSyntax { uid } => {
                write!(f, "unsupported transfer syntax {uid}")
            }
            QuarantineReason::Truncated { offset, tag } => match tag {
                Some(t) => write!(f, "truncated at byte {offset} in {t}"),
                None => write!(f, "truncated at byte {offset}"),
            },
            QuarantineReason::Malformed { offset, detail } => {
                write!(f, "malformed at byte {offset}: {detail}")
            }
            QuarantineReason::Dicomdir => f.write_str("DICOMDIR (never copied)"),
            QuarantineReason::MissingAttribute { tag } => write!(f, "missing attribute {tag}"),
            QuarantineReason::LimitExceeded { limit, max, offset } => {
                write!(f, "over the {} limit of {max}", limit.name())?;
                match offset {
                    Some(o) => write!(f, " at byte {o}"),
                    None => Ok(()),
                }
            }
            QuarantineReason::Io { detail } => write!(f, "I/O error: {detail}"),
        }
    }
}
