//! The per-task state machine: which results a task has, which agree, and what to do next.
//!
//! `TaskAssurance` is plain data (serde), so the store keeps it with the task and every event
//! runs in the event's transaction: record the event (`replica_launched`, `replica_result`,
//! `replica_lost`, `record_comparison`), then `decide`, then act on the `Decision`. Deciding
//! twice in a row without an event in between decides the same thing and emits nothing new.
//!
//! Results are grouped in arrival order: each result is compared with the first result of each
//! group formed before it and joins the first group it is equivalent to, or starts a group. A
//! failed comparison counts as "not equivalent", so a broken validator can never make a task
//! accept; it can only leave it inconclusive. Results of quarantined providers are discarded
//! whenever the task is decided, accepted tasks included: an acceptance that one of them
//! supported is withdrawn and decided again from the remaining results (re-verification).

use idlegrid_types::{AssignmentId, PartyId};
use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, ResultComparator, ResultDigest, ReturnedResult};
use crate::credibility::{CredibilityModel, group_log_odds, log_odds, result_credibilities, result_margin};
use crate::error::check_open;
use crate::record::{JudgementKind, ProviderRecords};
use crate::{AssuranceError, ValidationPolicy};
use idlegrid_random::RandomSource;

/// What `decide` needs besides the task's own state.
pub struct DecisionContext<'a> {
    /// Records of (at least) every provider in `TaskAssurance::providers`.
    pub records: &'a dyn ProviderRecords,
    pub model: &'a CredibilityModel,
    /// `ByteEquality` unless the job has a validator.
    pub comparator: &'a mut dyn ResultComparator,
    /// Used by adaptive replication's check draw (once per first result; the draw is kept).
    pub random: &'a mut dyn RandomSource,
    /// Credibility of the provider a new replica will probably get (e.g. the median over active
    /// providers); the credibility policy sizes its launches with it. `None`: a new provider's
    /// `1 - f`, which launches more at once.
    pub typical_credibility: Option<f64>,
}

/// The verdict on one replica, for the provider's record (`ProviderRecord::apply_judgement`)
/// and its pay (`JudgementKind::is_paid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    pub assignment: AssignmentId,
    pub provider: PartyId,
    pub kind: JudgementKind,
    /// The judgement this one replaces (re-verification), if any.
    pub previous: Option<JudgementKind>,
}

/// How an acceptance relates to an earlier one withdrawn by re-verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Revision {
    /// The task's first acceptance: deliver the result to the client.
    First,
    /// Re-verification accepted the same result again: nothing to tell the client.
    Confirmed,
    /// Re-verification accepted a different result: the one delivered was wrong; send a
    /// correction.
    Replaced { previous: ResultDigest },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The result to deliver (the earliest of the agreeing ones).
    pub canonical: ReturnedResult,
    /// Providers whose results agree with it (the canonical one's included).
    pub agreeing: Vec<PartyId>,
    /// Providers whose results differ from it.
    pub disagreeing: Vec<PartyId>,
    /// Sarmenta's credibility of the result, against the groups that differ, whatever the policy.
    pub credibility: f64,
    /// False when the result was taken alone, without another result agreeing.
    pub checked: bool,
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InconclusiveReason {
    /// `replicas_max` replicas returned (or ran) and no result gathered the agreement needed.
    ReplicasExhausted {
        results: u32,
        groups: u32,
        /// Comparisons on which the job's validator failed: when every comparison failed, the
        /// validator is the likely culprit.
        validator_failures: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inconclusive {
    pub reason: InconclusiveReason,
    /// A result accepted earlier and withdrawn by re-verification: tell the client it is no
    /// longer vouched for.
    pub withdrawn: Option<ResultDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Nothing to do until a running replica reports.
    Wait,
    /// Place this many more replicas, each on a provider not in `TaskAssurance::providers` and
    /// not quarantined; record each with `replica_launched`.
    Launch { replicas: u32 },
    /// Run the job's validator on these pairs (first, second), record each outcome with
    /// `record_comparison`, then decide again.
    Compare { pairs: Vec<(ReturnedResult, ReturnedResult)> },
    /// The task's result is final (or, with a `Revision`, final again).
    Accept(Acceptance),
    /// Give up: the client gets "inconclusive" for the task.
    Inconclusive(Inconclusive),
    /// Accepted or inconclusive before, and nothing changed the outcome.
    Settled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub action: Action,
    /// New or revised verdicts on replicas, in launch order: apply each to the provider's
    /// record; pay `is_paid` ones, withhold the others.
    pub judgements: Vec<Judgement>,
    /// Running replicas that are no longer needed (the task is decided, or their provider is
    /// quarantined): send `RemoveTask`.
    pub cancel: Vec<AssignmentId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
enum ReplicaState {
    Running,
    Returned {
        digest: ResultDigest,
    },
    /// The engine vanished or handed the replica back without a result.
    Lost,
    /// Stopped because the task was decided.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Replica {
    assignment: AssignmentId,
    provider: PartyId,
    state: ReplicaState,
    /// From a quarantined provider: counts for nothing, ever.
    discarded: bool,
    judgement: Option<JudgementKind>,
}

/// A replica as the server may inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub assignment: AssignmentId,
    pub provider: PartyId,
    pub running: bool,
    pub digest: Option<ResultDigest>,
    pub discarded: bool,
    pub judgement: Option<JudgementKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RecordedComparison {
    first: AssignmentId,
    second: AssignmentId,
    outcome: Comparison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AdaptiveDraw {
    assignment: AssignmentId,
    checked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AcceptedResult {
    canonical: ReturnedResult,
    checked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
enum Status {
    /// `withdrawn`: an acceptance that re-verification took back.
    Open {
        withdrawn: Option<AcceptedResult>,
    },
    Accepted(AcceptedResult),
    Inconclusive {
        reason: InconclusiveReason,
    },
}

/// The assurance state of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAssurance {
    policy: ValidationPolicy,
    replicas: Vec<Replica>,
    comparisons: Vec<RecordedComparison>,
    adaptive_draw: Option<AdaptiveDraw>,
    status: Status,
}

/// Results that agree, by replica index; the first member is the one others are compared with.
struct Group {
    members: Vec<usize>,
    log_odds: f64,
}

struct Grouping {
    groups: Vec<Group>,
    pending: Vec<(ReturnedResult, ReturnedResult)>,
    validator_failures: u32,
}

impl TaskAssurance {
    pub fn new(policy: ValidationPolicy) -> Result<TaskAssurance, AssuranceError> {
        policy.validate()?;
        Ok(TaskAssurance {
            policy,
            replicas: Vec::new(),
            comparisons: Vec::new(),
            adaptive_draw: None,
            status: Status::Open { withdrawn: None },
        })
    }

    pub fn policy(&self) -> &ValidationPolicy {
        &self.policy
    }

    /// Every provider that holds or held a replica: exclude them when placing another replica,
    /// and load their records for `decide`.
    pub fn providers(&self) -> Vec<PartyId> {
        let mut providers: Vec<PartyId> = self.replicas.iter().map(|replica| replica.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        providers
    }

    pub fn replicas(&self) -> Vec<ReplicaView> {
        self.replicas
            .iter()
            .map(|replica| ReplicaView {
                assignment: replica.assignment,
                provider: replica.provider.clone(),
                running: replica.state == ReplicaState::Running,
                digest: match replica.state {
                    ReplicaState::Returned { digest } => Some(digest),
                    _ => None,
                },
                discarded: replica.discarded,
                judgement: replica.judgement,
            })
            .collect()
    }

    /// The accepted result, while the task is accepted.
    pub fn accepted(&self) -> Option<ReturnedResult> {
        match self.status {
            Status::Accepted(accepted) => Some(accepted.canonical),
            _ => None,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Open { .. })
    }

    pub fn is_inconclusive(&self) -> bool {
        matches!(self.status, Status::Inconclusive { .. })
    }

    /// A replica was placed on `provider`.
    pub fn replica_launched(&mut self, assignment: AssignmentId, provider: PartyId) -> Result<(), AssuranceError> {
        match self.status {
            Status::Open { .. } => {}
            Status::Accepted(_) => return Err(AssuranceError::TaskFinished { state: "accepted" }),
            Status::Inconclusive { .. } => return Err(AssuranceError::TaskFinished { state: "inconclusive" }),
        }
        if self.replicas.iter().any(|replica| replica.assignment == assignment) {
            return Err(AssuranceError::DuplicateAssignment { assignment });
        }
        if self.replicas.iter().any(|replica| replica.provider == provider) {
            return Err(AssuranceError::ProviderAlreadyHasReplica { provider });
        }
        self.replicas.push(Replica {
            assignment,
            provider,
            state: ReplicaState::Running,
            discarded: false,
            judgement: None,
        });
        Ok(())
    }

    /// A replica returned its result. A result after the replica was reported lost or
    /// cancelled still counts (the engine came back); the same result twice is harmless.
    pub fn replica_result(&mut self, assignment: AssignmentId, digest: ResultDigest) -> Result<(), AssuranceError> {
        let replica = self.replica_mut(assignment)?;
        match replica.state {
            ReplicaState::Returned { digest: earlier } if earlier == digest => Ok(()),
            ReplicaState::Returned { .. } => Err(AssuranceError::ConflictingResult { assignment }),
            ReplicaState::Running | ReplicaState::Lost | ReplicaState::Cancelled => {
                replica.state = ReplicaState::Returned { digest };
                Ok(())
            }
        }
    }

    /// A replica ended without a result (engine lost, task handed back, transient failure):
    /// it no longer counts against `replicas_max`.
    pub fn replica_lost(&mut self, assignment: AssignmentId) -> Result<(), AssuranceError> {
        let replica = self.replica_mut(assignment)?;
        match replica.state {
            ReplicaState::Running | ReplicaState::Cancelled => {
                replica.state = ReplicaState::Lost;
                Ok(())
            }
            ReplicaState::Lost => Ok(()),
            ReplicaState::Returned { .. } => Err(AssuranceError::ReplicaNotRunning {
                assignment,
                state: "returned",
                hint: "a replica that returned a result cannot be lost afterwards",
            }),
        }
    }

    /// The outcome of a comparison `decide` asked for (`Action::Compare`). The first outcome
    /// recorded for a pair stands.
    pub fn record_comparison(
        &mut self,
        first: AssignmentId,
        second: AssignmentId,
        outcome: Comparison,
    ) -> Result<(), AssuranceError> {
        if outcome == Comparison::Pending {
            return Err(AssuranceError::ComparisonPending { first, second });
        }
        let index_of = |assignment| {
            self.replicas.iter().position(|replica| {
                replica.assignment == assignment && matches!(replica.state, ReplicaState::Returned { .. })
            })
        };
        let (Some(a), Some(b)) = (index_of(first), index_of(second)) else {
            return Err(AssuranceError::UnknownComparison { first, second });
        };
        if a == b {
            return Err(AssuranceError::UnknownComparison { first, second });
        }
        let (first, second) = if a < b { (first, second) } else { (second, first) };
        if self.cached_comparison(first, second).is_none() {
            self.comparisons.push(RecordedComparison { first, second, outcome });
        }
        Ok(())
    }

    /// Decide what happens next. See `Action` for what each answer asks of the server.
    pub fn decide(&mut self, context: &mut DecisionContext<'_>) -> Result<Decision, AssuranceError> {
        context.model.validate()?;
        if let Some(typical) = context.typical_credibility {
            check_open("typical_credibility", typical, 0.0, 1.0, "must be a credibility in (0, 1)")?;
        }
        for replica in self.replicas.iter().filter(|replica| !replica.discarded) {
            if context.records.record(&replica.provider).is_none() {
                return Err(AssuranceError::UnknownProvider { provider: replica.provider.clone() });
            }
        }
        let mut judgements = Vec::new();
        let mut cancel = Vec::new();
        self.discard_quarantined(context, &mut judgements, &mut cancel);

        let grouping = self.group(context);
        if !grouping.pending.is_empty() {
            return Ok(Decision { action: Action::Compare { pairs: grouping.pending }, judgements, cancel });
        }
        let action = match self.status {
            Status::Accepted(accepted) => {
                self.judge_against(&grouping, accepted.canonical.assignment, accepted.checked, &mut judgements);
                Action::Settled
            }
            Status::Inconclusive { .. } => Action::Settled,
            Status::Open { withdrawn } => self.step(context, &grouping, withdrawn, &mut judgements, &mut cancel),
        };
        Ok(Decision { action, judgements, cancel })
    }

    fn replica_mut(&mut self, assignment: AssignmentId) -> Result<&mut Replica, AssuranceError> {
        self.replicas
            .iter_mut()
            .find(|replica| replica.assignment == assignment)
            .ok_or(AssuranceError::UnknownAssignment { assignment })
    }

    fn cached_comparison(&self, first: AssignmentId, second: AssignmentId) -> Option<Comparison> {
        self.comparisons.iter().find(|c| c.first == first && c.second == second).map(|c| c.outcome)
    }

    /// Discard the replicas of quarantined providers; withdraw an acceptance one of them
    /// supported.
    fn discard_quarantined(
        &mut self,
        context: &DecisionContext<'_>,
        judgements: &mut Vec<Judgement>,
        cancel: &mut Vec<AssignmentId>,
    ) {
        let mut withdraw = false;
        for replica in self.replicas.iter_mut().filter(|replica| !replica.discarded) {
            let quarantined = context.records.record(&replica.provider).is_some_and(|record| record.is_quarantined());
            if !quarantined {
                continue;
            }
            replica.discarded = true;
            match replica.state {
                ReplicaState::Running => {
                    replica.state = ReplicaState::Cancelled;
                    cancel.push(replica.assignment);
                }
                ReplicaState::Returned { .. } => {
                    withdraw |= matches!(replica.judgement, Some(JudgementKind::Agreed | JudgementKind::Unchecked));
                    judgements.push(Judgement {
                        assignment: replica.assignment,
                        provider: replica.provider.clone(),
                        kind: JudgementKind::Discarded,
                        previous: replica.judgement,
                    });
                    replica.judgement = Some(JudgementKind::Discarded);
                }
                ReplicaState::Lost | ReplicaState::Cancelled => {}
            }
        }
        if withdraw && let Status::Accepted(accepted) = self.status {
            self.status = Status::Open { withdrawn: Some(accepted) };
        }
    }

    /// Group the returned results of providers in good standing, in launch order.
    fn group(&mut self, context: &mut DecisionContext<'_>) -> Grouping {
        let mut grouping = Grouping { groups: Vec::new(), pending: Vec::new(), validator_failures: 0 };
        for index in 0..self.replicas.len() {
            let replica = &self.replicas[index];
            let ReplicaState::Returned { digest } = replica.state else { continue };
            if replica.discarded {
                continue;
            }
            let result = ReturnedResult { assignment: replica.assignment, digest };
            let mut joined = None;
            let mut pending = Vec::new();
            for (group_index, group) in grouping.groups.iter().enumerate() {
                let first = self.returned(group.members[0]);
                let outcome = match self.cached_comparison(first.assignment, result.assignment) {
                    Some(outcome) => outcome,
                    None => {
                        let outcome = context.comparator.compare(&first, &result);
                        if outcome != Comparison::Pending {
                            self.comparisons.push(RecordedComparison {
                                first: first.assignment,
                                second: result.assignment,
                                outcome,
                            });
                        }
                        outcome
                    }
                };
                match outcome {
                    Comparison::Equivalent if pending.is_empty() => {
                        joined = Some(group_index);
                        break;
                    }
                    // An earlier group is still pending: which group this result joins is
                    // not known yet, and asking for more comparisons would be wasted.
                    Comparison::Equivalent => break,
                    Comparison::Different => {}
                    Comparison::Failed => grouping.validator_failures += 1,
                    Comparison::Pending => pending.push((first, result)),
                }
            }
            if !pending.is_empty() {
                // Later results wait: their groups depend on this one's.
                grouping.pending = pending;
                return grouping;
            }
            let credibility = context
                .records
                .record(&self.replicas[index].provider)
                .map_or(0.0, |record| context.model.provider_credibility(record));
            match joined {
                Some(group_index) => {
                    let group = &mut grouping.groups[group_index];
                    group.members.push(index);
                    group.log_odds += log_odds(credibility);
                }
                None => grouping.groups.push(Group { members: vec![index], log_odds: group_log_odds([credibility]) }),
            }
        }
        grouping
    }

    fn returned(&self, index: usize) -> ReturnedResult {
        let replica = &self.replicas[index];
        match replica.state {
            ReplicaState::Returned { digest } => ReturnedResult { assignment: replica.assignment, digest },
            // Only returned replicas are grouped.
            _ => ReturnedResult { assignment: replica.assignment, digest: ResultDigest::from_bytes([0; 32]) },
        }
    }

    /// One step of the policy for an open task.
    fn step(
        &mut self,
        context: &mut DecisionContext<'_>,
        grouping: &Grouping,
        withdrawn: Option<AcceptedResult>,
        judgements: &mut Vec<Judgement>,
        cancel: &mut Vec<AssignmentId>,
    ) -> Action {
        let running = self.replicas.iter().filter(|r| !r.discarded && r.state == ReplicaState::Running).count() as u32;
        let launched = self
            .replicas
            .iter()
            .filter(|r| !r.discarded && matches!(r.state, ReplicaState::Running | ReplicaState::Returned { .. }))
            .count() as u32;
        let budget = self.policy.replicas_max().saturating_sub(launched);
        let results: u32 = grouping.groups.iter().map(|g| g.members.len() as u32).sum();
        let exhausted = || InconclusiveReason::ReplicasExhausted {
            results,
            groups: grouping.groups.len() as u32,
            validator_failures: grouping.validator_failures,
        };

        let outcome = match self.policy {
            ValidationPolicy::None => match best_by_size(&grouping.groups) {
                Some(best) => Step::Accept(best),
                None if running > 0 => Step::Wait,
                None if budget > 0 => Step::Launch(1),
                None => Step::GiveUp,
            },
            ValidationPolicy::Quorum { min_agreeing, target_replicas, .. } => {
                quorum_step(&grouping.groups, min_agreeing, target_replicas, running, launched, budget)
            }
            ValidationPolicy::Adaptive { min_agreeing, trusted_after, check_probability_min, .. } => {
                // One replica first; re-verification (`withdrawn`) always asks for a quorum.
                let single_stage = launched <= 1 && withdrawn.is_none();
                if single_stage && launched == 0 {
                    Step::Launch(1)
                } else if single_stage && results == 0 {
                    Step::Wait
                } else if single_stage
                    && self.trusted_and_unchecked(
                        context,
                        grouping.groups[0].members[0],
                        trusted_after,
                        check_probability_min,
                    )
                {
                    Step::Accept(0)
                } else {
                    quorum_step(&grouping.groups, min_agreeing, min_agreeing, running, launched, budget)
                }
            }
            ValidationPolicy::Credibility { target, .. } => {
                credibility_step(context, &grouping.groups, target, running, budget)
            }
        };
        let outcome = match outcome {
            Step::Launch(replicas) => Step::Launch(replicas.min(budget)),
            other => other,
        };
        match outcome {
            Step::Wait => Action::Wait,
            Step::Launch(0) if running > 0 => Action::Wait,
            Step::Launch(0) | Step::GiveUp => {
                cancel.extend(self.cancel_running());
                let withdrawn_digest = withdrawn.map(|accepted| accepted.canonical.digest);
                if withdrawn.is_some() {
                    // The providers were judged against a result nobody vouches for any more.
                    for replica in self.replicas.iter_mut().filter(|r| !r.discarded) {
                        if let Some(previous) = replica.judgement.filter(|&kind| kind != JudgementKind::Unresolved) {
                            judgements.push(Judgement {
                                assignment: replica.assignment,
                                provider: replica.provider.clone(),
                                kind: JudgementKind::Unresolved,
                                previous: Some(previous),
                            });
                            replica.judgement = Some(JudgementKind::Unresolved);
                        }
                    }
                }
                let reason = exhausted();
                self.status = Status::Inconclusive { reason };
                Action::Inconclusive(Inconclusive { reason, withdrawn: withdrawn_digest })
            }
            Step::Launch(replicas) => Action::Launch { replicas },
            Step::Accept(group_index) => {
                let group = &grouping.groups[group_index];
                let canonical = self.returned(group.members[0]);
                let checked = group.members.len() >= 2;
                let log_odds: Vec<f64> = grouping.groups.iter().map(|g| g.log_odds).collect();
                let credibility = result_credibilities(&log_odds)[group_index];
                let revision = match withdrawn {
                    None => Revision::First,
                    Some(previous) if previous.canonical.digest == canonical.digest => Revision::Confirmed,
                    Some(previous) => Revision::Replaced { previous: previous.canonical.digest },
                };
                cancel.extend(self.cancel_running());
                self.status = Status::Accepted(AcceptedResult { canonical, checked });
                let verdicts = self.judge_against(grouping, canonical.assignment, checked, judgements);
                let agreeing =
                    verdicts.iter().filter(|(_, kind)| kind.is_paid()).map(|(provider, _)| provider.clone()).collect();
                let disagreeing = verdicts
                    .iter()
                    .filter(|(_, kind)| *kind == JudgementKind::Disagreed)
                    .map(|(provider, _)| provider.clone())
                    .collect();
                Action::Accept(Acceptance { canonical, agreeing, disagreeing, credibility, checked, revision })
            }
        }
    }

    /// Adaptive replication: is the single result of a trusted provider accepted without a
    /// check? The draw is made once per first result and kept, so deciding again agrees.
    fn trusted_and_unchecked(
        &mut self,
        context: &mut DecisionContext<'_>,
        index: usize,
        trusted_after: u32,
        check_probability_min: f64,
    ) -> bool {
        let replica = &self.replicas[index];
        let Some(record) = context.records.record(&replica.provider) else { return false };
        if record.is_quarantined() || record.consecutive_valid < u64::from(trusted_after) {
            return false;
        }
        if let Some(draw) = self.adaptive_draw.filter(|draw| draw.assignment == replica.assignment) {
            return !draw.checked;
        }
        let check_probability =
            (f64::from(trusted_after) / record.consecutive_valid as f64).max(check_probability_min).min(1.0);
        let checked = context.random.next_f64() < check_probability;
        self.adaptive_draw = Some(AdaptiveDraw { assignment: replica.assignment, checked });
        !checked
    }

    fn cancel_running(&mut self) -> Vec<AssignmentId> {
        let mut cancelled = Vec::new();
        for replica in self.replicas.iter_mut().filter(|r| r.state == ReplicaState::Running) {
            replica.state = ReplicaState::Cancelled;
            cancelled.push(replica.assignment);
        }
        cancelled
    }

    /// Judge every result in good standing against the accepted one; emit what is new.
    /// Returns each judged provider with its verdict.
    fn judge_against(
        &mut self,
        grouping: &Grouping,
        canonical: AssignmentId,
        checked: bool,
        judgements: &mut Vec<Judgement>,
    ) -> Vec<(PartyId, JudgementKind)> {
        let Some(accepted_group) =
            grouping.groups.iter().position(|g| g.members.iter().any(|&i| self.replicas[i].assignment == canonical))
        else {
            return Vec::new();
        };
        let accepted_first = self.replicas[grouping.groups[accepted_group].members[0]].assignment;
        let mut verdicts = Vec::new();
        for (group_index, group) in grouping.groups.iter().enumerate() {
            let kind = if group_index == accepted_group {
                if checked || group.members.len() >= 2 { JudgementKind::Agreed } else { JudgementKind::Unchecked }
            } else {
                // The first results of two groups were compared when the later group formed.
                let other_first = self.replicas[group.members[0]].assignment;
                let (a, b) = if group.members[0] < grouping.groups[accepted_group].members[0] {
                    (other_first, accepted_first)
                } else {
                    (accepted_first, other_first)
                };
                match self.cached_comparison(a, b) {
                    Some(Comparison::Different) => JudgementKind::Disagreed,
                    _ => JudgementKind::Unresolved,
                }
            };
            for &index in &group.members {
                let replica = &mut self.replicas[index];
                verdicts.push((replica.provider.clone(), kind));
                if replica.judgement != Some(kind) {
                    judgements.push(Judgement {
                        assignment: replica.assignment,
                        provider: replica.provider.clone(),
                        kind,
                        previous: replica.judgement,
                    });
                    replica.judgement = Some(kind);
                }
            }
        }
        judgements.sort_by_key(|judgement| self.replicas.iter().position(|r| r.assignment == judgement.assignment));
        verdicts
    }
}

enum Step {
    Wait,
    Launch(u32),
    Accept(usize),
    GiveUp,
}

/// The largest group; among equals, the more credible, then the earlier.
fn best_by_size(groups: &[Group]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, group) in groups.iter().enumerate() {
        best = match best {
            Some(b) if (groups[b].members.len(), groups[b].log_odds) >= (group.members.len(), group.log_odds) => {
                Some(b)
            }
            _ => Some(index),
        };
    }
    best
}

/// BOINC's quorum: accept at `min_agreeing` agreeing results; otherwise launch what could
/// still complete a quorum (at least `target_replicas` in all), or give up when even every
/// remaining replica agreeing with the largest group would not be enough.
fn quorum_step(
    groups: &[Group],
    min_agreeing: u32,
    target_replicas: u32,
    running: u32,
    launched: u32,
    budget: u32,
) -> Step {
    let best = best_by_size(groups);
    let best_size = best.map_or(0, |b| groups[b].members.len() as u32);
    if let Some(b) = best
        && best_size >= min_agreeing
    {
        return Step::Accept(b);
    }
    if best_size + running + budget < min_agreeing {
        return Step::GiveUp;
    }
    let for_quorum = min_agreeing - best_size;
    let want = for_quorum.saturating_sub(running).max(target_replicas.saturating_sub(launched));
    if want == 0 { Step::Wait } else { Step::Launch(want) }
}

/// Sarmenta's credibility-based voting: accept the group whose credibility reaches `target`;
/// otherwise launch as many replicas as, agreeing with the most credible group and coming from
/// providers of typical credibility, would reach it (less those already running).
fn credibility_step(context: &DecisionContext<'_>, groups: &[Group], target: f64, running: u32, budget: u32) -> Step {
    let needed_margin = (target / (1.0 - target)).ln();
    let group_odds: Vec<f64> = groups.iter().map(|g| g.log_odds).collect();
    let mut best: Option<(usize, f64)> = None;
    for index in 0..groups.len() {
        let margin = result_margin(&group_odds, index);
        if best.is_none_or(|(_, best_margin)| margin > best_margin) {
            best = Some((index, margin));
        }
    }
    if let Some((index, margin)) = best
        && margin >= needed_margin
    {
        return Step::Accept(index);
    }
    if running == 0 && budget == 0 {
        return Step::GiveUp;
    }
    // With no result yet, the best group is an empty one: log-odds 0 against nothing.
    let best_margin = best.map_or(0.0, |(_, margin)| margin);
    let typical = context.typical_credibility.unwrap_or_else(|| context.model.new_provider_credibility());
    let step = log_odds(typical);
    let needed = if step > 0.0 { ((needed_margin - best_margin) / step).ceil() } else { 1.0 };
    let needed = if needed.is_finite() && needed >= 1.0 { needed.min(f64::from(budget + running)) as u32 } else { 1 };
    let want = needed.saturating_sub(running);
    if want == 0 { Step::Wait } else { Step::Launch(want.min(budget)) }
}
