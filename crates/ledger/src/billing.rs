//! Billing from the journal of work (P7.1) with limits (P7.6): a pure function turns journal
//! records into charge lines with derived idempotency keys, and `Ledger::apply_billing` makes
//! them transfers, settling job reservations and reporting jobs and clients to stop.
//!
//! # The model
//!
//! - A task is a *virtual node*; each of its placements on an engine is one `WorkRecord`. The
//!   power running through a client's virtual cluster at an instant is the sum over its running
//!   tasks of the task's node power: the job's requested node power if it set one, otherwise
//!   the highest power rating among the task's placements running at that instant (redundant
//!   copies are paid for by the reliability premium, not by counting their power twice).
//! - The client pays for a placement from its launch (when scheduled) to the first of its
//!   conclusion and its cancellation: once another copy returned the result, or the client
//!   cancelled or stopped it, the client no longer pays for it.
//! - Increments are fixed `increment_ms` spans aligned to the Unix epoch. For each increment in
//!   which any task of the client ran, P is the time-weighted mean power over the increment
//!   (GFLOP-ms of work in it divided by its length), and the client is charged
//!   `(a + b P^c) x increment hours`, the flat part in full for any portion of an increment.
//!   That amount is rounded once and split among the client's jobs in proportion to their
//!   GFLOP-ms in the increment (largest remainder, so the parts add up exactly). Each job also
//!   pays the premium `k x its GFLOP-hours in the increment x (ln(1-r)/ln(1-R) - 1)`.
//! - An increment is billed only when the window that contains it ends at or before `now`: no
//!   later journal entry can change it, since launches, cancellations and conclusions are
//!   journaled at the time they happen.
//! - Data (P7.3) is charged once per task, on the record that returned the task's final status:
//!   its data in (the task's input) and out (the result the client receives).
//! - A provider is paid per record once the placement is concluded: simplified model, from
//!   launch to the first of its conclusion and cancellation + L; full model, from launch to the
//!   first of its conclusion and its cancellation (the first result of the virtual node).
//!
//! Keys: `compute:{job}:{increment}`, `premium:{job}:{increment}`, `data:{record}`,
//! `pay:{record}`. Billing overlapping windows, or the same window twice, charges once.

use std::collections::{BTreeMap, BTreeSet};

use idlegrid_types::{JobId, PartyId, TaskIndex};
use serde::{Deserialize, Serialize};

use crate::pricing::{BYTES_PER_GB, MS_PER_HOUR, PricingConfig, ProviderPayModel};
use crate::store::LedgerStore;
use crate::{
    AccountId, Action, IdempotencyKey, Ledger, LedgerError, Memo, Micros, OverLimit, Period, Purpose, ReservationKind,
    TransferId, TransferRequest, keys,
};

/// Latest time billing accepts: 10000-01-01T00:00:00Z, so that no time arithmetic overflows.
pub const TIME_MS_MAX: u64 = 253_402_300_800_000;

/// One task on one engine (one placement), as journaled (P7.1). Written when the task is
/// launched on the engine and updated when it is cancelled and concluded, in the same
/// transaction as the state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkRecord {
    /// Unique and stable (for example the assignment id): keys are derived from it.
    pub id: u64,
    pub client: PartyId,
    pub job: JobId,
    pub task: TaskIndex,
    /// The party paid for the work (the engine's owner).
    pub provider: PartyId,
    /// The engine that did it (today the same party as `provider`).
    pub engine: PartyId,
    /// The engine's power rating (GFLOPS) when the task was launched.
    pub power_gflops: f64,
    /// The engine's weighted average availability pi in [0, 1), for its pay.
    pub availability: f64,
    /// When the task was scheduled on the engine.
    pub launched_ms: u64,
    /// When the server queued `RemoveTask` or `Stop` for this placement (another copy won, the
    /// client cancelled or stopped the job, the engine was given up).
    pub cancelled_ms: Option<u64>,
    /// When the placement ended: its final status arrived, the engine acknowledged the removal
    /// or handed the task back, or the server gave up on a silent engine (then: its last
    /// contact).
    pub concluded_ms: Option<u64>,
    /// This placement returned the task's final status (the first one, which the client gets).
    pub final_status: bool,
    /// Bytes the engine downloaded for the task (its input).
    pub data_in_bytes: u64,
    /// Bytes the engine uploaded (its result).
    pub data_out_bytes: u64,
    /// The job checks results (P6.1) and this placement's result is not judged yet: its pay
    /// waits, and the record stays open.
    #[serde(default)]
    pub pay_awaits_judgement: bool,
    /// The result was judged invalid, discarded, or the provider quarantined: no pay, ever.
    #[serde(default)]
    pub pay_withheld: bool,
}

impl WorkRecord {
    /// The end of the time the client pays for, if known: the first of conclusion and
    /// cancellation.
    pub fn client_end_ms(&self) -> Option<u64> {
        match (self.concluded_ms, self.cancelled_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The end of the time the provider is paid for, if the placement is concluded as of
    /// `horizon_ms` (see the module documentation).
    pub fn provider_end_ms(&self, config: &PricingConfig, horizon_ms: u64) -> Option<u64> {
        let end = match config.provider_pay_model {
            ProviderPayModel::Full => self.client_end_ms(),
            ProviderPayModel::Simplified => {
                let deadline = self.cancelled_ms.map(|c| c.saturating_add(config.conclusion_after_cancellation_ms));
                match (self.concluded_ms, deadline) {
                    (Some(concluded), Some(deadline)) => Some(concluded.min(deadline)),
                    (Some(concluded), None) => Some(concluded),
                    (None, Some(deadline)) if deadline <= horizon_ms => Some(deadline),
                    (None, _) => None,
                }
            }
        };
        end.filter(|end| *end <= horizon_ms)
    }

    /// True once billing up to `billed_to_ms` (a window's end) has billed everything this
    /// record will ever cause: it is concluded by then, so its client time, its pay and any data
    /// charge are all due (conclusion bounds the client's end and the provider's end). The store
    /// can then mark the record billed and stop passing it to `plan_billing`. A record that is
    /// never concluded is never fully billed: journal a conclusion when the engine acknowledges,
    /// hands back, or is given up.
    pub fn is_fully_billed(&self, billed_to_ms: u64) -> bool {
        !self.pay_awaits_judgement && self.concluded_ms.is_some_and(|concluded| concluded <= billed_to_ms)
    }

    fn validate(&self, now_ms: u64) -> Result<(), LedgerError> {
        let invalid = |reason: String| LedgerError::InvalidRecord { record: self.id, reason };
        if !(self.power_gflops.is_finite() && self.power_gflops >= 0.0) {
            return Err(invalid(format!("power_gflops = {} must be a finite number, zero or more", self.power_gflops)));
        }
        if !(self.availability.is_finite() && (0.0..1.0).contains(&self.availability)) {
            return Err(invalid(format!("availability = {} must be in [0, 1)", self.availability)));
        }
        let times = [("cancelled_ms", self.cancelled_ms), ("concluded_ms", self.concluded_ms)];
        for (field, time) in times.into_iter().filter_map(|(f, t)| t.map(|t| (f, t))) {
            if time < self.launched_ms {
                return Err(invalid(format!("{field} = {time} is before launched_ms = {}", self.launched_ms)));
            }
            if time > now_ms {
                return Err(invalid(format!("{field} = {time} is after now = {now_ms}")));
            }
        }
        if self.launched_ms > now_ms {
            return Err(invalid(format!("launched_ms = {} is after now = {now_ms}", self.launched_ms)));
        }
        if self.final_status && self.concluded_ms.is_none() {
            return Err(invalid("final_status is set but concluded_ms is not".to_string()));
        }
        Ok(())
    }
}

/// What billing needs to know about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTerms {
    pub job: JobId,
    pub client: PartyId,
    /// The account charged: `AccountId::Party(client)` normally, or the account of a provider
    /// whose earnings pay for the job (barter).
    pub payer: AccountId,
    /// Requested power of a virtual node; `None`: the engines' ratings are billed.
    pub node_power_gflops: Option<f64>,
    /// Requested reliability r; `None`: the baseline R.
    pub reliability: Option<f64>,
}

impl JobTerms {
    pub fn new(job: JobId, client: PartyId) -> JobTerms {
        JobTerms { job, payer: AccountId::Party(client.clone()), client, node_power_gflops: None, reliability: None }
    }
}

/// Increments to bill: `from_ms` included, `to_ms` excluded, both multiples of the increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingWindow {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl BillingWindow {
    /// Every whole increment from `from_ms` up to `now_ms`.
    pub fn closed_until(from_ms: u64, now_ms: u64, config: &PricingConfig) -> BillingWindow {
        let increment = config.increment_ms.max(1);
        let to_ms = now_ms - now_ms % increment;
        BillingWindow { from_ms: from_ms.min(to_ms), to_ms }
    }
}

/// One transfer to make. `job` set on client charges: they settle the job's reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeLine {
    pub key: IdempotencyKey,
    pub purpose: Purpose,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Micros,
    pub memo: Memo,
    /// When the work paid for ended (lines are applied in this order).
    pub service_end_ms: u64,
}

impl ChargeLine {
    /// A charge to a client for a job (as opposed to a provider's pay).
    pub fn is_client_charge(&self) -> bool {
        matches!(self.purpose, Purpose::Computation | Purpose::ReliabilityPremium | Purpose::DataTransfer)
    }
}

/// What billing a window amounts to, before it touches the ledger.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BillingPlan {
    pub lines: Vec<ChargeLine>,
    /// Each job's computation and premium in the last increment it ran in this window: the
    /// forecast of its next increment, to stop it before its maximum cost.
    pub last_increment_charge: BTreeMap<JobId, Micros>,
    /// Records still running or not yet concluded for pay at the window's end.
    pub records_open: u64,
}

impl BillingPlan {
    /// Total of client charges and of provider pay in the plan.
    pub fn totals(&self) -> Result<(Micros, Micros), LedgerError> {
        let charges = Micros::checked_sum(self.lines.iter().filter(|l| l.is_client_charge()).map(|l| l.amount))?;
        let pay = Micros::checked_sum(self.lines.iter().filter(|l| !l.is_client_charge()).map(|l| l.amount))?;
        Ok((charges, pay))
    }
}

#[derive(Default, Clone, Copy)]
struct Usage {
    gflop_ms: f64,
    running_ms: u64,
}

/// Turn journal records into the transfers to make for `window` (pure). Pass every record
/// that overlaps the window or concluded since it was last billed (passing more is harmless:
/// keys deduplicate), as the journal stands at `now_ms`, and the terms of their jobs.
///
/// Computation and premium: every increment of the window. Provider pay and data: every
/// record concluded at or before `window.to_ms`.
pub fn plan_billing(
    config: &PricingConfig,
    records: &[WorkRecord],
    jobs: &[JobTerms],
    window: BillingWindow,
    now_ms: u64,
) -> Result<BillingPlan, LedgerError> {
    let terms = checked_terms(config, jobs, window, now_ms)?;
    let tasks = records_by_task(records, &terms, now_ms)?;
    let usage = usage_by_increment(&tasks, &terms, window, config.increment_ms);
    let mut plan = BillingPlan::default();
    charge_increments(config, &usage, &terms, &mut plan)?;
    pay_records(config, records, &terms, window, &mut plan)?;
    plan.lines.sort_by(|a, b| (a.service_end_ms, a.purpose, &a.key).cmp(&(b.service_end_ms, b.purpose, &b.key)));
    Ok(plan)
}

/// The job terms by job, once the configuration, the window and the terms are checked.
fn checked_terms<'a>(
    config: &PricingConfig,
    jobs: &'a [JobTerms],
    window: BillingWindow,
    now_ms: u64,
) -> Result<BTreeMap<JobId, &'a JobTerms>, LedgerError> {
    config.validate()?;
    let increment_ms = config.increment_ms;
    let window_error =
        |reason: String| LedgerError::InvalidWindow { from_ms: window.from_ms, to_ms: window.to_ms, reason };
    if window.from_ms > window.to_ms {
        return Err(window_error("it ends before it starts".to_string()));
    }
    if !window.from_ms.is_multiple_of(increment_ms) || !window.to_ms.is_multiple_of(increment_ms) {
        return Err(window_error(format!("both ends must be multiples of increment_ms = {increment_ms}")));
    }
    if now_ms > TIME_MS_MAX {
        return Err(window_error(format!("now = {now_ms} is after the year 9999; pass Unix milliseconds")));
    }
    if window.to_ms > now_ms {
        return Err(window_error(format!(
            "it ends after now = {now_ms}; an increment is billed only once it is over (use BillingWindow::closed_until)"
        )));
    }
    let terms: BTreeMap<JobId, &JobTerms> = jobs.iter().map(|t| (t.job, t)).collect();
    if terms.len() != jobs.len() {
        return Err(LedgerError::InvalidInput {
            field: "jobs",
            value: format!("{} terms for {} jobs", jobs.len(), terms.len()),
            reason: "a job's terms appear twice; pass each job once",
        });
    }
    for t in jobs {
        if let Some(power) = t.node_power_gflops
            && !(power.is_finite() && power >= 0.0)
        {
            return Err(LedgerError::InvalidInput {
                field: "node_power_gflops",
                value: power.to_string(),
                reason: "must be a finite number, zero or more",
            });
        }
        // Refuses a reliability below the baseline or outside [0, 1).
        config.reliability_premium_factor(t.reliability.unwrap_or(config.baseline_reliability))?;
    }
    Ok(terms)
}

type TaskRecords<'a> = BTreeMap<(JobId, TaskIndex), Vec<&'a WorkRecord>>;

/// The records (each checked, once, of a job with terms and of its client) by task.
fn records_by_task<'a>(
    records: &'a [WorkRecord],
    terms: &BTreeMap<JobId, &JobTerms>,
    now_ms: u64,
) -> Result<TaskRecords<'a>, LedgerError> {
    let mut tasks: TaskRecords<'a> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for record in records {
        record.validate(now_ms)?;
        if !ids.insert(record.id) {
            return Err(LedgerError::InvalidRecord {
                record: record.id,
                reason: "its id appears twice in the input".to_string(),
            });
        }
        let job_terms = terms
            .get(&record.job)
            .ok_or_else(|| LedgerError::MissingJobTerms { job: record.job.to_string(), record: record.id })?;
        if job_terms.client != record.client {
            return Err(LedgerError::InvalidRecord {
                record: record.id,
                reason: format!("its client {} is not the job's client {}", record.client, job_terms.client),
            });
        }
        tasks.entry((record.job, record.task)).or_default().push(record);
    }
    Ok(tasks)
}

type IncrementUsage = BTreeMap<(PartyId, u64), BTreeMap<JobId, Usage>>;

/// Work per (client, increment) and job: the power timeline of each task (the most powerful
/// of its placements at each moment), integrated over the window.
fn usage_by_increment(
    tasks: &TaskRecords<'_>,
    terms: &BTreeMap<JobId, &JobTerms>,
    window: BillingWindow,
    increment_ms: u64,
) -> IncrementUsage {
    let mut usage: IncrementUsage = BTreeMap::new();
    for ((job, _), placements) in tasks {
        let job_terms = terms[job];
        let intervals: Vec<(u64, u64, f64)> = placements
            .iter()
            .filter_map(|r| {
                let start = r.launched_ms.max(window.from_ms);
                let end = r.client_end_ms().unwrap_or(window.to_ms).min(window.to_ms);
                let power = job_terms.node_power_gflops.unwrap_or(r.power_gflops);
                (start < end).then_some((start, end, power))
            })
            .collect();
        let mut boundaries: Vec<u64> = intervals.iter().flat_map(|(s, e, _)| [*s, *e]).collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        for pair in boundaries.windows(2) {
            let (piece_start, piece_end) = (pair[0], pair[1]);
            let power = intervals
                .iter()
                .filter(|(s, e, _)| *s <= piece_start && *e >= piece_end)
                .map(|(_, _, p)| *p)
                .fold(None, |best: Option<f64>, p| Some(best.map_or(p, |b| b.max(p))));
            let Some(power) = power else { continue };
            let mut start = piece_start;
            while start < piece_end {
                let increment_start = start - start % increment_ms;
                let end = piece_end.min(increment_start + increment_ms);
                let entry =
                    usage.entry((job_terms.client.clone(), increment_start)).or_default().entry(*job).or_default();
                entry.gflop_ms += power * (end - start) as f64;
                entry.running_ms += end - start;
                start = end;
            }
        }
    }
    usage
}

/// Computation (the client's mean power in each increment, priced and split between its jobs)
/// and reliability premium lines.
fn charge_increments(
    config: &PricingConfig,
    usage: &IncrementUsage,
    terms: &BTreeMap<JobId, &JobTerms>,
    plan: &mut BillingPlan,
) -> Result<(), LedgerError> {
    let increment_ms = config.increment_ms;
    let increment_hours = increment_ms as f64 / MS_PER_HOUR as f64;
    for ((_, increment_start), jobs_usage) in usage {
        let service = Period { start_ms: *increment_start, end_ms: increment_start + increment_ms };
        let total_gflop_ms: f64 = jobs_usage.values().map(|u| u.gflop_ms).sum();
        let mean_power = total_gflop_ms / increment_ms as f64;
        let price = config.computation_price_per_hour(mean_power)? * increment_hours;
        let total = Micros::from_f64_units(price, "computation charge")?;
        let weights: Vec<f64> = if total_gflop_ms > 0.0 {
            jobs_usage.values().map(|u| u.gflop_ms).collect()
        } else {
            jobs_usage.values().map(|u| u.running_ms as f64).collect()
        };
        let shares = split_proportionally(total, &weights);
        for ((job, job_usage), share) in jobs_usage.iter().zip(shares) {
            let job_terms = terms[job];
            let memo = Memo { job: Some(*job), service: Some(service), ..Memo::default() };
            let reliability = job_terms.reliability.unwrap_or(config.baseline_reliability);
            let gflop_hours = job_usage.gflop_ms / MS_PER_HOUR as f64;
            let premium =
                config.baseline_price_per_gflop_hour * gflop_hours * config.reliability_premium_factor(reliability)?;
            let premium = Micros::from_f64_units(premium, "reliability premium")?;
            for (purpose, key, amount) in [
                (Purpose::Computation, keys::computation(*job, *increment_start), share),
                (Purpose::ReliabilityPremium, keys::reliability_premium(*job, *increment_start), premium),
            ] {
                if amount.is_positive() {
                    plan.lines.push(ChargeLine {
                        key,
                        purpose,
                        debit: job_terms.payer.clone(),
                        credit: AccountId::Platform,
                        amount,
                        memo: memo.clone(),
                        service_end_ms: service.end_ms,
                    });
                }
            }
            plan.last_increment_charge.insert(*job, share.checked_add(premium)?);
        }
    }
    Ok(())
}

/// Provider pay and data transfer lines of the records concluded by the window's end; the
/// others are counted open.
fn pay_records(
    config: &PricingConfig,
    records: &[WorkRecord],
    terms: &BTreeMap<JobId, &JobTerms>,
    window: BillingWindow,
    plan: &mut BillingPlan,
) -> Result<(), LedgerError> {
    for record in records {
        let job_terms = terms[&record.job];
        let pay_end = record.provider_end_ms(config, window.to_ms);
        let Some(pay_end) = pay_end.filter(|_| !record.pay_awaits_judgement) else {
            plan.records_open += 1;
            continue;
        };
        let pay_end = pay_end.max(record.launched_ms);
        let pay = if record.pay_withheld {
            Micros::ZERO
        } else {
            config.provider_pay(record.power_gflops, record.availability, pay_end - record.launched_ms)?
        };
        let memo = Memo {
            job: Some(record.job),
            engine: Some(record.engine.clone()),
            record: Some(record.id),
            service: Some(Period { start_ms: record.launched_ms, end_ms: pay_end }),
            request: None,
        };
        if pay.is_positive() {
            plan.lines.push(ChargeLine {
                key: keys::provider_pay(record.id),
                purpose: Purpose::ProviderPay,
                debit: AccountId::Platform,
                credit: AccountId::Party(record.provider.clone()),
                amount: pay,
                memo: memo.clone(),
                service_end_ms: pay_end,
            });
        }
        let concluded = record.concluded_ms.filter(|c| record.final_status && *c <= window.to_ms);
        if let Some(concluded) = concluded {
            let reliability = job_terms.reliability.unwrap_or(config.baseline_reliability);
            let charge = config.data_transfer_charge(
                record.data_in_bytes as f64 / BYTES_PER_GB,
                record.data_out_bytes as f64 / BYTES_PER_GB,
                reliability,
            )?;
            let charge = Micros::from_f64_units(charge, "data transfer charge")?;
            if charge.is_positive() {
                plan.lines.push(ChargeLine {
                    key: keys::data_transfer(record.id),
                    purpose: Purpose::DataTransfer,
                    debit: job_terms.payer.clone(),
                    credit: AccountId::Platform,
                    amount: charge,
                    memo: Memo {
                        engine: None,
                        service: Some(Period { start_ms: record.launched_ms, end_ms: concluded }),
                        ..memo
                    },
                    service_end_ms: concluded,
                });
            }
        }
    }
    Ok(())
}

/// Split `total` micro-units in proportion to `weights` so that the parts add up exactly:
/// each gets the floor of its exact share, and the micro-units left go one by one to the
/// largest fractional parts (ties: the earlier). Zero weights everywhere: equal weights.
pub fn split_proportionally(total: Micros, weights: &[f64]) -> Vec<Micros> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: f64 = weights.iter().sum();
    let equal = vec![1.0; weights.len()];
    let (weights, sum) = if sum > 0.0 && sum.is_finite() { (weights, sum) } else { (&equal[..], weights.len() as f64) };
    let total_micros = total.as_i64().max(0);
    let exact: Vec<f64> = weights.iter().map(|w| total_micros as f64 * (w.max(0.0) / sum)).collect();
    let mut shares: Vec<i64> = exact.iter().map(|x| (x.floor() as i64).clamp(0, total_micros)).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| (exact[*b] - exact[*b].floor()).total_cmp(&(exact[*a] - exact[*a].floor())).then(a.cmp(b)));
    let mut left = total_micros - shares.iter().sum::<i64>();
    // Rounding of the exact shares may overshoot by a micro-unit or two: take it back from the
    // smallest fractional parts.
    let mut index = order.len();
    while left < 0 {
        index = if index == 0 { order.len() - 1 } else { index - 1 };
        if shares[order[index]] > 0 {
            shares[order[index]] -= 1;
            left += 1;
        }
    }
    let mut index = 0;
    while left > 0 {
        shares[order[index % order.len()]] += 1;
        left -= 1;
        index += 1;
    }
    shares.into_iter().map(Micros::new).collect()
}

/// Why a job must be stopped (P7.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Its maximum cost is reached: work beyond it was not charged (`capped`).
    CostMaxReached { capped: Micros },
    /// Less is left under its maximum cost than its last increment cost: stop it before the next
    /// increment crosses the maximum.
    CostMaxNear { headroom: Micros, next_increment_estimate: Micros },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStop {
    pub job: JobId,
    pub reason: StopReason,
}

/// An account past its limit: the server notifies the client and stops its jobs until a
/// payment brings it current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountStanding {
    pub account: AccountId,
    pub available: Micros,
    pub overdraft_max: Micros,
}

/// A line whose key was already used with other content (for example after a price change):
/// no money moved for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingConflict {
    pub key: IdempotencyKey,
    pub existing: TransferId,
}

/// A billing line the ledger refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedLine {
    pub key: IdempotencyKey,
    pub amount: Micros,
    pub reason: String,
}

/// What applying a plan did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BillingReport {
    pub transfers_new: u64,
    /// Lines billed before (same key, same content): nothing moved.
    pub transfers_repeated: u64,
    /// Posted by new client charges.
    pub charged: Micros,
    /// Posted by new provider pay.
    pub paid: Micros,
    /// Per job, what its maximum cost kept from being charged (new and repeated lines).
    pub capped: BTreeMap<JobId, Micros>,
    pub conflicts: Vec<BillingConflict>,
    /// Lines whose amount the ledger refused (beyond `AMOUNT_MICROS_MAX`, or an overflow): not
    /// posted, so that one absurd line cannot stop billing for everybody. The operator must
    /// look at them (the server logs each).
    #[serde(default)]
    pub refused: Vec<RefusedLine>,
    pub jobs_to_stop: Vec<JobStop>,
    pub accounts_over_limit: Vec<AccountStanding>,
}

impl<S: LedgerStore + ?Sized> Ledger<'_, S> {
    /// Make the plan's transfers, in order, each exactly once. A client charge settles its job's
    /// reservation if the job has one (a maximum caps it), else is posted directly, past the
    /// account limit if need be: the work is done. Call it in one transaction with the
    /// journal reads; after a crash, plan and apply again: nothing is charged twice.
    pub fn apply_billing(&mut self, plan: &BillingPlan, now_ms: u64) -> Result<BillingReport, LedgerError> {
        let mut report = BillingReport::default();
        let mut reservations: BTreeMap<JobId, Option<TransferId>> = BTreeMap::new();
        let mut payers = BTreeSet::new();
        for line in &plan.lines {
            let reservation = match (line.is_client_charge(), line.memo.job) {
                (true, Some(job)) => match reservations.get(&job) {
                    Some(found) => *found,
                    None => {
                        let found = self.job_reservation(job)?.map(|r| r.id);
                        reservations.insert(job, found);
                        found
                    }
                },
                _ => None,
            };
            let action = match reservation {
                Some(reservation) => Action::Settle { reservation, amount: line.amount },
                None => Action::Post {
                    debit: line.debit.clone(),
                    credit: line.credit.clone(),
                    amount: line.amount,
                    over_limit: OverLimit::Allow,
                },
            };
            let request =
                TransferRequest { key: line.key.clone(), action, purpose: line.purpose, memo: line.memo.clone() };
            let outcome = match self.execute(request, now_ms) {
                Ok(outcome) => outcome,
                Err(LedgerError::IdempotencyConflict { key, existing }) => {
                    report.conflicts.push(BillingConflict { key, existing });
                    continue;
                }
                Err(error @ (LedgerError::AmountTooLarge { .. } | LedgerError::Overflow { .. })) => {
                    report.refused.push(RefusedLine {
                        key: line.key.clone(),
                        amount: line.amount,
                        reason: error.to_string(),
                    });
                    continue;
                }
                Err(error) => return Err(error),
            };
            let transfer = &outcome.transfer;
            if line.is_client_charge() {
                payers.insert(transfer.debit.clone());
                if let (Some(job), true) = (line.memo.job, transfer.capped.is_positive()) {
                    let capped = report.capped.entry(job).or_default();
                    *capped = capped.checked_add(transfer.capped)?;
                }
            }
            if outcome.repeated {
                report.transfers_repeated += 1;
            } else {
                report.transfers_new += 1;
                if line.is_client_charge() {
                    report.charged = report.charged.checked_add(transfer.posted)?;
                } else {
                    report.paid = report.paid.checked_add(transfer.posted)?;
                }
            }
        }

        for (job, reservation) in &reservations {
            let Some(reservation) = reservation else { continue };
            let Some(reservation) = self.store().reservation(*reservation)? else { continue };
            if reservation.kind != ReservationKind::Maximum {
                continue;
            }
            let headroom = reservation.headroom()?.unwrap_or(Micros::MAX);
            let capped = report.capped.get(job).copied().unwrap_or_default();
            let next = plan.last_increment_charge.get(job).copied().unwrap_or_default();
            let reason = if capped.is_positive() || !headroom.is_positive() {
                Some(StopReason::CostMaxReached { capped })
            } else if headroom < next {
                Some(StopReason::CostMaxNear { headroom, next_increment_estimate: next })
            } else {
                None
            };
            if let Some(reason) = reason {
                report.jobs_to_stop.push(JobStop { job: *job, reason });
            }
        }

        for payer in payers {
            let account = self.account(&payer)?;
            if account.is_over_limit()? {
                report.accounts_over_limit.push(AccountStanding {
                    available: account.available()?,
                    overdraft_max: account.overdraft_max.unwrap_or_default(),
                    account: payer,
                });
            }
        }
        Ok(report)
    }
}
