//! Errors of the DICOM network layer.
//!
//! Why dicom-ul's errors are not wrapped as they are: their `Display` for
//! an unexpected PDU prints the PDU with `{:?}`, P-DATA bytes included, and
//! those bytes are patient data. [`ul_error`] keeps only the kind and the
//! association's reject/abort reasons.

use dicom_ul::association::Error as UlError;

/// Failures of an association or a DIMSE exchange. Peer AE titles and
/// socket addresses may appear; values from data sets never do.
#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    /// The upper layer failed (connect, negotiate, send or receive).
    #[error("DICOM upper layer ({context}): {detail}")]
    Ul {
        /// what Veil was doing
        context: &'static str,
        /// dicom-ul's error, described without PDU contents
        detail: String,
    },
    /// The peer rejected the association.
    #[error("association rejected by {peer}: {reason}")]
    Rejected {
        /// called AE title and address
        peer: String,
        /// the A-ASSOCIATE-RJ source and reason
        reason: String,
    },
    /// The peer accepted none of the presentation contexts Veil needs.
    #[error("{peer} accepted no presentation context for {what}")]
    NoContext {
        /// called AE title and address
        peer: String,
        /// the abstract syntax that was needed
        what: &'static str,
    },
    /// A command set did not decode.
    #[error("malformed DIMSE command set: {0}")]
    BadCommand(&'static str),
    /// The peer broke the DIMSE protocol (fragment order, wrong context,
    /// unexpected command).
    #[error("DIMSE protocol violation: {0}")]
    Protocol(&'static str),
    /// The peer aborted or closed the association mid-exchange.
    #[error("association aborted by the peer")]
    Aborted,
    /// The peer answered with a failure status.
    #[error("{operation} failed with status {status:04X}H")]
    Status {
        /// C-FIND, C-MOVE, C-ECHO
        operation: &'static str,
        /// the DIMSE status
        status: u16,
    },
    /// Reading a local file or a socket failed (kind only: paths are not
    /// logged).
    #[error("I/O error ({context}): {kind:?}")]
    Io {
        /// what Veil was doing
        context: &'static str,
        /// the error kind
        kind: std::io::ErrorKind,
    },
    /// A local file is not a DICOM file Veil can send.
    #[error("not a sendable DICOM file: {0}")]
    BadFile(&'static str),
    /// A configuration value is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl DimseError {
    pub(crate) fn io(context: &'static str, e: &std::io::Error) -> Self {
        DimseError::Io {
            context,
            kind: e.kind(),
        }
    }
}

/// Maps dicom-ul's error to ours, keeping reasons and dropping PDU bodies.
pub(crate) fn ul_error(context: &'static str, e: UlError) -> DimseError {
    let detail = match &e {
        UlError::Rejected { association_rj, .. } => {
            return DimseError::Rejected {
                peer: context.to_string(),
                reason: format!("{:?}", association_rj.source),
            }
        }
        UlError::UnexpectedPdu { pdu, .. } | UlError::UnknownPdu { pdu, .. } => {
            format!("unexpected PDU ({})", pdu.short_description())
        }
        UlError::ReceivePdu { source, .. } => format!("cannot read PDU: {source}"),
        UlError::Aborted { .. } => return DimseError::Aborted,
        UlError::ConnectionClosed { .. } => return DimseError::Aborted,
        other => other.to_string(),
    };
    DimseError::Ul { context, detail }
}
