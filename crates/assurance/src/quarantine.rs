//! What follows a quarantine: the provider gets no more work, its pay for disputed tasks is
//! withheld, and every task it contributed to is decided again without it (re-verification).
//! The store knows the provider's contributions; this module turns them into a plan.

use idlegrid_types::{AssignmentId, JobId, TaskIndex};
use serde::{Deserialize, Serialize};

use crate::JudgementKind;

/// A task, as the store names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskKey {
    pub job: JobId,
    pub index: TaskIndex,
}

/// One replica the quarantined provider held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    pub task: TaskKey,
    pub assignment: AssignmentId,
    /// Still running on the provider's engine.
    pub running: bool,
    /// The replica's judgement so far (`None`: not judged yet, the task is still open).
    pub judgement: Option<JudgementKind>,
    /// Pay for the replica has already been settled.
    pub paid: bool,
}

/// What the server does after quarantining a provider, all in the quarantine's transaction
/// (the re-decisions may follow in their own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinePlan {
    /// Replicas still running on the provider: send `RemoveTask`.
    pub cancel: Vec<AssignmentId>,
    /// Tasks to decide again (`TaskAssurance::decide` with the provider's record now
    /// quarantined discards its results, withdraws an acceptance they supported and launches
    /// what re-verification needs). Sorted, without repeats.
    pub recheck: Vec<TaskKey>,
    /// Replicas whose pay is not settled: withhold it (the provider's judgements become
    /// `Discarded`, which is never paid).
    pub withhold_pay: Vec<AssignmentId>,
    /// Replicas already paid for results the provider's word supported: disputed; the ledger
    /// may reverse them if re-verification replaces the result.
    pub disputed_paid: Vec<AssignmentId>,
}

pub fn plan_quarantine(contributions: &[Contribution]) -> QuarantinePlan {
    let mut plan = QuarantinePlan::default();
    for contribution in contributions {
        // Whether the provider's result counts (or may count) towards the task's outcome.
        let supports_outcome = contribution.running
            || matches!(contribution.judgement, None | Some(JudgementKind::Agreed | JudgementKind::Unchecked));
        if contribution.running {
            plan.cancel.push(contribution.assignment);
        }
        if supports_outcome {
            plan.recheck.push(contribution.task);
            if contribution.paid {
                plan.disputed_paid.push(contribution.assignment);
            }
        }
        if !contribution.paid {
            plan.withhold_pay.push(contribution.assignment);
        }
    }
    plan.recheck.sort();
    plan.recheck.dedup();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_rechecks_what_the_provider_supported_and_withholds_unpaid_work() {
        let job = JobId::random();
        let task = |index| TaskKey { job, index };
        let contributions = [
            Contribution { task: task(1), assignment: AssignmentId(10), running: true, judgement: None, paid: false },
            Contribution { task: task(2), assignment: AssignmentId(11), running: false, judgement: None, paid: false },
            Contribution {
                task: task(3),
                assignment: AssignmentId(12),
                running: false,
                judgement: Some(JudgementKind::Agreed),
                paid: true,
            },
            Contribution {
                task: task(4),
                assignment: AssignmentId(13),
                running: false,
                judgement: Some(JudgementKind::Unchecked),
                paid: false,
            },
            Contribution {
                task: task(5),
                assignment: AssignmentId(14),
                running: false,
                judgement: Some(JudgementKind::Disagreed),
                paid: false,
            },
            Contribution {
                task: task(3),
                assignment: AssignmentId(15),
                running: false,
                judgement: Some(JudgementKind::Agreed),
                paid: false,
            },
        ];
        let plan = plan_quarantine(&contributions);
        assert_eq!(plan.cancel, vec![AssignmentId(10)]);
        assert_eq!(plan.recheck, vec![task(1), task(2), task(3), task(4)]);
        assert_eq!(
            plan.withhold_pay,
            vec![AssignmentId(10), AssignmentId(11), AssignmentId(13), AssignmentId(14), AssignmentId(15)]
        );
        assert_eq!(plan.disputed_paid, vec![AssignmentId(12)]);
        assert_eq!(plan_quarantine(&[]), QuarantinePlan::default());
    }
}
