//! Durable state of the server behind one interface: [`Store`] runs a closure in a transaction
//! and hands it a [`Tx`] of domain operations. [`Tx`] is one trait per domain at once:
//! [`SessionsTx`] (parties, sessions and their outboxes, revocations), [`SystemTx`] (metadata,
//! logs, census), [`ProvidersTx`] (providers, profiles, result records), [`ElementsTx`]
//! (elements and grants), [`JobsTx`] (jobs, tasks, assignments, results, attachments, result
//! assurance) and [`AccountsTx`] (ledger, journal of work, notices, client settings), and
//! through `Tx::market()` the market's offers, requests, negotiations and contracts (and the
//! smaller domains `web`, `watches`, `caches` and `deliveries` likewise). Each domain
//! is a module (`<domain>.rs`) implemented side by side in `sqlite/<domain>.rs` and
//! `postgres/<domain>.rs` and checked by `conformance/<domain>.rs`; `sqlite.rs` and
//! `postgres.rs` keep the connection, the migrations and the row helpers. The coordinator is
//! written against [`Tx`] only; SQLite is the embedded implementation, PostgreSQL the shared
//! one (several server instances on one database), and [`AnyStore`] is either, chosen by
//! `--database`. Every implementation passes the same [`conformance`] suite.
//!
//! Architecture invariant: the store never reads the clock; callers pass `now_ms`.

mod accounts;
mod any;
mod caches;
mod deliveries;
mod elements;
mod jobs;
mod market;
mod model;
mod postgres;
mod providers;
mod sessions;
mod sqlite;
mod system;
mod tx;
mod watches;
mod web;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use self::postgres::PostgresStore;
pub use any::{AnyStore, DatabaseLocation};
pub use caches::CacheTx;
pub use deliveries::{DeliveryCounts, DeliveryRow, DeliveryState, DeliveryTarget, DeliveryTx};
pub use market::{ContractRow, ExecutionRow, MarketTable, MarketTx, NegotiationRow, OfferRow, RequestRow};
pub use model::*;
pub use sqlite::SqliteStore;
pub use tx::Tx;
pub use watches::{InterimMark, WatchRow, WatchTx};
pub use web::{InstanceReport, ResultBucket, TaskLine, WebEntryKind, WebEntryRow, WebTx};
pub use {
    accounts::AccountsTx, elements::ElementsTx, jobs::JobsTx, providers::ProvidersTx, sessions::SessionsTx,
    system::SystemTx,
};

/// The transaction's traits, to bring every domain's methods into scope at once:
/// `use idlegrid_store::prelude::*;` (only needed where a concrete transaction type, not
/// `dyn Tx`, calls them).
pub mod prelude {
    pub use crate::caches::CacheTx;
    pub use crate::deliveries::DeliveryTx;
    pub use crate::market::MarketTx;
    pub use crate::watches::WatchTx;
    pub use crate::web::WebTx;
    pub use crate::{AccountsTx, ElementsTx, JobsTx, ProvidersTx, SessionsTx, SystemTx, Tx};
}

/// A failure of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    /// A rule of the domain (the ledger's, result assurance's) refused the operation inside a
    /// transaction: not a failure of the storage itself.
    #[error("{0}")]
    Domain(DomainError),
}

/// A domain rule's refusal, with whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    pub kind: DomainKind,
    pub message: String,
}

/// What kind of refusal a [`DomainError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    /// The request is invalid: fix it.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request contradicts the state it met.
    Conflict,
    /// Over a limit (an account's, a queue's).
    Limit,
    /// A rule the server's own logic must keep was broken: the server's fault, not the caller's.
    Broken,
}

impl StoreError {
    /// A domain rule's refusal of `kind`.
    pub fn domain(kind: DomainKind, message: impl Into<String>) -> StoreError {
        StoreError::Domain(DomainError { kind, message: message.into() })
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::FromSqlConversionFailure(_, _, cause) => StoreError::Corrupt(cause.to_string()),
            rusqlite::Error::InvalidColumnType(_, name, kind) => {
                StoreError::Corrupt(format!("column {name} holds a {kind} value"))
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A database that runs closures in transactions. A closure that returns `Err` rolls back.
pub trait Store: Send + Sync + 'static {
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E>;

    /// A transaction that only reads (it may run concurrently with others where supported).
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        self.write(f)
    }

    /// Like [`Store::write`], for a closure that may run more than once: where transactions run
    /// side by side (PostgreSQL), one that conflicted with another is rolled back and `f` runs
    /// again on what the other committed. Where writers take turns (SQLite), `f` runs once.
    fn write_retrying<R, E: From<StoreError>>(&self, f: impl FnMut(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        self.write(f)
    }
}
