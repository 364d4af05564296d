//! Deadlines in the scheduling pass (P1.1), as pure decisions: the order of candidate tasks
//! (higher priority first, then the earliest deadline, then the oldest), the outlook of a task
//! against its job's deadline (estimated finish from the job's work per task and the measured
//! speed of the fastest engine), and the extra replica a task at risk gets.

use std::cmp::Ordering;

/// A task ends before its deadline with some margin only if `RISK_MARGIN` times its estimated
/// run time still fits; tighter than that, it is at risk and gets an extra replica.
pub const RISK_MARGIN: f64 = 1.5;

/// A candidate task as the pass orders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The task's key in the store: lower is older.
    pub key: i64,
    pub priority: i32,
    /// The job's deadline, milliseconds since 1970.
    pub deadline_ms: Option<u64>,
}

/// The order of the pass: priority (highest first), then deadline (earliest first, none last),
/// then age (oldest first).
pub fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (a.deadline_ms, b.deadline_ms) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.key.cmp(&b.key))
}

/// Merge the head of the queue and the head of the tasks with a deadline into one list in the
/// pass's order, each task once, at most `limit` long.
pub fn merge(queued: &[Candidate], with_deadline: &[Candidate], limit: usize) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = with_deadline.to_vec();
    for candidate in queued {
        if !all.iter().any(|c| c.key == candidate.key) {
            all.push(*candidate);
        }
    }
    all.sort_by(compare);
    all.truncate(limit);
    all
}

/// How a task stands against its job's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlook {
    /// The job has no deadline.
    NoDeadline,
    /// Expected to finish in time with margin (or nothing says otherwise).
    OnTime,
    /// Expected to finish in time, but without `RISK_MARGIN`: worth an extra replica.
    AtRisk,
    /// Will not finish in time even on the fastest engine, or the deadline has passed.
    Late,
}

/// The outlook of a task started now: `work_gflop_hours` is the job's estimate of a task's
/// work, `speed_gflops` the measured speed of the fastest engine that could run it. Without an
/// estimate (or without an engine), only a deadline already past counts as late.
pub fn outlook(
    now_ms: u64,
    deadline_ms: Option<u64>,
    work_gflop_hours: Option<f64>,
    speed_gflops: Option<f64>,
) -> Outlook {
    let Some(deadline) = deadline_ms else { return Outlook::NoDeadline };
    if deadline <= now_ms {
        return Outlook::Late;
    }
    let (Some(work), Some(speed)) = (work_gflop_hours, speed_gflops) else { return Outlook::OnTime };
    let Some(run_ms) = run_time_ms(work, speed) else { return Outlook::OnTime };
    let slack_ms = (deadline - now_ms) as f64;
    if run_ms > slack_ms {
        Outlook::Late
    } else if run_ms * RISK_MARGIN > slack_ms {
        Outlook::AtRisk
    } else {
        Outlook::OnTime
    }
}

/// Estimated run time in milliseconds of `work_gflop_hours` at `speed_gflops`; `None` when a
/// figure is not a usable number.
pub fn run_time_ms(work_gflop_hours: f64, speed_gflops: f64) -> Option<f64> {
    let usable = work_gflop_hours.is_finite() && work_gflop_hours >= 0.0 && speed_gflops.is_finite();
    (usable && speed_gflops > 0.0).then(|| work_gflop_hours / speed_gflops * 3_600_000.0)
}

/// Replicas a task gets: one more than it asks for when it is at risk (another engine may finish
/// first), as many as it asks for otherwise. A late task gets no extra: it cannot help.
pub fn replicas(wanted: u32, outlook: Outlook) -> u32 {
    match outlook {
        Outlook::AtRisk => wanted.saturating_add(1),
        _ => wanted,
    }
}

/// The line `idlegrid job explain` prints about a job's deadline; `None` without one.
pub fn explain(
    now_ms: u64,
    deadline_ms: Option<u64>,
    work_gflop_hours: Option<f64>,
    speed_gflops: Option<f64>,
) -> Option<String> {
    let deadline = deadline_ms?;
    let left = if deadline > now_ms {
        format!("in {}", duration(deadline - now_ms))
    } else {
        format!("passed {} ago", duration(now_ms - deadline))
    };
    let estimate = match (work_gflop_hours, speed_gflops) {
        (Some(work), Some(speed)) => run_time_ms(work, speed).map(|ms| {
            format!(
                "; a task of {work} GFLOP-hours takes about {} on the fastest engine ({speed:.2} GFLOPS)",
                duration(ms as u64)
            )
        }),
        _ => None,
    }
    .unwrap_or_else(|| {
        "; no estimate of the work per task (set work_per_task_gflop_hours in the job's cluster or scheduling hints)"
            .to_string()
    });
    let verdict = match outlook(now_ms, Some(deadline), work_gflop_hours, speed_gflops) {
        Outlook::Late => "the deadline will be missed",
        Outlook::AtRisk => "at risk: tasks get an extra replica",
        Outlook::OnTime | Outlook::NoDeadline => "on time so far",
    };
    Some(format!("deadline {left}{estimate}: {verdict}"))
}

/// A duration for people: "3h 20m", "45s".
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(key: i64, priority: i32, deadline_ms: Option<u64>) -> Candidate {
        Candidate { key, priority, deadline_ms }
    }

    #[test]
    fn priority_first_then_earliest_deadline_then_age() {
        let mut all = [
            candidate(1, 0, None),
            candidate(2, 0, Some(500)),
            candidate(3, 5, None),
            candidate(4, 0, Some(100)),
            candidate(5, 5, Some(900)),
            candidate(6, 0, Some(100)),
        ];
        all.sort_by(compare);
        let keys: Vec<i64> = all.iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![5, 3, 4, 6, 2, 1]);
    }

    #[test]
    fn the_order_is_total_and_consistent_on_every_small_case() {
        let deadlines = [None, Some(1), Some(2)];
        let mut all = Vec::new();
        for key in 0..3 {
            for priority in -1..=1 {
                for deadline in deadlines {
                    all.push(candidate(key, priority, deadline));
                }
            }
        }
        for a in &all {
            assert_eq!(compare(a, a), Ordering::Equal);
            for b in &all {
                assert_eq!(compare(a, b), compare(b, a).reverse(), "{a:?} {b:?}");
                for c in &all {
                    if compare(a, b) == Ordering::Less && compare(b, c) == Ordering::Less {
                        assert_eq!(compare(a, c), Ordering::Less, "{a:?} {b:?} {c:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn merging_keeps_each_task_once_in_order_up_to_the_limit() {
        let queued = [candidate(1, 0, None), candidate(2, 0, None), candidate(7, 0, Some(50))];
        let with_deadline = [candidate(7, 0, Some(50)), candidate(9, 0, Some(10))];
        let merged = merge(&queued, &with_deadline, 10);
        let keys: Vec<i64> = merged.iter().map(|c| c.key).collect();
        assert_eq!(keys, vec![9, 7, 1, 2]);
        assert_eq!(merge(&queued, &with_deadline, 2).len(), 2);
        assert!(merge(&[], &[], 5).is_empty());
        assert!(merge(&queued, &with_deadline, 0).is_empty());
    }

    #[test]
    fn outlooks() {
        let hour = 3_600_000;
        // No deadline.
        assert_eq!(outlook(0, None, Some(1.0), Some(1.0)), Outlook::NoDeadline);
        // Past or now.
        assert_eq!(outlook(10, Some(10), None, None), Outlook::Late);
        assert_eq!(outlook(10, Some(5), Some(0.0), Some(1.0)), Outlook::Late);
        // Without an estimate, a future deadline is on time.
        assert_eq!(outlook(0, Some(1), None, Some(1.0)), Outlook::OnTime);
        assert_eq!(outlook(0, Some(1), Some(1.0), None), Outlook::OnTime);
        assert_eq!(outlook(0, Some(1), Some(f64::NAN), Some(1.0)), Outlook::OnTime);
        assert_eq!(outlook(0, Some(1), Some(1.0), Some(0.0)), Outlook::OnTime);
        // One GFLOP-hour at 1 GFLOPS is an hour.
        assert_eq!(outlook(0, Some(hour - 1), Some(1.0), Some(1.0)), Outlook::Late);
        assert_eq!(outlook(0, Some(hour), Some(1.0), Some(1.0)), Outlook::AtRisk);
        assert_eq!(outlook(0, Some(hour * 3 / 2 - 1), Some(1.0), Some(1.0)), Outlook::AtRisk);
        assert_eq!(outlook(0, Some(hour * 3 / 2), Some(1.0), Some(1.0)), Outlook::OnTime);
        // Twice the speed, half the time.
        assert_eq!(outlook(0, Some(hour), Some(1.0), Some(2.0)), Outlook::OnTime);
    }

    #[test]
    fn only_tasks_at_risk_get_an_extra_replica() {
        assert_eq!(replicas(1, Outlook::AtRisk), 2);
        assert_eq!(replicas(u32::MAX, Outlook::AtRisk), u32::MAX);
        for outlook in [Outlook::NoDeadline, Outlook::OnTime, Outlook::Late] {
            assert_eq!(replicas(3, outlook), 3);
        }
    }

    #[test]
    fn explanations_say_what_will_happen() {
        assert_eq!(explain(0, None, None, None), None);
        let late = explain(0, Some(60_000), Some(10.0), Some(1.0)).unwrap();
        assert!(late.contains("in 1m 0s") && late.contains("10h 0m") && late.contains("will be missed"), "{late}");
        let past = explain(120_000, Some(60_000), None, None).unwrap();
        assert!(past.contains("passed 1m 0s ago") && past.contains("no estimate"), "{past}");
        let fine = explain(0, Some(10 * 3_600_000), Some(1.0), Some(1.0)).unwrap();
        assert!(fine.contains("on time"), "{fine}");
        let risky = explain(0, Some(3_600_000), Some(1.0), Some(1.0)).unwrap();
        assert!(risky.contains("extra replica"), "{risky}");
    }
}
