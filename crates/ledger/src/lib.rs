//! Idlegrid's money: a double-entry ledger in integer micro-units, the seed's pricing and
//! payment formulas, billing from the journal of work, limits, statements and barter credits
//! (P7.1-P7.7). Pure: no I/O, no clock (times are passed in), no threads.
//!
//! - `Micros`: money, checked arithmetic, `12.345678`.
//! - `Ledger` over a `LedgerStore` (in memory: `MemoryStore`; the store crate implements it
//!   over SQL): accounts, transfers with idempotency keys, reservations settled in parts or
//!   voided, account limits, `check_balanced`.
//! - `PricingConfig`: the formulas of P7.2-P7.5.
//! - `plan_billing` (pure) and `Ledger::apply_billing`: journal records to transfers, exactly
//!   once, with maximum costs and account limits reported.
//! - `client_statement`, `provider_statement`, `statement_csv`.
//!
//! # Wiring it into the server
//!
//! Every step runs in one store transaction with `Ledger::new(&mut tx)`:
//!
//! 1. Once: `open_system_accounts`. On registration: `open_account(AccountId::Party(id), ..)`
//!    with the client's limit, or `Some(Micros::ZERO)` for a provider.
//! 2. Launch of a job: `reserve_job(job, payer, cost_max, ReservationKind::Maximum, now)`, or
//!    an estimate (`PricingConfig::estimate_cost`) with `ReservationKind::Estimate`. On
//!    `LedgerError::OverLimit` the job is not launched.
//! 3. Journal (P7.1): one `WorkRecord` per assignment, written at launch and updated at
//!    cancellation and conclusion, in the transaction of that state change.
//! 4. Billing pass, at every increment (and after a restart): `BillingWindow::closed_until(
//!    watermark, now, &config)`, the records not yet `is_fully_billed` and launched before the
//!    window's end, their jobs' `JobTerms`; `plan_billing` then `apply_billing`; save the new
//!    watermark and mark fully billed records in the same transaction. Act on the report:
//!    `jobs_to_stop`, `accounts_over_limit` (notify, stop the client's jobs), `capped`.
//! 5. After a job's last record is fully billed: `release_job`.
//! 6. Money in and out (`requests`): a client's `request_deposit` or a provider's
//!    `request_payout` (reserved against its available balance) waits for an operator's
//!    `approve_request` or `reject_request`; an operator may also `credit` an account with a
//!    reference. After money comes in, if the account is no longer `is_over_limit`, resume the
//!    client's jobs. Every amount is at most `AMOUNT_MICROS_MAX`.
//! 7. Statements: `LedgerStore::transfers_of_account`, then `client_statement` or
//!    `provider_statement`, and `statement_csv`.
//!
//! # Barter
//!
//! Every party has one account, whatever its role. A provider's engines earn into it;
//! `Ledger::barter_credit` moves earned credit to a client account (refused beyond what was
//! earned: a provider account has a limit of zero), or a job's `JobTerms::payer` names the
//! provider's account so the job is paid from the earnings directly.

mod billing;
mod error;
mod ledger;
mod model;
mod money;
pub mod pricing;
mod requests;
mod statement;
mod store;

pub use billing::*;
pub use error::LedgerError;
pub use idlegrid_types::limits::AMOUNT_MICROS_MAX;
pub use ledger::{Ledger, TransferOutcome, check_amount, check_balanced};
pub use model::*;
pub use money::{MICROS_PER_UNIT, Micros};
pub use pricing::{CostEstimate, PricingConfig, ProviderPayModel};
pub use requests::*;
pub use statement::*;
pub use store::{LedgerStore, LedgerTotals, MemoryStore};
