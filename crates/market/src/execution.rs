//! A signed contract carried out (D7): its execution as a pure state machine the server steps
//! with the messages it receives, whatever their order and however often they come.
//!
//! ```text
//! signed --start--> active --deliver--> delivered --settle--> settled
//!                     |                                 ^
//!                     +------fail------> failed --------+
//! ```
//!
//! - **Start** ([`Execution::start`]) returns the escrow transfers ([`crate::settlement::plan_escrow`])
//!   and the platform credits the seller gives (a money resource of kind `credit`,
//!   [`credits_given`]): a contract that gives only money or credits is delivered at once.
//! - **Metering**: the delivering side reports [`MeterRecord`]s, numbered from 1. A number seen
//!   again with the same figures is counted once (a repeated message); with other figures it is
//!   refused. Records may arrive in any order. What is contracted is measured in
//!   [`metering_units`]: milliseconds of service for a resource with a duration, one delivery
//!   otherwise.
//! - **Delivered** when the buyer confirms, or when the contract's time is over (the share
//!   delivered is then what was metered); **failed** when the seller stops delivering (a
//!   report, or its engine disappears): the share delivered is what was metered, or, with no
//!   record, the share of the time until the failure.
//! - **Settle** splits the escrow pro rata ([`crate::settlement::plan_settlement`]); settling
//!   again moves nothing. Every transfer carries a key derived from the contract, so even a plan
//!   carried out twice (a restart between planning and recording) pays once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use idlegrid_ledger::Micros;

use crate::contract::{Consideration, Contract, ContractId};
use crate::schema::Category;
use crate::settlement::{
    Account, Fraction, MeterRecord, Transfer, delivered_by_time, plan_escrow, plan_settlement, settlement_key,
};

/// Most metering records one contract keeps (a reporter sends one per interval).
pub const RECORDS_MAX: usize = 10_000;

/// Where a contract's execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    Active,
    Delivered,
    Failed,
    Settled,
}

impl ExecState {
    pub fn name(self) -> &'static str {
        match self {
            ExecState::Active => "active",
            ExecState::Delivered => "delivered",
            ExecState::Failed => "failed",
            ExecState::Settled => "settled",
        }
    }
}

/// A contract's execution: what was metered and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub contract: ContractId,
    pub state: ExecState,
    /// Units the whole contract is worth (see [`metering_units`]).
    pub units_contracted: u64,
    /// What they are (`ms` of service or `delivery`).
    pub unit: String,
    /// Metering records by number (each once).
    pub records: BTreeMap<u64, MeterRecord>,
    /// Records received again (ignored).
    pub repeated: u64,
    pub started_ms: u64,
    /// When delivery ended (delivered or failed).
    pub ended_ms: Option<u64>,
    /// The buyer confirmed delivery in full.
    #[serde(default)]
    pub confirmed: bool,
    /// Why it failed.
    pub failure: Option<String>,
    /// The share the settlement paid (set at settlement).
    pub fraction: Option<Fraction>,
    pub settled_ms: Option<u64>,
}

/// What happens to an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecEvent {
    /// The seller reports use.
    Meter { record: MeterRecord },
    /// The buyer confirms delivery in full.
    Confirm { at_ms: u64 },
    /// The contract's time is over: delivered as far as metered.
    TimeUp { at_ms: u64 },
    /// The seller stopped delivering.
    Fail { at_ms: u64, reason: String },
    /// Split the escrow.
    Settle { at_ms: u64 },
}

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Ledger transfers to make (each with its key).
    pub transfers: Vec<Transfer>,
    /// The message changed nothing (seen before, or the contract was past it).
    pub repeated: bool,
    /// The state changed (notices go to both parties).
    pub changed: bool,
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("metering record {seq} was received before with other figures: the first is kept")]
    ConflictingRecord { seq: u64 },
    #[error("metering record {seq} is for contract {found}, not {expected}")]
    WrongContract { seq: u64, expected: ContractId, found: ContractId },
    #[error("metering record {seq} is malformed: {reason}")]
    BadRecord { seq: u64, reason: &'static str },
    #[error("contract {contract} is {state}: {what} is no longer possible")]
    Closed { contract: ContractId, state: &'static str, what: &'static str },
    #[error("contract {contract} keeps at most {RECORDS_MAX} metering records: report longer intervals")]
    TooManyRecords { contract: ContractId },
    #[error("contract {contract} is still active: it can be settled once delivered or failed")]
    NotEnded { contract: ContractId },
}

/// What a contract is measured in: milliseconds of service when the seller gives a resource
/// with a duration (computing, memory, storage, internet access, peripherals), else one
/// delivery (a file, money).
pub fn metering_units(contract: &Contract) -> (u64, &'static str) {
    let timed = contract.seller.gives.iter().any(|given| match given {
        Consideration::Resource { resource } => resource.number("duration_s").is_some(),
        Consideration::Money { .. } => false,
    });
    if timed { (contract.duration_ms.max(1), "ms") } else { (1, "delivery") }
}

/// Platform credits the seller gives as a money resource (`kind=credit`, `amount` in credits):
/// ledger transfers to the buyer at the start, each with its key.
pub fn credits_given(contract: &Contract) -> Vec<Transfer> {
    let mut transfers = Vec::new();
    for (n, given) in contract.seller.gives.iter().enumerate() {
        let Consideration::Resource { resource } = given else { continue };
        if resource.category() != Category::Money || resource.text("kind") != Some("credit") {
            continue;
        }
        let micros = (resource.number("amount").unwrap_or(0.0) * 1e6).round();
        if micros >= 1.0 && micros < i64::MAX as f64 {
            transfers.push(Transfer {
                key: settlement_key(contract.id, &format!("credit:seller:{n}")),
                from: Account::Party(contract.seller.party.clone()),
                to: Account::Party(contract.buyer.party.clone()),
                amount: Micros::new(micros as i64),
            });
        }
    }
    transfers
}

/// Whether everything the seller gives is delivered at the start (platform credits): the
/// contract is then delivered at once.
fn delivered_at_start(contract: &Contract) -> bool {
    !contract.seller.gives.is_empty()
        && contract.seller.gives.iter().all(|given| match given {
            Consideration::Money { .. } => true,
            Consideration::Resource { resource } => {
                resource.category() == Category::Money && resource.text("kind") == Some("credit")
            }
        })
}

impl Execution {
    /// A signed contract starts: the transfers to make (escrow, money and credits given).
    /// A contract whose seller gives only money or credits is delivered at once.
    pub fn start(contract: &Contract, now_ms: u64) -> (Execution, Vec<Transfer>) {
        let (units_contracted, unit) = metering_units(contract);
        let at_once = delivered_at_start(contract);
        let execution = Execution {
            contract: contract.id,
            state: if at_once { ExecState::Delivered } else { ExecState::Active },
            units_contracted,
            unit: unit.to_string(),
            records: BTreeMap::new(),
            repeated: 0,
            started_ms: now_ms,
            ended_ms: at_once.then_some(now_ms),
            confirmed: at_once,
            failure: None,
            fraction: None,
            settled_ms: None,
        };
        let mut transfers = plan_escrow(contract);
        transfers.extend(credits_given(contract));
        (execution, transfers)
    }

    /// Units metered so far (each record once).
    pub fn units_metered(&self) -> u64 {
        self.records.values().fold(0u64, |sum, record| sum.saturating_add(record.units))
    }

    /// The share delivered so far by metering.
    pub fn metered_fraction(&self) -> Fraction {
        Fraction::new(self.units_metered(), self.units_contracted)
    }

    /// The share the settlement pays: in full when the buyer confirmed, else what was metered,
    /// or for a failure with no record the share of the time until it.
    pub fn delivered_fraction(&self, contract: &Contract) -> Fraction {
        match (self.confirmed, self.state, self.ended_ms) {
            (true, _, _) => Fraction::WHOLE,
            (false, ExecState::Failed, Some(at_ms)) if self.records.is_empty() => delivered_by_time(contract, at_ms),
            _ => self.metered_fraction(),
        }
    }

    /// Step with one event: the new execution and what to do.
    pub fn apply(&self, contract: &Contract, event: &ExecEvent) -> Result<(Execution, Outcome), ExecError> {
        let mut next = self.clone();
        let mut outcome = Outcome::default();
        let closed = |what| ExecError::Closed { contract: self.contract, state: self.state.name(), what };
        match event {
            ExecEvent::Meter { record } => {
                self.check_record(record)?;
                if let Some(first) = self.records.get(&record.seq) {
                    if first != record {
                        return Err(ExecError::ConflictingRecord { seq: record.seq });
                    }
                    next.repeated += 1;
                    outcome.repeated = true;
                    return Ok((next, outcome));
                }
                if self.state != ExecState::Active {
                    return Err(closed("metering"));
                }
                if self.records.len() >= RECORDS_MAX {
                    return Err(ExecError::TooManyRecords { contract: self.contract });
                }
                next.records.insert(record.seq, record.clone());
            }
            ExecEvent::Confirm { at_ms } | ExecEvent::TimeUp { at_ms } => {
                if self.state != ExecState::Active {
                    outcome.repeated = true;
                    return Ok((next, outcome));
                }
                next.state = ExecState::Delivered;
                next.ended_ms = Some(*at_ms);
                next.confirmed = matches!(event, ExecEvent::Confirm { .. });
                outcome.changed = true;
            }
            ExecEvent::Fail { at_ms, reason } => {
                if self.state != ExecState::Active {
                    outcome.repeated = true;
                    return Ok((next, outcome));
                }
                next.state = ExecState::Failed;
                next.ended_ms = Some((*at_ms).max(self.started_ms));
                next.failure = Some(reason.chars().take(200).collect());
                outcome.changed = true;
            }
            ExecEvent::Settle { at_ms } => match self.state {
                ExecState::Settled => outcome.repeated = true,
                ExecState::Active => return Err(ExecError::NotEnded { contract: self.contract }),
                ExecState::Delivered | ExecState::Failed => {
                    let fraction = self.delivered_fraction(contract);
                    next.fraction = Some(fraction);
                    next.state = ExecState::Settled;
                    next.settled_ms = Some(*at_ms);
                    outcome.transfers = plan_settlement(contract, fraction);
                    outcome.changed = true;
                }
            },
        }
        Ok((next, outcome))
    }

    fn check_record(&self, record: &MeterRecord) -> Result<(), ExecError> {
        if record.contract != self.contract {
            return Err(ExecError::WrongContract { seq: record.seq, expected: self.contract, found: record.contract });
        }
        let bad = |reason| Err(ExecError::BadRecord { seq: record.seq, reason });
        if record.seq == 0 {
            return bad("records are numbered from 1");
        }
        if record.to_ms < record.from_ms {
            return bad("it ends before it starts");
        }
        if record.units > self.units_contracted {
            return bad("it reports more units than the whole contract");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
