//! Result assurance on the server (P6.1, P6.2, X1): the state machines of `idlegrid-assurance`
//! carried out over the store.
//!
//! A job whose `validation` is not `none` keeps an assurance row per task: its `TaskAssurance`
//! and the outcomes its replicas returned. Every event (a replica placed, a result, a loss, a
//! validator's verdict, a quarantine) runs in its own transaction: record it, `decide`, act on
//! the decision. The task's result reaches the client only when the decision accepts it.
//!
//! Spot checks concern every provider, whatever the jobs it runs: a result accepted after a
//! check is a known answer, and the same task sent again to another provider is a test that
//! looks like any other assignment. A wrong answer quarantines the provider: it gets no more
//! work, every task it contributed to is decided again without it, and its pay for results
//! not yet settled is withheld.

use std::collections::BTreeMap;

use idlegrid_assurance::{
    Acceptance, Action, ByteEquality, Comparison, Decision, DecisionContext, DeferredValidator, ProviderRecord,
    RandomSource, ResultComparator, ReturnedResult, Revision, SpotCheckConsequence, SpotCheckOutcome, TaskAssurance,
    ValidationPolicy, judge_spot_check,
};
use idlegrid_protocol::Payload;
use idlegrid_store::{JobRow, StoreError, TaskKey, TaskRow, Tx};
use idlegrid_types::{AssignmentId, ElementHash, FailureKind, PartyId, TaskEvent, TaskFailureInfo, TaskState};
use serde::{Deserialize, Serialize};

use crate::schedule::transition;
use crate::{Coordinator, Effects};

/// A replica's final outcome, kept with the task until the task is decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub(crate) enum ReplicaOutcome {
    Succeeded {
        result: Payload,
    },
    /// A failure that any engine would meet (`FailureKind::is_deterministic`): replicas may
    /// agree that the task fails.
    Failed {
        failure: TaskFailureInfo,
    },
}

impl ReplicaOutcome {
    /// SHA-256 of the outcome: of the result bytes (an element's name is its SHA-256, so inline
    /// and uploaded results of the same bytes agree), or of the failure's kind.
    pub(crate) fn digest(&self) -> ElementHash {
        match self {
            ReplicaOutcome::Succeeded { result: Payload::Inline(bytes) } => ElementHash::of(bytes),
            ReplicaOutcome::Succeeded { result: Payload::Element(element) } => element.hash,
            ReplicaOutcome::Failed { failure } => {
                let kind = serde_json::to_string(&failure.kind).expect("failure kinds serialize");
                ElementHash::of(format!("idlegrid task failure {kind}").as_bytes())
            }
        }
    }
}

/// What the assurance row of a task holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AssuredTask {
    pub assurance: TaskAssurance,
    pub outcomes: Vec<(AssignmentId, ReplicaOutcome)>,
}

impl AssuredTask {
    fn outcome(&self, assignment: AssignmentId) -> Option<&ReplicaOutcome> {
        self.outcomes.iter().find(|(id, _)| *id == assignment).map(|(_, outcome)| outcome)
    }
}

/// A comparison the server must run with the job's validator, outside the transaction; its
/// verdict comes back through `Coordinator::record_comparison`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingComparison {
    pub task: TaskKey,
    pub validator: ElementHash,
    pub memory_bytes_max: u64,
    pub first: (AssignmentId, Payload),
    pub second: (AssignmentId, Payload),
}

pub(crate) fn is_assured(job: &JobRow) -> bool {
    job.properties.validation != ValidationPolicy::None
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

/// Result assurance refused what the coordinator asked of it: the coordinator broke one of
/// its rules (it checks what it passes first).
fn logic(error: idlegrid_assurance::AssuranceError) -> StoreError {
    idlegrid_store::StoreError::domain(idlegrid_store::DomainKind::Broken, format!("result assurance: {error}"))
}

pub(crate) fn load_record(tx: &mut dyn Tx, provider: &PartyId) -> Result<ProviderRecord, StoreError> {
    match tx.provider_record(provider)? {
        Some(json) => serde_json::from_str(&json).map_err(|e| corrupt(&format!("record of provider {provider}"), e)),
        None => Ok(ProviderRecord::default()),
    }
}

pub(crate) fn save_record(tx: &mut dyn Tx, provider: &PartyId, record: &ProviderRecord) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).expect("records serialize");
    tx.set_provider_record(provider, &json, record.is_quarantined())
}

/// The assurance state of a task and the replicas it wants placed, if it has one.
pub(crate) fn load_assured(tx: &mut dyn Tx, task: TaskKey) -> Result<Option<(AssuredTask, u32)>, StoreError> {
    match tx.task_assurance(task)? {
        Some(row) => {
            let state =
                serde_json::from_str(&row.state).map_err(|e| corrupt(&format!("assurance of task {task}"), e))?;
            Ok(Some((state, row.replicas_wanted)))
        }
        None => Ok(None),
    }
}

fn save_assured(tx: &mut dyn Tx, task: TaskKey, state: &AssuredTask, wanted: u32) -> Result<(), StoreError> {
    tx.set_task_assurance(task, &serde_json::to_string(state).expect("assurance serializes"), wanted)
}

/// The pay of a replica that ended without a judgement (lost, handed back, cancelled): its
/// time is paid as for any placement, unless its provider is quarantined.
fn settle_unjudged(tx: &mut dyn Tx, assignment: AssignmentId) -> Result<(), StoreError> {
    let quarantined = match tx.assignment(assignment)? {
        Some(row) => load_record(tx, &row.provider)?.is_quarantined(),
        None => false,
    };
    settle_pay(tx, assignment, quarantined)
}

/// A placement's pay is due (`withheld: false`) or never (`true`) now that its result is judged.
fn settle_pay(tx: &mut dyn Tx, assignment: AssignmentId, withheld: bool) -> Result<(), StoreError> {
    if let Some(mut record) = tx.work_record(assignment.0)?
        && (record.pay_awaits_judgement || (withheld && !record.pay_withheld))
    {
        record.pay_awaits_judgement = false;
        record.pay_withheld |= withheld;
        tx.upsert_work_record(&record)?;
    }
    Ok(())
}

impl Coordinator {
    /// The assurance state of a task of an assured job, created (and decided, so that it
    /// wants its first replicas) when the task is placed for the first time. Returns the state
    /// and how many replicas it wants now.
    pub(crate) fn assured_task(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<Option<(AssuredTask, u32)>, StoreError> {
        if let Some((state, wanted)) = load_assured(tx, task.key)? {
            if wanted > 0 || task.state != TaskState::Queued {
                return Ok(Some((state, wanted)));
            }
            // Queued without wanting anything (handed back while stopped): decide again.
            self.decide_and_act(tx, task, job, state, now_ms, fx)?;
            return load_assured(tx, task.key);
        }
        let assurance = TaskAssurance::new(job.properties.validation).map_err(logic)?;
        self.decide_and_act(tx, task, job, AssuredTask { assurance, outcomes: Vec::new() }, now_ms, fx)?;
        load_assured(tx, task.key)
    }

    /// A replica was placed on `provider`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replica_placed(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        assignment: AssignmentId,
        provider: &PartyId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some((mut state, _)) = load_assured(tx, task.key)? else { return Ok(()) };
        state.assurance.replica_launched(assignment, provider.clone()).map_err(logic)?;
        self.decide_and_act(tx, task, job, state, now_ms, fx)
    }

    /// A replica returned its final outcome (`None`: it ended without one, e.g. an engine-side
    /// failure). Results of replicas that had ended already (declared lost, cancelled) are
    /// ignored: they no longer count.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replica_returned(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        assignment: AssignmentId,
        outcome: Option<ReplicaOutcome>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some((mut state, _)) = load_assured(tx, task.key)? else { return Ok(()) };
        let running = state.assurance.replicas().iter().any(|r| r.assignment == assignment && r.running);
        if !running {
            return Ok(());
        }
        match outcome {
            Some(outcome) => {
                if let ReplicaOutcome::Succeeded { result: Payload::Element(element) } = &outcome {
                    // Keep the bytes while the task is undecided: they may become its result.
                    tx.add_job_elements(job.id, &[element.hash])?;
                }
                state.assurance.replica_result(assignment, outcome.digest()).map_err(logic)?;
                state.outcomes.push((assignment, outcome));
            }
            None => {
                state.assurance.replica_lost(assignment).map_err(logic)?;
                settle_unjudged(tx, assignment)?;
            }
        }
        self.decide_and_act(tx, task, job, state, now_ms, fx)
    }

    /// The job's validator compared two results (run by the server shell outside the
    /// transaction that asked for it).
    pub fn record_comparison(
        &self,
        tx: &mut dyn Tx,
        task: TaskKey,
        first: AssignmentId,
        second: AssignmentId,
        outcome: Comparison,
        now_ms: u64,
    ) -> Result<Effects, StoreError> {
        let mut fx = Effects::default();
        let Some(mut row) = tx.task_by_key(task)? else { return Ok(fx) };
        let Some(mut job) = tx.job(row.job)? else { return Ok(fx) };
        let Some((mut state, _)) = load_assured(tx, task)? else { return Ok(fx) };
        if let Err(error) = state.assurance.record_comparison(first, second, outcome) {
            // A verdict repeated after a crash, or for a task decided meanwhile.
            tracing::debug!(%task, %error, "comparison not recorded");
            return Ok(fx);
        }
        self.decide_and_act(tx, &mut row, &mut job, state, now_ms, &mut fx)?;
        tx.save_job_state(job.id, job.state, &job.counts)?;
        Ok(fx)
    }

    /// Decide a task and carry the decision out: judge providers (records, pay), cancel
    /// replicas no longer needed, and then launch more, ask for comparisons, accept or give up.
    pub(crate) fn decide_and_act(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        mut state: AssuredTask,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let mut records = BTreeMap::new();
        for provider in state.assurance.providers() {
            let record = load_record(tx, &provider)?;
            records.insert(provider, record);
        }
        let mut byte_equality = ByteEquality;
        let mut deferred = DeferredValidator;
        let comparator: &mut dyn ResultComparator =
            if job.properties.validator.is_some() { &mut deferred } else { &mut byte_equality };
        // The generator is held for the decision only: what follows may draw again.
        let Decision { action, judgements, cancel } = {
            let mut random = self.random();
            let mut context = DecisionContext {
                records: &records,
                model: &self.config.credibility,
                comparator,
                random: &mut **random,
                typical_credibility: None,
            };
            state.assurance.decide(&mut context).map_err(logic)?
        };

        for judgement in &judgements {
            let mut record =
                records.remove(&judgement.provider).map_or_else(|| load_record(tx, &judgement.provider), Ok)?;
            record.apply_judgement(judgement.kind, judgement.previous);
            save_record(tx, &judgement.provider, &record)?;
            settle_pay(tx, judgement.assignment, !judgement.kind.is_paid())?;
        }
        for assignment in &cancel {
            if let Some(row) = tx.assignment(*assignment)?
                && row.state == idlegrid_store::AssignmentRowState::Active
            {
                self.cancel_placement(tx, row.id, &row.provider, now_ms, fx)?;
            }
            settle_unjudged(tx, *assignment)?;
        }
        let wanted = match &action {
            Action::Launch { replicas } => *replicas,
            _ => 0,
        };
        save_assured(tx, task.key, &state, wanted)?;

        match action {
            Action::Wait | Action::Settled => {}
            Action::Launch { .. } => {
                if task.state == TaskState::Running && tx.active_assignments_of_task(task.key)?.is_empty() {
                    transition(tx, task, job, TaskEvent::Requeue)?;
                }
            }
            Action::Compare { pairs } => self.compare_pairs(tx, task, job, &state, pairs, now_ms, fx)?,
            Action::Accept(acceptance) => self.accept_result(tx, task, job, &state, acceptance, now_ms, fx)?,
            Action::Inconclusive(inconclusive) => {
                if let Some(withdrawn) = inconclusive.withdrawn {
                    tracing::warn!(task = %task.key, %withdrawn, "a delivered result was withdrawn by re-verification; the client is not told");
                }
                if !task.state.is_final() {
                    let idlegrid_assurance::InconclusiveReason::ReplicasExhausted {
                        results,
                        groups,
                        validator_failures,
                    } = inconclusive.reason;
                    let failure = TaskFailureInfo {
                        kind: FailureKind::Inconclusive,
                        message: format!(
                            "{results} results fell into {groups} disagreeing groups ({validator_failures} comparisons failed in the validator); \
                             validation {} found no result it could accept within its replicas",
                            job.properties.validation.label()
                        ),
                    };
                    self.conclude(tx, task, job, TaskState::Failed, None, Some(failure), 0, now_ms, fx)?;
                }
            }
        }
        Ok(())
    }

    /// Ask the job's validator to compare pairs of results; a pair with a failure is compared
    /// here (failures agree when their kinds do) and the task decided again.
    #[allow(clippy::too_many_arguments)]
    fn compare_pairs(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        state: &AssuredTask,
        pairs: Vec<(ReturnedResult, ReturnedResult)>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let Some(validator) = job.properties.validator else { return Ok(()) };
        for (first, second) in pairs {
            let (Some(a), Some(b)) = (state.outcome(first.assignment), state.outcome(second.assignment)) else {
                continue;
            };
            match (a, b) {
                (ReplicaOutcome::Succeeded { result: ra }, ReplicaOutcome::Succeeded { result: rb }) => {
                    fx.comparisons.push(PendingComparison {
                        task: task.key,
                        validator,
                        memory_bytes_max: job.properties.task_limits.memory_bytes_max,
                        first: (first.assignment, ra.clone()),
                        second: (second.assignment, rb.clone()),
                    });
                }
                // A failure and a result, or two failures: the validator compares
                // results only; failures agree when their kinds do.
                _ => {
                    let verdict = if a.digest() == b.digest() { Comparison::Equivalent } else { Comparison::Different };
                    let mut again = state.clone();
                    again.assurance.record_comparison(first.assignment, second.assignment, verdict).map_err(logic)?;
                    return self.decide_and_act(tx, task, job, again, now_ms, fx);
                }
            }
        }
        Ok(())
    }

    /// The task's assurance accepted a result: conclude the task with it (once), or note a
    /// re-verification that replaced a delivered one.
    #[allow(clippy::too_many_arguments)]
    fn accept_result(
        &self,
        tx: &mut dyn Tx,
        task: &mut TaskRow,
        job: &mut JobRow,
        state: &AssuredTask,
        acceptance: Acceptance,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        match acceptance.revision {
            Revision::First | Revision::Replaced { .. } if !task.state.is_final() => {
                let Some(outcome) = state.outcome(acceptance.canonical.assignment).cloned() else {
                    return Err(StoreError::Corrupt(format!(
                        "task {}: the accepted result has no stored outcome",
                        task.key
                    )));
                };
                let bytes = match &outcome {
                    ReplicaOutcome::Succeeded { result } => result.len(),
                    ReplicaOutcome::Failed { .. } => 0,
                };
                self.journal_conclude(tx, acceptance.canonical.assignment, Some(bytes), now_ms)?;
                if acceptance.checked && matches!(outcome, ReplicaOutcome::Succeeded { .. }) {
                    tx.insert_known_answer(task.key, &acceptance.canonical.digest, now_ms)?;
                }
                match outcome {
                    ReplicaOutcome::Succeeded { result } => {
                        self.conclude(tx, task, job, TaskState::Succeeded, Some(result), None, 0, now_ms, fx)?;
                    }
                    ReplicaOutcome::Failed { failure } => {
                        self.conclude(tx, task, job, TaskState::Failed, None, Some(failure), 0, now_ms, fx)?;
                    }
                }
            }
            Revision::Confirmed | Revision::First => {}
            Revision::Replaced { previous } => {
                // Re-verification found the delivered result wrong; corrections to
                // clients are not sent yet (see ARCHITECTURE.md).
                tracing::warn!(task = %task.key, %previous, "a delivered result was replaced by re-verification; the client is not told");
            }
        }
        Ok(())
    }

    /// A random known answer that `provider` had no part in, as `(task, expected digest)`.
    pub(crate) fn pick_known_answer(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        known: &[(TaskKey, ElementHash)],
    ) -> Result<Option<(TaskRow, JobRow, ElementHash)>, StoreError> {
        if known.is_empty() {
            return Ok(None);
        }
        let start = self.random().below(known.len() as u64) as usize;
        for i in 0..known.len().min(8) {
            let (key, digest) = known[(start + i) % known.len()];
            let Some(task) = tx.task_by_key(key)? else { continue };
            let Some(job) = tx.job(task.job)? else { continue };
            // Not a task it ran (it could repeat its own answer), nor one it holds already.
            let involved = match load_assured(tx, key)? {
                Some((state, _)) => state.assurance.providers().contains(provider),
                None => false,
            } || tx.active_assignments_of_task(key)?.iter().any(|a| &a.provider == provider);
            if !involved {
                return Ok(Some((task, job, digest)));
            }
        }
        Ok(None)
    }

    /// A provider answered a test task: judge it, and quarantine the provider on a wrong answer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spot_check_answered(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        assignment: AssignmentId,
        expected: ElementHash,
        answer: Option<ReplicaOutcome>,
        job: &JobRow,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let outcome = match answer {
            Some(answer) => {
                let digest = answer.digest();
                if digest != expected && job.properties.validator.is_some() {
                    // Results of this job may differ slightly: only its validator could tell.
                    SpotCheckOutcome::Unresolved
                } else {
                    judge_spot_check(&expected, &digest)
                }
            }
            None => SpotCheckOutcome::Unresolved,
        };
        let mut record = load_record(tx, provider)?;
        let consequence = record.apply_spot_check(outcome, &self.config.quarantine);
        save_record(tx, provider, &record)?;
        tracing::info!(%provider, %assignment, ?outcome, ?consequence, "spot check answered");
        if consequence == SpotCheckConsequence::Quarantined {
            self.quarantine(tx, provider, now_ms, fx)?;
        }
        Ok(())
    }

    /// Carry out a quarantine (the provider's record says so already): its tasks go to other
    /// engines, and every task it contributed to is decided again without its results, which
    /// withholds its pay for them and re-verifies what they supported.
    pub(crate) fn quarantine(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        tracing::warn!(%provider, "provider quarantined: it answered a test task wrongly; it gets no more work, its results are re-verified and its pay for them withheld");
        for assignment in tx.active_assignments_of_provider(provider)? {
            self.reclaim(tx, &assignment, "provider quarantined", now_ms, fx)?;
        }
        for key in tx.assured_tasks_of_provider(provider, u32::MAX)? {
            let Some(mut task) = tx.task_by_key(key)? else { continue };
            let Some(mut job) = tx.job(task.job)? else { continue };
            let Some((state, _)) = load_assured(tx, key)? else { continue };
            // No pay for any of its replicas that is not settled yet, judged or not.
            for replica in state.assurance.replicas().iter().filter(|r| &r.provider == provider) {
                settle_pay(tx, replica.assignment, true)?;
            }
            self.decide_and_act(tx, &mut task, &mut job, state, now_ms, fx)?;
            tx.save_job_state(job.id, job.state, &job.counts)?;
        }
        Ok(())
    }
}
