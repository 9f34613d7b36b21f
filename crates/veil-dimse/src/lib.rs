//! Veil's DICOM network layer: the DIMSE message services on top of
//! dicom-ul's associations and PDUs.
//!
//! Why a crate of its own: dicom-ul 0.10 negotiates associations and moves
//! PDUs but has no DIMSE layer (command sets, fragmentation, the C-ECHO,
//! C-STORE, C-FIND and C-MOVE exchanges). This crate adds that layer and
//! nothing else: it knows no consent, recipe or storage policy. The
//! gateway service gives the SCP a [`StoreHandler`] (which spools and
//! fsyncs before returning, so success is only ever sent for durable data)
//! and calls the SCU functions to deliver and to query/retrieve.
//!
//! Logs carry AE titles, addresses, statuses and counts; never UIDs or
//! other values from data sets.

pub mod command;
mod error;
pub mod link;
pub mod scp;
pub mod scu;
mod storage_classes;
pub mod tls;
mod validate;

pub use command::{status, CommandField, CommandSet};
pub use error::DimseError;
pub use scp::{
    accepted_abstract_syntaxes, accepted_transfer_syntaxes, write_part10_header, Scp, ScpConfig,
    StoreHandler, StoreRefusal, StoreRequest,
};
pub use scu::{
    echo, find_studies, move_study, read_part10_info, store_files, ClientTls, MoveOutcome,
    Part10Info, Peer, StoreOutcome, StoreSession, Undeliverable,
};
pub use storage_classes::STORAGE_SOP_CLASSES;
pub use validate::{check_head, Encoding, HeadError};
