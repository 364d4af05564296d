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

    proptest! {
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
