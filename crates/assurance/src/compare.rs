//! Deciding whether two results agree. By default byte for byte (digest equality); a job may
//! supply a validator (a wasm element exporting a compare function) for results that may differ
//! slightly, which the server runs in the sandbox behind `ResultComparator`.

use idlegrid_types::{AssignmentId, ElementHash};
use serde::{Deserialize, Serialize};

/// SHA-256 of a replica's final outcome: the result bytes for a success; for a deterministic
/// failure (`FailureKind::is_deterministic`), a canonical encoding of the failure, so that
/// replicas can agree that the task fails. Transient ends (engine lost, killed) are no result:
/// report them with `TaskAssurance::replica_lost`.
pub type ResultDigest = ElementHash;

/// A result as the comparator sees it: the server finds the bytes by assignment or digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReturnedResult {
    pub assignment: AssignmentId,
    pub digest: ResultDigest,
}

/// The outcome of comparing two results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Equivalent,
    Different,
    /// The validator trapped, ran out of time or memory, or returned garbage. Never counts as
    /// agreement: a failing validator can only leave a task inconclusive, never accept it.
    Failed,
    /// Not known yet: the server will run the validator and record the outcome with
    /// `TaskAssurance::record_comparison`.
    Pending,
}

/// Compares two results of the same task. Called with the earlier replica first. Outcomes are
/// cached in the task's state, so each pair is compared once.
pub trait ResultComparator {
    fn compare(&mut self, first: &ReturnedResult, second: &ReturnedResult) -> Comparison;
}

/// The default: results agree if and only if their bytes are equal.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteEquality;

impl ResultComparator for ByteEquality {
    fn compare(&mut self, first: &ReturnedResult, second: &ReturnedResult) -> Comparison {
        if first.digest == second.digest { Comparison::Equivalent } else { Comparison::Different }
    }
}

/// For a validator the server runs outside the decision (on a blocking thread, after the
/// transaction): every comparison not yet recorded is `Pending`, so `decide` answers
/// `Action::Compare` with the pairs to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeferredValidator;

impl ResultComparator for DeferredValidator {
    fn compare(&mut self, _first: &ReturnedResult, _second: &ReturnedResult) -> Comparison {
        Comparison::Pending
    }
}

/// Any closure is a comparator (tests, a synchronous sandbox call).
impl<F: FnMut(&ReturnedResult, &ReturnedResult) -> Comparison> ResultComparator for F {
    fn compare(&mut self, first: &ReturnedResult, second: &ReturnedResult) -> Comparison {
        self(first, second)
    }
}
