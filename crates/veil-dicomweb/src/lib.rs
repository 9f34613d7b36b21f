//! DICOMweb for Veil's gateway (`veil serve`): STOW-RS in and out, bearer
//! token authentication, `/healthz` and Prometheus `/metrics`.
//!
//! This crate knows nothing of consent, de-identification or the spool:
//! the gateway hands it an [`InstanceSink`] (its durable intake) and a
//! shared [`Metrics`] it updates itself, and uses [`StowClient`] as the
//! delivery for `dicomweb+http(s)://` destinations. Logs name routes,
//! counts and reason codes only, never a UID, a value or a token.

pub mod auth;
pub mod client;
pub mod meta;
pub mod metrics;
pub mod server;
pub mod stow;

pub use auth::{generate_token, Access, AuthError, NewToken, TokenEntry, TokenHash, Tokens};
pub use client::{ClientError, StowClient};
pub use meta::{FileMeta, MetaError};
pub use metrics::Metrics;
pub use server::{
    Background, InstanceSink, ReceivedInstance, Server, ServerConfig, ServerError, ROUTE_HEADER,
};
pub use stow::{FailureReason, SopRef, StowResponse};
