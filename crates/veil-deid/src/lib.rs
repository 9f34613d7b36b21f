//! Veil's de-identification engine (PS3.15 Annex E).
//!
//! The data path for one object is `decide` then `apply`, done by one walk
//! over the header tree ([`Deidentifier::run`]) so that `veil explain` prints
//! exactly the decisions that `veil deid` applies. Each decision names the
//! rule that caused it (a Table E.1-1 row, an option column, a recipe
//! override or a Veil rule), never a value.

mod clean;
mod engine;
pub mod key;
pub mod pseudonym;

pub use clean::{Cleaner, Harvest, MASK};
pub use engine::{
    mark_pixel_stage, Act, Decision, Deidentified, Deidentifier, Policy, PolicyError,
    DEFACE_PENDING,
};
pub use key::{Key, KeyError};
