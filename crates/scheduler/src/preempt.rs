//! Priorities across the system with preemption (P5.6), as a pure decision: which running
//! copies the server asks back (`Stop`: the engine checkpoints and hands the task back, and it
//! is queued again) so that waiting tasks of a higher priority get their engines. The operator's
//! policy bounds it: a minimum priority gap, a cap of preemptions per task (so nothing starves),
//! and aging that raises a waiting task's priority with its wait.

/// The operator's preemption policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreemptionPolicy {
    pub enabled: bool,
    /// A waiting task preempts only copies at least this much lower in priority (at least 1).
    pub priority_gap_min: i64,
    /// A task is preempted at most this many times; then it runs to its end.
    pub per_task_max: u32,
    /// Priority a waiting task gains per minute of waiting (aging); 0: none.
    pub aging_per_minute: f64,
}

impl Default for PreemptionPolicy {
    fn default() -> Self {
        PreemptionPolicy { enabled: false, priority_gap_min: 1, per_task_max: 3, aging_per_minute: 0.0 }
    }
}

impl PreemptionPolicy {
    /// Check the figures; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.priority_gap_min < 1 {
            return Err(format!("--preemption-gap = {} must be at least 1", self.priority_gap_min));
        }
        if !(self.aging_per_minute.is_finite() && self.aging_per_minute >= 0.0) {
            return Err(format!("--preemption-aging = {} must be a number of at least 0", self.aging_per_minute));
        }
        Ok(())
    }

    /// A waiting task's priority after `waited_ms` of waiting.
    pub fn aged(&self, priority: i32, waited_ms: u64) -> i64 {
        let gain = self.aging_per_minute * (waited_ms as f64 / 60_000.0);
        i64::from(priority).saturating_add(gain.min(1e12) as i64)
    }
}

/// A copy running on an engine, as the decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningCopy {
    pub priority: i32,
    /// Times its task was preempted already.
    pub preempted: u32,
    /// Its task must not be stopped (a benchmark, a spot check, a stop already asked).
    pub protected: bool,
}

/// The copies to ask back, by index into `running`: for each waiting task in turn (highest
/// aged priority first), the running copy of the lowest priority that is at least the gap
/// below it, not protected and not preempted `per_task_max` times already (ties: lowest
/// index). Each copy at most once; nothing when the policy is off.
pub fn victims(policy: &PreemptionPolicy, waiting: &[i64], running: &[RunningCopy]) -> Vec<usize> {
    if !policy.enabled {
        return Vec::new();
    }
    let mut order: Vec<i64> = waiting.to_vec();
    order.sort_unstable_by(|a, b| b.cmp(a));
    let mut eligible: Vec<usize> =
        (0..running.len()).filter(|i| !running[*i].protected && running[*i].preempted < policy.per_task_max).collect();
    eligible.sort_by_key(|i| (running[*i].priority, *i));
    let mut chosen = Vec::new();
    for (next, priority) in order.into_iter().enumerate() {
        let Some(victim) = eligible.get(next) else { break };
        if i64::from(running[*victim].priority).saturating_add(policy.priority_gap_min) > priority {
            // The lowest copy left is too close; so is every other for this and later waiters.
            break;
        }
        chosen.push(*victim);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(gap: i64, cap: u32) -> PreemptionPolicy {
        PreemptionPolicy { enabled: true, priority_gap_min: gap, per_task_max: cap, aging_per_minute: 0.0 }
    }

    fn copy(priority: i32) -> RunningCopy {
        RunningCopy { priority, preempted: 0, protected: false }
    }

    #[test]
    fn off_preempts_nothing() {
        assert!(victims(&PreemptionPolicy::default(), &[100], &[copy(0)]).is_empty());
    }

    #[test]
    fn the_lowest_copies_go_first_each_once() {
        let running = [copy(5), copy(0), copy(3), copy(0)];
        assert_eq!(victims(&on(1, 3), &[10, 10, 10], &running), vec![1, 3, 2]);
        assert_eq!(victims(&on(1, 3), &[10; 9], &running), vec![1, 3, 2, 0]);
    }

    #[test]
    fn the_gap_is_respected() {
        let running = [copy(5), copy(8)];
        assert_eq!(victims(&on(3, 3), &[8], &running), vec![0]);
        assert!(victims(&on(4, 3), &[8], &running).is_empty());
        // The second waiter is too close to what is left.
        assert_eq!(victims(&on(3, 3), &[20, 9], &running), vec![0]);
        assert_eq!(victims(&on(3, 3), &[9, 20], &running), vec![0], "waiters go by priority, not arrival");
        assert_eq!(victims(&on(3, 3), &[20, 11], &running), vec![0, 1]);
        // Equal priorities never preempt each other.
        assert!(victims(&on(1, 3), &[5], &[copy(5)]).is_empty());
    }

    #[test]
    fn the_cap_and_protection_keep_copies_running() {
        let worn = RunningCopy { preempted: 2, ..copy(0) };
        let guarded = RunningCopy { protected: true, ..copy(0) };
        assert!(victims(&on(1, 2), &[10], &[worn, guarded]).is_empty());
        assert_eq!(victims(&on(1, 3), &[10], &[worn, guarded]), vec![0]);
    }

    #[test]
    fn aging_raises_a_waiting_task() {
        let policy = PreemptionPolicy { aging_per_minute: 2.0, ..on(1, 3) };
        assert_eq!(policy.aged(0, 0), 0);
        assert_eq!(policy.aged(0, 150_000), 5);
        assert_eq!(policy.aged(i32::MAX, u64::MAX), i64::from(i32::MAX) + 1_000_000_000_000);
        assert_eq!(PreemptionPolicy::default().aged(-3, u64::MAX), -3);
        let waited = policy.aged(0, 60_000 * 10);
        assert_eq!(victims(&policy, &[waited], &[copy(15)]), vec![0]);
    }

    #[test]
    fn bad_policies_are_named() {
        assert!(
            PreemptionPolicy { priority_gap_min: 0, ..on(1, 1) }.validate().unwrap_err().contains("--preemption-gap")
        );
        let aging = PreemptionPolicy { aging_per_minute: f64::NAN, ..on(1, 1) };
        assert!(aging.validate().unwrap_err().contains("--preemption-aging"));
        on(1, 0).validate().unwrap();
    }

    /// Against a naive reading on every small case: each waiter in descending order takes the
    /// lowest eligible copy not taken yet if the gap allows, and stops at the first that fails.
    #[test]
    fn matches_the_naive_reading_on_every_small_case() {
        let priorities = [-1, 0, 2];
        let mut cases = 0;
        for code in 0..(3usize.pow(3) * 4usize.pow(3)) {
            let running: Vec<RunningCopy> = (0..3)
                .map(|i| {
                    let p = priorities[code / 3usize.pow(i) % 3];
                    let flags = code / 27 / 4usize.pow(i) % 4;
                    RunningCopy { priority: p, preempted: (flags & 1) as u32, protected: flags & 2 != 0 }
                })
                .collect();
            for waiting in [vec![], vec![1], vec![3, 0], vec![2, 2, 5]] {
                for gap in 1..=3 {
                    let policy = on(gap, 1);
                    let mut taken: Vec<usize> = Vec::new();
                    let mut sorted = waiting.clone();
                    sorted.sort_unstable_by(|a, b| b.cmp(a));
                    for w in sorted {
                        let best = (0..running.len())
                            .filter(|i| !taken.contains(i) && !running[*i].protected && running[*i].preempted < 1)
                            .min_by_key(|i| (running[*i].priority, *i));
                        match best {
                            Some(i) if i64::from(running[i].priority) + gap <= w => taken.push(i),
                            _ => break,
                        }
                    }
                    assert_eq!(victims(&policy, &waiting, &running), taken, "{running:?} {waiting:?} gap {gap}");
                    cases += 1;
                }
            }
        }
        assert!(cases > 5000, "{cases}");
    }
}
