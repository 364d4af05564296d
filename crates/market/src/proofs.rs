//! Storage sold on the market, proven over time (D7): the schedule of proof-of-storage
//! challenges for one contract's blob, as a pure state machine the server steps with the time
//! and the engine's answers.
//!
//! - When the buyer hands the blob over, the server draws the challenges at once
//!   ([`crate::settlement::prepare_challenges`]) and keeps only them and their answers
//!   ([`StorageProofs::new`]): it need not keep the blob.
//! - Every `period_ms` [`StorageProofs::tick`] issues the next challenge; an answer that does not
//!   arrive within `answer_ms` fails the contract.
//! - [`StorageProofs::answer`] checks an answer: a correct one proves the time since the last
//!   proof (a [`MeterRecord`] in milliseconds, numbered from 1); a wrong one fails the contract
//!   at the end of the time last proven, so the settlement pays the share of time proven.
//! - An answer to a challenge not outstanding (a repeat, or a late one) changes nothing.

use serde::{Deserialize, Serialize};

use crate::contract::{Contract, ContractId};
use crate::settlement::{Challenge, MeterRecord, PreparedChallenge};

/// Most challenges drawn for one blob (the server keeps them with the contract).
pub const CHALLENGES_MAX: usize = 1000;

/// The challenge outstanding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outstanding {
    /// Index into the prepared challenges, from 0.
    pub number: u32,
    pub issued_ms: u64,
}

/// A contract's stored blob and where its proofs stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageProofs {
    pub contract: ContractId,
    /// The blob's element (hex SHA-256) and size.
    pub element: String,
    pub size: u64,
    /// Drawn when the blob was handed over; never sent whole.
    pub prepared: Vec<PreparedChallenge>,
    pub period_ms: u64,
    pub answer_ms: u64,
    /// Challenges issued so far (the next one's number).
    pub issued: u32,
    pub outstanding: Option<Outstanding>,
    /// When the last challenge was issued (or the blob handed over).
    pub last_issued_ms: u64,
    /// The time up to which storage is proven (from the contract's start).
    pub proven_until_ms: u64,
    /// The contract's end: nothing is proven past it.
    pub ends_ms: u64,
    pub passed: u64,
    pub failed: u64,
}

/// What the server must do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofStep {
    /// Nothing now.
    Idle,
    /// Send this challenge to the storing engine.
    Issue { number: u32, challenge: Challenge },
    /// A correct answer: record this metering.
    Proven(MeterRecord),
    /// Fail the contract at `at_ms` (the end of the time proven).
    Fail { at_ms: u64, reason: String },
}

/// How often to challenge so that `prepared` challenges last a contract of `duration_ms`.
pub fn challenge_period(duration_ms: u64, period_ms: u64) -> u64 {
    period_ms.max(duration_ms / CHALLENGES_MAX as u64).max(1)
}

/// How many challenges a contract of `duration_ms` needs at `period_ms` (one more for a late
/// start, at most [`CHALLENGES_MAX`]).
pub fn challenges_needed(duration_ms: u64, period_ms: u64) -> usize {
    ((duration_ms / period_ms.max(1)) as usize).saturating_add(1).clamp(1, CHALLENGES_MAX)
}

impl StorageProofs {
    /// The blob is handed over at `now_ms`; `prepared` are its challenges.
    pub fn new(
        contract: &Contract,
        element: String,
        size: u64,
        prepared: Vec<PreparedChallenge>,
        period_ms: u64,
        answer_ms: u64,
        now_ms: u64,
    ) -> StorageProofs {
        StorageProofs {
            contract: contract.id,
            element,
            size,
            prepared,
            period_ms: period_ms.max(1),
            answer_ms: answer_ms.max(1),
            issued: 0,
            outstanding: None,
            last_issued_ms: now_ms,
            proven_until_ms: contract.starts_ms,
            ends_ms: contract.ends_ms(),
            passed: 0,
            failed: 0,
        }
    }

    /// The time passes: fail an answer overdue, or issue the next challenge when due.
    pub fn tick(&mut self, now_ms: u64) -> ProofStep {
        if let Some(outstanding) = &self.outstanding {
            if now_ms > outstanding.issued_ms.saturating_add(self.answer_ms) {
                let number = outstanding.number;
                self.outstanding = None;
                self.failed += 1;
                return ProofStep::Fail {
                    at_ms: self.proven_until_ms,
                    reason: format!("the seller's engine did not answer storage challenge {} in time", number + 1),
                };
            }
            return ProofStep::Idle;
        }
        let due = now_ms >= self.last_issued_ms.saturating_add(self.period_ms);
        let within = self.proven_until_ms < self.ends_ms;
        let Some(prepared) = self.prepared.get(self.issued as usize).filter(|_| due && within) else {
            return ProofStep::Idle;
        };
        let number = self.issued;
        let challenge = prepared.challenge.clone();
        self.issued += 1;
        self.last_issued_ms = now_ms;
        self.outstanding = Some(Outstanding { number, issued_ms: now_ms });
        ProofStep::Issue { number, challenge }
    }

    /// The engine answers challenge `number` at `now_ms`.
    pub fn answer(&mut self, number: u32, answer: &str, now_ms: u64) -> ProofStep {
        let Some(outstanding) = self.outstanding.as_ref().filter(|o| o.number == number) else {
            return ProofStep::Idle;
        };
        let prepared = &self.prepared[outstanding.number as usize];
        self.outstanding = None;
        if !crate::settlement::check_answer(prepared, answer) {
            self.failed += 1;
            return ProofStep::Fail {
                at_ms: self.proven_until_ms,
                reason: format!(
                    "the seller's engine failed storage challenge {}: the blob is not kept whole",
                    number + 1
                ),
            };
        }
        self.passed += 1;
        let from_ms = self.proven_until_ms;
        let to_ms = now_ms.clamp(from_ms, self.ends_ms.max(from_ms));
        self.proven_until_ms = to_ms;
        ProofStep::Proven(MeterRecord {
            contract: self.contract,
            seq: self.passed,
            from_ms,
            to_ms,
            units: to_ms - from_ms,
        })
    }
}

#[cfg(test)]
#[path = "proofs_tests.rs"]
mod tests;
