//! Which staged task runs next (P3.2): highest priority first, then a suspended task before a
//! new one (its work is partly done), then the one that arrived first. Pure.

use idlegrid_types::AssignmentId;

/// What the policy needs to know of a task waiting to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub assignment: AssignmentId,
    pub priority: i32,
    pub suspended: bool,
    /// Order of arrival at this engine.
    pub arrival: u64,
}

fn key(c: &Candidate) -> (i32, bool, std::cmp::Reverse<u64>) {
    (c.priority, c.suspended, std::cmp::Reverse(c.arrival))
}

/// The task to start next, if any.
pub fn next_to_run(candidates: impl IntoIterator<Item = Candidate>) -> Option<Candidate> {
    candidates.into_iter().max_by_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(id: u64, priority: i32, suspended: bool, arrival: u64) -> Candidate {
        Candidate { assignment: AssignmentId(id), priority, suspended, arrival }
    }

    #[test]
    fn priority_then_suspended_then_arrival() {
        assert_eq!(next_to_run([c(1, 0, false, 1), c(2, 5, false, 2)]).unwrap().assignment.0, 2);
        assert_eq!(next_to_run([c(1, 0, false, 1), c(2, 0, true, 2)]).unwrap().assignment.0, 2);
        assert_eq!(next_to_run([c(1, 0, false, 3), c(2, 0, false, 2)]).unwrap().assignment.0, 2);
        assert_eq!(next_to_run([]), None);
    }

    proptest! {
        #[test]
        fn the_choice_is_never_beaten(list in proptest::collection::vec((-3i32..3, any::<bool>(), 0u64..50), 1..30)) {
            let candidates: Vec<Candidate> = list.iter().enumerate().map(|(i, (p, s, a))| c(i as u64, *p, *s, *a)).collect();
            let best = next_to_run(candidates.clone()).unwrap();
            for other in &candidates {
                prop_assert!(key(other) <= key(&best));
            }
        }
    }
}
