//! Result assurance (P6.1, P6.2, X1): validation policies, the per-task replication state
//! machine, provider records and Sarmenta's credibility, spot checks, quarantine, and a
//! deterministic saboteur simulation. Pure: no I/O, no clock, no threads; randomness is passed
//! in (`RandomSource`), and so are the providers' records.
//!
//! - `ValidationPolicy` (per job): `None`, `Quorum` (BOINC), `Adaptive` (BOINC's adaptive
//!   replication), `Credibility` (Sarmenta).
//! - `TaskAssurance` (per task, serde): events in, `Decision` out (launch, compare, accept,
//!   inconclusive, plus judgements of replicas and replicas to cancel).
//! - `ProviderRecord` (per provider, serde) and `CredibilityModel`: counts, streaks,
//!   quarantine; provider and result credibility.
//! - `SpotCheckPolicy`: whether the next assignment to a provider is a test task;
//!   `judge_spot_check`; `ProviderRecord::apply_spot_check`.
//! - `plan_quarantine`: what to cancel, re-check and withhold when a provider is quarantined.
//! - `sim`: the saboteur simulation (`simulate`, Markdown `Display`), and the example
//!   `cargo run --release -p idlegrid-assurance --example saboteurs`.
//!
//! # Wiring it into the server
//!
//! State: a `ProviderRecord` per provider, a `TaskAssurance` per task (with the task row), the
//! job's `ValidationPolicy` and validator (if any), one `CredibilityModel`, `SpotCheckPolicy` and
//! `QuarantineRule` for the server. Each step runs in the transaction of its event:
//!
//! 1. **Job created**: `policy.validate()`; refuse the job on error.
//! 2. **Task launched**: `TaskAssurance::new(policy)`, then `decide`.
//! 3. **Every decision**: apply each `Judgement` to its provider's record
//!    (`ProviderRecord::apply_judgement(kind, previous)`), pay those that `is_paid()` and withhold
//!    the others, send `RemoveTask` for `cancel`, then act:
//!    - `Launch { replicas }`: queue that many placements; the scheduler must exclude
//!      `TaskAssurance::providers()` and quarantined providers. Record each placement with
//!      `replica_launched(assignment, provider)`.
//!    - `Compare { pairs }`: run the job's validator on each pair (the sandbox, outside the
//!      transaction), record each outcome with `record_comparison`, and decide again. A trap, a
//!      timeout or garbage is `Comparison::Failed`, which never counts as agreement.
//!    - `Accept(acceptance)`: deliver `acceptance.canonical` as the task's final result
//!      (`Revision::First`), or nothing (`Confirmed`), or a correction (`Replaced`).
//!    - `Inconclusive(..)`: the client gets "inconclusive" (and a withdrawal if `withdrawn`).
//!    - `Wait`, `Settled`: nothing.
//! 4. **Before each assignment to a provider**: `SpotCheckPolicy::next_assignment(record, ..)`;
//!    on `SpotCheck` the server sends a test task with a known answer (same shape as a real one:
//!    an assignment ID, a ticket, elements) instead.
//! 5. **Replica result arrived** (`TaskStatus` final): `replica_result(assignment, digest)`
//!    with the SHA-256 of the outcome (`ResultDigest`), then `decide`. A replica that ends
//!    without a result (engine lost, handed back): `replica_lost`, then `decide`.
//! 6. **Test task answered**: `judge_spot_check(known, answer)` (or
//!    `SpotCheckOutcome::from_comparison` with the job's validator), then
//!    `record.apply_spot_check(outcome, &rule)`. On `SpotCheckConsequence::Quarantined`: load the
//!    provider's contributions, `plan_quarantine`, cancel, withhold, and `decide` every task of
//!    `recheck` (their decisions discard the provider's results and re-verify).
//!
//! `decide` needs `DecisionContext`: the records of `providers()` (an error names a missing
//! one), the model, the comparator (`ByteEquality` or the job's validator, e.g.
//! `DeferredValidator`), a random source, and optionally the typical credibility of active
//! providers (the median of `CredibilityModel::provider_credibility`), which sizes the
//! credibility policy's launches.

mod compare;
mod credibility;
mod error;
mod quarantine;
mod record;
pub mod sim;
mod spot_check;
mod task;
#[cfg(test)]
mod task_tests;

pub use compare::{ByteEquality, Comparison, DeferredValidator, ResultComparator, ResultDigest, ReturnedResult};
pub use credibility::{CredibilityModel, group_log_odds, log_odds, result_credibilities, result_margin};
pub use error::AssuranceError;
pub use idlegrid_random::RandomSource;
pub use idlegrid_types::{REPLICAS_LIMIT, ValidationPolicy};
pub use quarantine::{Contribution, QuarantinePlan, TaskKey, plan_quarantine};
pub use record::{
    JudgementKind, ProviderRecord, ProviderRecords, QuarantineReason, QuarantineRule, SpotCheckConsequence,
    SpotCheckOutcome,
};
pub use sim::{PolicyUnderTest, SimConfig, SimReport, SimRow, simulate};
pub use spot_check::{NextAssignment, SpotCheckPolicy, judge_spot_check};
pub use task::{
    Acceptance, Action, Decision, DecisionContext, Inconclusive, InconclusiveReason, Judgement, ReplicaView, Revision,
    TaskAssurance,
};
