//! The first scheduler: fills engines that ask for work (P3.1: each engine says how many tasks
//! it wants to hold) with queued tasks in priority order, spreading them so that the engine with
//! the most free room gets the next task. The coordinator still uses it for jobs that ask for no
//! virtual cluster; `placement` is the reliability model of P5.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Assign `tasks` (already in priority order) to engines with free `rooms` (`rooms[i]` tasks
/// for engine `i`). Returns `(task, engine index)` pairs, in task order.
///
/// Guarantees: no engine gets more than its room; tasks are taken strictly in order (a task is
/// placed only if every task before it is); as many tasks are placed as the total room allows;
/// each task goes to an engine with the most free room left at that moment (ties: lowest index).
pub fn fill_rooms<T: Copy>(rooms: &[u32], tasks: &[T]) -> Vec<(T, usize)> {
    let mut heap: BinaryHeap<(u32, Reverse<usize>)> =
        rooms.iter().enumerate().filter(|(_, room)| **room > 0).map(|(i, room)| (*room, Reverse(i))).collect();
    let mut plan = Vec::with_capacity(tasks.len().min(rooms.iter().map(|r| *r as usize).sum()));
    for task in tasks {
        let Some((room, Reverse(engine))) = heap.pop() else { break };
        plan.push((*task, engine));
        if room > 1 {
            heap.push((room - 1, Reverse(engine)));
        }
    }
    plan
}

/// What one task asks of a scheduling pass: `wanted` placements, each on a different engine,
/// none on an engine of `excluded` (engines that hold or held a replica of it, P6.1, or whose
/// requirements it fails). With a `rank` (one number per engine, higher preferred) the task
/// takes the allowed engines it ranks highest instead of those with the most room.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaDemand {
    pub wanted: u32,
    pub excluded: Vec<usize>,
    pub rank: Option<Vec<f64>>,
}

impl ReplicaDemand {
    /// `wanted` placements anywhere but `excluded`, with no preference.
    pub fn new(wanted: u32, excluded: Vec<usize>) -> ReplicaDemand {
        ReplicaDemand { wanted, excluded, rank: None }
    }
}

/// Place replicas of tasks (already in priority order) on engines with free `rooms`. Returns
/// `(demand index, engine index)` pairs, in demand order.
///
/// Guarantees: no engine gets more than its room; no demand gets one engine twice or an
/// engine it excludes; each demand in turn gets as many of its `wanted` placements as there
/// are allowed engines with room left, each on an allowed engine with the most room (ties:
/// lowest index), or, for a ranked demand, on the allowed engines it ranks highest (ties: most
/// room, then lowest index). With one placement wanted, nothing excluded and no rank this is
/// `fill_rooms`. Cost: O(log engines) per unranked placement, O(engines) per ranked demand.
pub fn place_replicas(rooms: &[u32], demands: &[ReplicaDemand]) -> Vec<(usize, usize)> {
    let mut left = rooms.to_vec();
    let mut total: u64 = left.iter().map(|r| *r as u64).sum();
    // Entries are (room, engine); an entry is current only while `left[engine]` equals its room.
    let mut heap: BinaryHeap<(u32, Reverse<usize>)> =
        rooms.iter().enumerate().filter(|(_, room)| **room > 0).map(|(i, room)| (*room, Reverse(i))).collect();
    let mut plan = Vec::new();
    let mut set_aside = Vec::new();
    for (index, demand) in demands.iter().enumerate() {
        if total == 0 {
            break;
        }
        if let Some(rank) = &demand.rank {
            let mut allowed: Vec<usize> =
                (0..left.len()).filter(|e| left[*e] > 0 && !demand.excluded.contains(e)).collect();
            let score = |e: usize| rank.get(e).copied().filter(|r| r.is_finite()).unwrap_or(0.0);
            allowed.sort_by(|a, b| score(*b).total_cmp(&score(*a)).then(left[*b].cmp(&left[*a])).then(a.cmp(b)));
            for engine in allowed.into_iter().take(demand.wanted as usize) {
                plan.push((index, engine));
                left[engine] -= 1;
                total -= 1;
                if left[engine] > 0 {
                    heap.push((left[engine], Reverse(engine)));
                }
            }
            continue;
        }
        let mut placed = 0;
        while placed < demand.wanted {
            let Some((room, Reverse(engine))) = heap.pop() else { break };
            if left[engine] != room {
                continue;
            }
            // Engines this demand may not use (or already got) wait aside until it is served.
            set_aside.push(engine);
            if demand.excluded.contains(&engine) {
                continue;
            }
            plan.push((index, engine));
            placed += 1;
            left[engine] -= 1;
            total -= 1;
        }
        for engine in set_aside.drain(..) {
            if left[engine] > 0 {
                heap.push((left[engine], Reverse(engine)));
            }
        }
    }
    plan
}

/// What to do with a task whose engine vanished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoss {
    /// Queue it again for another engine.
    Requeue,
    /// It has been placed as often as the job allows: fail it.
    GiveUp,
}

pub fn after_loss(attempts: u32, attempts_max: u32) -> AfterLoss {
    if attempts >= attempts_max { AfterLoss::GiveUp } else { AfterLoss::Requeue }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spreads_over_engines_by_free_room() {
        let plan = fill_rooms(&[2, 0, 3], &[10, 11, 12, 13, 14, 15]);
        assert_eq!(plan, vec![(10, 2), (11, 0), (12, 2), (13, 0), (14, 2)]);
        assert!(fill_rooms::<u8>(&[], &[1, 2]).is_empty());
        assert!(fill_rooms::<u8>(&[5], &[]).is_empty());
    }

    #[test]
    fn gives_up_after_the_allowed_attempts() {
        assert_eq!(after_loss(1, 3), AfterLoss::Requeue);
        assert_eq!(after_loss(3, 3), AfterLoss::GiveUp);
    }

    #[test]
    fn replicas_go_to_distinct_allowed_engines() {
        let demands =
            [ReplicaDemand::new(2, vec![]), ReplicaDemand::new(3, vec![0]), ReplicaDemand::new(1, vec![1, 2])];
        let plan = place_replicas(&[1, 2, 2], &demands);
        // Demand 0 takes the roomiest engines 1 and 2; demand 1 may not use 0, so it gets 1
        // and 2 again; demand 2 may only use 0, which still has its room.
        assert_eq!(plan, vec![(0, 1), (0, 2), (1, 1), (1, 2), (2, 0)]);
        assert!(place_replicas(&[3], &[ReplicaDemand::new(2, vec![])]).len() == 1, "one engine holds one replica");
    }

    proptest! {
        #[test]
        fn replica_placement_respects_rooms_distinctness_and_exclusions(
            rooms in proptest::collection::vec(0u32..6, 0..10),
            demands in proptest::collection::vec((0u32..5, proptest::collection::vec(0usize..10, 0..4)), 0..40),
        ) {
            let demands: Vec<ReplicaDemand> = demands.into_iter().map(|(wanted, excluded)| ReplicaDemand::new(wanted, excluded)).collect();
            let plan = place_replicas(&rooms, &demands);
            let mut used = vec![0u32; rooms.len()];
            let mut per_demand: Vec<Vec<usize>> = vec![Vec::new(); demands.len()];
            for (demand, engine) in &plan {
                used[*engine] += 1;
                prop_assert!(!demands[*demand].excluded.contains(engine), "excluded engine used");
                prop_assert!(!per_demand[*demand].contains(engine), "one engine twice for a demand");
                per_demand[*demand].push(*engine);
            }
            for (u, r) in used.iter().zip(&rooms) {
                prop_assert!(u <= r);
            }
            // Greedy completeness: a demand short of what it wanted left no allowed engine
            // with room at its turn, so every allowed engine it did not get is full at the end.
            for (i, demand) in demands.iter().enumerate() {
                if (per_demand[i].len() as u32) < demand.wanted {
                    for engine in 0..rooms.len() {
                        if !demand.excluded.contains(&engine) && !per_demand[i].contains(&engine) {
                            prop_assert_eq!(used[engine], rooms[engine], "engine {} had room for demand {}", engine, i);
                        }
                    }
                }
            }
            prop_assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0), "demand order");
        }

        #[test]
        fn a_ranked_demand_takes_the_allowed_engines_it_ranks_highest(
            rooms in proptest::collection::vec(0u32..4, 1..10),
            ranks in proptest::collection::vec(-5i32..5, 10),
            excluded in proptest::collection::vec(0usize..10, 0..4),
            wanted in 1u32..4,
        ) {
            let rank: Vec<f64> = ranks[..rooms.len()].iter().map(|r| *r as f64).collect();
            let demand = ReplicaDemand { wanted, excluded: excluded.clone(), rank: Some(rank.clone()) };
            let plan = place_replicas(&rooms, &[demand]);
            let chosen: Vec<usize> = plan.iter().map(|(_, engine)| *engine).collect();
            let allowed: Vec<usize> = (0..rooms.len()).filter(|e| rooms[*e] > 0 && !excluded.contains(e)).collect();
            prop_assert_eq!(chosen.len(), allowed.len().min(wanted as usize));
            for engine in &allowed {
                if !chosen.contains(engine) {
                    for taken in &chosen {
                        prop_assert!(rank[*taken] >= rank[*engine], "engine {} ranked {} was passed over", engine, rank[*engine]);
                    }
                }
            }
        }

        #[test]
        fn single_replicas_without_exclusions_are_fill_rooms(
            rooms in proptest::collection::vec(0u32..20, 0..12),
            n_tasks in 0usize..100,
        ) {
            let tasks: Vec<usize> = (0..n_tasks).collect();
            let demands: Vec<ReplicaDemand> = tasks.iter().map(|_| ReplicaDemand::new(1, vec![])).collect();
            prop_assert_eq!(place_replicas(&rooms, &demands), fill_rooms(&rooms, &tasks));
        }

        #[test]
        fn never_exceeds_rooms_and_places_a_prefix(
            rooms in proptest::collection::vec(0u32..20, 0..12),
            n_tasks in 0usize..200,
        ) {
            let tasks: Vec<usize> = (0..n_tasks).collect();
            let plan = fill_rooms(&rooms, &tasks);
            let total: usize = rooms.iter().map(|r| *r as usize).sum();
            prop_assert_eq!(plan.len(), n_tasks.min(total));
            for (i, (task, _)) in plan.iter().enumerate() {
                prop_assert_eq!(*task, i, "tasks are placed in order");
            }
            let mut used = vec![0u32; rooms.len()];
            for (_, engine) in &plan {
                used[*engine] += 1;
            }
            for (u, r) in used.iter().zip(&rooms) {
                prop_assert!(u <= r);
            }
            // Balance: an engine only gets a task while it has the most room, so every engine
            // that got one ends with at most one slot less than the roomiest engine.
            let left: Vec<u32> = rooms.iter().zip(&used).map(|(r, u)| r - u).collect();
            let most = left.iter().copied().max().unwrap_or(0);
            for (l, u) in left.iter().zip(&used) {
                if *u > 0 {
                    prop_assert!(l + 1 >= most, "left {:?} used {:?}", left, used);
                }
            }
        }
    }
}
