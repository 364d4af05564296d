//! The wire: the message catalogue (P8.6), the HTTP request and response bodies of the message
//! and data channels (P8.1-P8.5), request signatures (P4.1), element tickets (P4.4), and the
//! polling back-off. The only crate where wire serialization is defined.

pub mod auth;
pub mod backoff;
pub mod market;
pub mod market_data;
pub mod messages;
pub mod ops;
pub mod payload;
pub mod ticket;
pub mod trace;
pub mod wire;

pub use messages::*;
pub use payload::Payload;
pub use trace::TraceParent;
