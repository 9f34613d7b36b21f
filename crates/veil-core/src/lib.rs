//! Veil's shared vocabulary.
//!
//! Every other crate speaks in these types. Nothing here touches disk or
//! knows the PS3.15 tables: the point is that the de-identification engine,
//! the verifier and the reports can agree on *names* (tag paths, options,
//! reasons) without sharing *rules*.

mod option;
mod phi;
mod reason;
mod tag;

pub use option::{ProfileOption, UnknownOption};
pub use phi::Phi;
pub use reason::QuarantineReason;
pub use tag::{Tag, TagPath, TagPattern};
