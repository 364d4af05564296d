//! The Rust client library (API boundary).
//!
//! - [`Transport`]: signed HTTP requests and the data channel (element upload and download).
//!   Executables are stripped of names and custom sections before they leave ([`strip_executable`],
//!   P6.3).
//! - [`Channel`]: the reliable, sequence-numbered message channel of one session (P8.3-P8.5),
//!   shared with the compute engine.
//! - [`Client`]: jobs for people and programs: create, add tasks (streamed, so a job of
//!   millions of tasks needs bounded memory), launch, watch results, stop, resume, remove.
//! - [`Accounts`] and [`MoneyDesk`]: money: balances, deposit and payout requests, and an
//!   operator's decisions on them.
//! - [`Market`]: the bartering market: offers, requests and search, negotiations, contracts
//!   signed with the party's key.

mod channel;
mod client;
pub mod compress;
mod endpoint;
mod error;
mod market;
mod money;
mod strip;
mod transport;

pub use channel::{Channel, ChannelConfig, Received};
pub use client::{Client, JobEvent, JobWatch};
pub use endpoint::{Endpoint, ServerTrust};
pub use error::{ClientError, ErrorClass, ProblemLog, Unreachable};
pub use market::{Market, open_blob, seal_blob};
pub use money::{Accounts, MoneyDesk};
pub use reqwest::Method;
pub use strip::{InvalidModule, strip_executable};
pub use transport::Transport;

pub use idlegrid_protocol as protocol;
pub use idlegrid_types as types;
