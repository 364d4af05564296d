//! The shared vocabulary of Idlegrid: identifiers, job properties, task and job states.
//! No I/O, no clock, no async: every other crate can depend on it.

mod ids;
mod job;
mod state;
mod text;
mod validation;

pub use ids::*;
pub use job::*;
pub use state::*;
pub use text::{Untrusted, escape_untrusted};
pub use validation::{InvalidPolicyParameter, REPLICAS_LIMIT, ValidationPolicy};
