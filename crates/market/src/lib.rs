//! The bartering market's pure core (D1-D8, X6 of FEATURES.md; the seed
//! `resource-bartering-system.txt`). No I/O, no clock (every function that needs the time takes
//! `now_ms`), no global randomness (draws take a [`idlegrid_random::RandomSource`]): the server, the
//! store, the CLI and the engines call it and carry out what it decides.
//!
//! The model follows the seed's process flow (its FIG.-9, 9A-9D):
//!
//! 1. **Registration and update** (D1, D3; [`registration`]): a peer declares its resources
//!    of the seven categories ([`schema`], D2) and the private share of each it keeps; the
//!    coordinator classifies them ([`resource`]; measured figures beat declared ones) and
//!    values them ([`valuation`]) into quantified [`registration::Entry`]s, and reports back.
//! 2. **Listing** ([`offer`]): an owner lists part of an entry as an [`offer::Offer`], never
//!    more than the offerable part; requesters describe what they want as an
//!    [`offer::Request`]. Both sides carry requirements and ranks in one expression language
//!    ([`expr`], X6), which the scheduler also uses for providers' requirements on jobs.
//! 3. **Bartering search** (D4; [`search`]): an index over offers returns ranked, paged
//!    candidates for a request, two-sided, in milliseconds over a million offers (D8).
//! 4. **Bartering and match** (D5; [`search::Index::best_match`], [`negotiation`]): the
//!    closest matched pair, then automatic negotiation by alternating offers or negotiation
//!    with a person in the loop, as a serializable state machine stepped by pure functions.
//! 5. **Contract** (D5, D6; [`contract`]): the agreement in one of the three barter modes,
//!    signed by both parties' Ed25519 keys over canonical bytes.
//! 6. **Execution and settlement** (D7; [`settlement`]): metering, escrow and pro-rata
//!    settlement with idempotency keys, proofs of storage, sweepstakes draws.
//!
//! [`sim`] runs the whole flow for thousands of peers (`idlegrid sim market`), and
//! `cargo bench -p idlegrid-market` measures search and match at 10^4 to 10^6 offers.
//!
//! Amounts are the ledger's [`idlegrid_ledger::Micros`] (integer micro-credits).

pub mod contract;
pub mod execution;
pub mod expr;
pub mod negotiation;
pub mod offer;
pub mod proofs;
pub mod registration;
pub mod relay;
pub mod resource;
pub mod schema;
pub mod search;
pub mod settlement;
pub mod sim;
pub mod valuation;

pub use contract::{BarterMode, Contract, ContractError, ContractId, SignedContract};
pub use execution::{ExecEvent, ExecState, Execution};
pub use expr::{Attributes, Expr, ParseError, Value, eval};
pub use negotiation::{Event, Negotiation, NegotiationError, NegotiationId};
pub use offer::{Listing, Offer, OfferId, Request, plan_offer};
pub use registration::{Entry, Registration, RegistrationReport, register};
pub use resource::{Measurements, Provenance, Resource, ResourceDeclaration};
pub use schema::Category;
pub use search::{Candidate, Index, SearchPage};
pub use valuation::{Valuation, ValuationConfig, valuate};
