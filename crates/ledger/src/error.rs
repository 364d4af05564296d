//! The one error type of the crate. Every message says what is wrong and what to do.

use crate::{AccountId, IdempotencyKey, Micros, RequestState, TransferId};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "amount overflow in {operation}: the result does not fit in 64-bit micro-units; split the amount or check the input"
    )]
    Overflow { operation: &'static str },

    #[error("invalid {field} = {value}: {reason}")]
    InvalidInput { field: &'static str, value: String, reason: &'static str },

    #[error("invalid idempotency key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("transfer amount {amount} must be positive; use the opposite direction for a refund")]
    NonPositiveAmount { amount: Micros },

    #[error("amount {amount} is more than the largest single amount allowed ({max}); split it into smaller ones")]
    AmountTooLarge { amount: Micros, max: Micros },

    #[error("request {id} does not exist; list the requests to find its id")]
    RequestNotFound { id: u64 },

    #[error(
        "reference {reference:?} was already used by request {existing} with another amount; \
         a retry must repeat the original request exactly, a new request needs a new reference"
    )]
    RequestConflict { reference: String, existing: u64 },

    #[error("request {id} was {state} already; a decision cannot be changed")]
    RequestDecided { id: u64, state: RequestState },

    #[error("account {account} has {max} requests waiting for the operator already; wait until they are decided")]
    TooManyPendingRequests { account: AccountId, max: usize },

    #[error("a transfer must move money between two different accounts, not from {account} to itself")]
    SameAccount { account: AccountId },

    #[error("account {account} does not exist; open it with Ledger::open_account when the party registers")]
    AccountNotFound { account: AccountId },

    #[error(
        "account {account} would go {shortfall} past its limit (available {available}, limit {overdraft_max} below zero, \
         needs {amount}); a payment into the account or a higher limit is needed"
    )]
    OverLimit { account: AccountId, available: Micros, overdraft_max: Micros, amount: Micros, shortfall: Micros },

    #[error(
        "idempotency key {key} was already used by transfer {existing} with different content; \
         a retry must repeat the original request exactly, a new request needs a new key"
    )]
    IdempotencyConflict { key: IdempotencyKey, existing: TransferId },

    #[error("reservation {reservation} does not exist; settle or void only the id a Reserve transfer returned")]
    ReservationNotFound { reservation: TransferId },

    #[error(
        "invalid journal record {record}: {reason}; the journal writer has a bug, fix the record before billing it"
    )]
    InvalidRecord { record: u64, reason: String },

    #[error("job {job} of journal record {record} has no terms; pass the terms of every job whose records are billed")]
    MissingJobTerms { job: String, record: u64 },

    #[error("invalid billing window {from_ms}..{to_ms}: {reason}")]
    InvalidWindow { from_ms: u64, to_ms: u64, reason: String },

    #[error(
        "the ledger is not balanced: posted debits {debits_posted} vs credits {credits_posted}, pending debits \
         {debits_pending} vs credits {credits_pending}; money was created or lost by a bug, stop billing and investigate"
    )]
    Unbalanced { debits_posted: Micros, credits_posted: Micros, debits_pending: Micros, credits_pending: Micros },

    #[error("ledger storage failed: {0}; roll the transaction back and retry it")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl LedgerError {
    /// Wrap an error of a storage backend (SQLite, PostgreSQL) for the `LedgerStore` trait.
    pub fn storage<E: std::error::Error + Send + Sync + 'static>(error: E) -> LedgerError {
        LedgerError::Storage(Box::new(error))
    }
}
