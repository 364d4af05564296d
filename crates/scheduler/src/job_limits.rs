//! Every job's maximum power and maximum cost in the scheduling pass (P1.1, P5.7), as pure
//! decisions: a job never runs on more measured GFLOPS at once than its `power_max_gflops`, and
//! is given no placement whose estimated cost would take its committed spend past its
//! `cost_max_micros`. [`place_within`] is [`crate::pass::place`] with these budgets: launches
//! that would break a job's budget are dropped, the job is held for the rest of the pass, and
//! the rooms they would have taken go to the other tasks.

use crate::pass::{Launch, place};
use crate::rooms::ReplicaDemand;

/// Slack for comparing sums of floating-point figures.
const EPSILON: f64 = 1e-9;

/// What a job may still take in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JobBudget {
    /// GFLOPS the job may add to what it runs already; `None`: no limit.
    pub power_left_gflops: Option<f64>,
    /// Micro-units the job may still commit; `None`: no limit.
    pub cost_left_micros: Option<f64>,
    /// Estimated cost of one more placement, in micro-units.
    pub cost_per_launch_micros: f64,
}

/// Why a job got no more placements in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// One more engine would take it past its maximum power.
    Power,
    /// One more placement would take its estimated spend past its maximum cost.
    Cost,
}

/// Whether one more launch of a job on an engine of `power` fits its budget; spends it if so.
pub fn admit(budget: &mut JobBudget, power: f64) -> Result<(), Held> {
    if let Some(left) = budget.power_left_gflops
        && power > left + EPSILON
    {
        return Err(Held::Power);
    }
    if let Some(left) = budget.cost_left_micros
        && budget.cost_per_launch_micros > left + EPSILON
    {
        return Err(Held::Cost);
    }
    if let Some(left) = &mut budget.power_left_gflops {
        *left -= power;
    }
    if let Some(left) = &mut budget.cost_left_micros {
        *left -= budget.cost_per_launch_micros;
    }
    Ok(())
}

/// [`place`] within each job's budget. `job_of[task]` is the index in `budgets` of the task's
/// job; `power[engine]` the engine's measured GFLOPS. Returns the launches in plan order and
/// the jobs held back, each once, with why. Guarantees: `place`'s, and no job's budget spent
/// past its limits.
pub fn place_within(
    rooms: &[u32],
    demands: &[ReplicaDemand],
    job_of: &[usize],
    power: &[f64],
    budgets: &mut [JobBudget],
) -> (Vec<Launch>, Vec<(usize, Held)>) {
    let mut left = rooms.to_vec();
    let mut demands = demands.to_vec();
    let mut kept: Vec<Launch> = Vec::new();
    let mut held: Vec<(usize, Held)> = Vec::new();
    // Each round that drops a launch holds one more job, so rounds are at most jobs + 1.
    loop {
        let mut dropped = false;
        for launch in place(&left, &demands) {
            let job = job_of[launch.task];
            if held.iter().any(|(j, _)| *j == job) {
                dropped = true;
                continue;
            }
            match admit(&mut budgets[job], power[launch.engine]) {
                Ok(()) => {
                    left[launch.engine] -= 1;
                    let demand = &mut demands[launch.task];
                    demand.wanted -= 1;
                    demand.excluded.push(launch.engine);
                    kept.push(launch);
                }
                Err(why) => {
                    held.push((job, why));
                    dropped = true;
                }
            }
        }
        if !dropped {
            break;
        }
        for (task, demand) in demands.iter_mut().enumerate() {
            if held.iter().any(|(j, _)| *j == job_of[task]) {
                demand.wanted = 0;
            }
        }
    }
    // Plan order: by task, as `place` gives it.
    kept.sort_by_key(|launch| launch.task);
    (kept, held)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn unlimited() -> JobBudget {
        JobBudget::default()
    }

    #[test]
    fn admission_spends_the_budget_and_refuses_beyond_it() {
        let mut budget = JobBudget { power_left_gflops: Some(3.0), ..unlimited() };
        assert_eq!(admit(&mut budget, 2.0), Ok(()));
        assert_eq!(admit(&mut budget, 2.0), Err(Held::Power));
        assert_eq!(admit(&mut budget, 1.0), Ok(()));
        assert_eq!(admit(&mut budget, 0.5), Err(Held::Power));
        let mut budget = JobBudget { cost_left_micros: Some(250.0), cost_per_launch_micros: 100.0, ..unlimited() };
        assert_eq!(admit(&mut budget, 9.0), Ok(()));
        assert_eq!(admit(&mut budget, 9.0), Ok(()));
        assert_eq!(admit(&mut budget, 9.0), Err(Held::Cost));
        let mut free = unlimited();
        for _ in 0..100 {
            assert_eq!(admit(&mut free, 1e9), Ok(()));
        }
    }

    #[test]
    fn a_job_at_its_power_leaves_the_rooms_to_others() {
        // Two jobs, two tasks each, four engines of 1 GFLOPS with one room each; job 0 may use 1.
        let demands: Vec<ReplicaDemand> = (0..4).map(|_| ReplicaDemand::new(1, vec![])).collect();
        let job_of = [0, 0, 1, 1];
        let mut budgets = [JobBudget { power_left_gflops: Some(1.0), ..unlimited() }, unlimited()];
        let (launches, held) = place_within(&[1, 1, 1, 1], &demands, &job_of, &[1.0; 4], &mut budgets);
        let tasks: Vec<usize> = launches.iter().map(|l| l.task).collect();
        assert_eq!(tasks, vec![0, 2, 3]);
        assert_eq!(held, vec![(0, Held::Power)]);
    }

    #[test]
    fn a_job_at_its_cost_is_held_with_why() {
        let demands: Vec<ReplicaDemand> = (0..3).map(|_| ReplicaDemand::new(1, vec![])).collect();
        let mut budgets = [JobBudget { cost_left_micros: Some(150.0), cost_per_launch_micros: 100.0, ..unlimited() }];
        let (launches, held) = place_within(&[3], &demands, &[0, 0, 0], &[1.0], &mut budgets);
        assert_eq!(launches.len(), 1);
        assert_eq!(held, vec![(0, Held::Cost)]);
    }

    #[test]
    fn without_limits_it_is_the_plain_plan() {
        let demands: Vec<ReplicaDemand> = (0..6).map(|i| ReplicaDemand::new(1 + (i % 2) as u32, vec![i % 3])).collect();
        let rooms = [2, 1, 3];
        let (launches, held) =
            place_within(&rooms, &demands, &[0, 1, 0, 1, 0, 1], &[1.0, 2.0, 3.0], &mut [unlimited(), unlimited()]);
        assert!(held.is_empty());
        assert_eq!(launches, place(&rooms, &demands));
    }

    proptest! {
        #[test]
        fn budgets_rooms_and_exclusions_hold(
            rooms in proptest::collection::vec(0u32..4, 1..6),
            wants in proptest::collection::vec((1u32..3, 0usize..3), 0..12),
            powers in proptest::collection::vec(0.5f64..4.0, 6),
            limits in proptest::collection::vec((proptest::option::of(0.0f64..8.0), proptest::option::of(0.0f64..500.0)), 3),
        ) {
            let demands: Vec<ReplicaDemand> = wants.iter().map(|(w, _)| ReplicaDemand::new(*w, vec![])).collect();
            let job_of: Vec<usize> = wants.iter().map(|(_, j)| *j).collect();
            let power = &powers[..rooms.len()];
            let mut budgets: Vec<JobBudget> = limits
                .iter()
                .map(|(p, c)| JobBudget { power_left_gflops: *p, cost_left_micros: *c, cost_per_launch_micros: 100.0 })
                .collect();
            let (launches, _) = place_within(&rooms, &demands, &job_of, power, &mut budgets.clone());
            let mut used = vec![0u32; rooms.len()];
            let mut spent_power = [0.0f64; 3];
            let mut launches_of = [0u32; 3];
            for launch in &launches {
                used[launch.engine] += 1;
                spent_power[job_of[launch.task]] += power[launch.engine];
                launches_of[job_of[launch.task]] += 1;
            }
            for (engine, n) in used.iter().enumerate() {
                prop_assert!(*n <= rooms[engine]);
            }
            for (task, demand) in demands.iter().enumerate() {
                let mut engines: Vec<usize> = launches.iter().filter(|l| l.task == task).map(|l| l.engine).collect();
                prop_assert!(engines.len() as u32 <= demand.wanted);
                let n = engines.len();
                engines.sort_unstable();
                engines.dedup();
                prop_assert_eq!(engines.len(), n);
            }
            for (job, budget) in budgets.iter_mut().enumerate() {
                if let Some(p) = budget.power_left_gflops {
                    prop_assert!(spent_power[job] <= p + 1e-6);
                }
                if let Some(c) = budget.cost_left_micros {
                    prop_assert!(launches_of[job] as f64 * 100.0 <= c + 1e-6);
                }
            }
        }
    }
}
