//! Checkpoints that travel (P1.5, P3.8, P4.5): how often an engine uploads a running task's
//! checkpoint, and whether an engine whose owner came back should hand its tasks over
//! (migration). The decisions are pure functions; `migrate_if_busy` carries them out.

use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_scheduler::availability::{INTERVAL_MINUTES, WEEK_INTERVALS, WeeklySignature, interval_of_week};
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::PartyId;

use crate::{Coordinator, Effects};

/// The server's bounds on checkpoint uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointUploads {
    /// The period of a job that names none; `None`: no periodic uploads for such jobs.
    pub default_ms: Option<u64>,
    /// The shortest period a job may ask for (uploads cost the server bandwidth and storage).
    pub min_ms: u64,
}

impl Default for CheckpointUploads {
    fn default() -> Self {
        CheckpointUploads { default_ms: None, min_ms: 10_000 }
    }
}

impl CheckpointUploads {
    /// The period an engine is told for a task of a job that asks for `job_secs`: the job's
    /// wish, or the server's default, never shorter than the server's minimum.
    pub fn period_ms(&self, job_secs: Option<u64>) -> Option<u64> {
        let wanted = job_secs.map(|s| s.saturating_mul(1000)).or(self.default_ms)?;
        Some(wanted.max(self.min_ms).max(1))
    }
}

/// Whether an engine that just paused (its owner came back) should hand its running tasks over
/// to other engines: when its availability history expects it to stay busy for longer than
/// `busy_ms_min` from now. `expected_busy_ms` is the history's estimate (`None`: no history
/// yet, so no migration on a guess).
pub fn should_migrate(expected_busy_ms: Option<u64>, busy_ms_min: Option<u64>) -> bool {
    match (expected_busy_ms, busy_ms_min) {
        (Some(expected), Some(min)) => expected >= min,
        _ => false,
    }
}

/// How long (ms, at most a week) an engine is expected to stay unavailable from `now_minute`
/// on, by its weekly signature: the 15-minute intervals from now on whose CPU availability is
/// below one half, counted until the first that is not (the current one from now to its end).
pub fn expected_busy_ms(signature: &WeeklySignature, now_minute: u64) -> u64 {
    let into_interval = now_minute % INTERVAL_MINUTES;
    let mut minutes = 0;
    for step in 0..WEEK_INTERVALS as u64 {
        let minute = now_minute + step * INTERVAL_MINUTES;
        if signature.cpu(interval_of_week(minute)) >= 0.5 {
            break;
        }
        minutes += if step == 0 { INTERVAL_MINUTES - into_interval } else { INTERVAL_MINUTES };
    }
    minutes * 60_000
}

impl Coordinator {
    /// An engine said it paused (its owner came back): when its availability history expects
    /// it busy for long, its running tasks are asked back (`Stop`), checkpoint and all; each
    /// handed back is queued again and resumes from that checkpoint on another engine.
    pub(crate) fn migrate_if_busy(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u32, StoreError> {
        let Some(busy_ms_min) = self.config.migrate_after_busy_ms else { return Ok(0) };
        let Some(history) = self.provider_profile(tx, provider)?.and_then(|p| p.availability()) else {
            return Ok(0);
        };
        // Like a cluster's members, an engine needs enough history before its signature is
        // believed (a new history's unseen intervals all read as unavailable).
        let window_min = self.config.scheduler.rating_window_minutes_min;
        if history.ratings().is_none_or(|r| r.window_minutes < window_min) {
            return Ok(0);
        }
        let expected = expected_busy_ms(history.signature(), now_ms / 60_000);
        if !should_migrate(Some(expected), Some(busy_ms_min)) {
            return Ok(0);
        }
        let mut asked = 0;
        for assignment in tx.active_assignments_of_provider(provider)? {
            let Some(task) = tx.task_by_key(assignment.task)? else { continue };
            if self.is_benchmark(&task) || tx.spot_check(assignment.id)?.is_some() {
                continue;
            }
            self.tell_provider(tx, provider, &ServerToProvider::Stop { assignment: assignment.id }, fx)?;
            asked += 1;
        }
        if asked > 0 {
            tracing::info!(%provider, tasks = asked, expected_busy_min = expected / 60_000, "engine busy for long: its tasks move");
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_sets_the_period_and_the_server_bounds_it() {
        let bounds = CheckpointUploads { default_ms: Some(300_000), min_ms: 10_000 };
        assert_eq!(bounds.period_ms(None), Some(300_000));
        assert_eq!(bounds.period_ms(Some(60)), Some(60_000));
        assert_eq!(bounds.period_ms(Some(1)), Some(10_000), "never below the server's minimum");
        assert_eq!(bounds.period_ms(Some(u64::MAX)), Some(u64::MAX), "no overflow");
        let off = CheckpointUploads { default_ms: None, min_ms: 0 };
        assert_eq!(off.period_ms(None), None, "no default: only jobs that ask upload");
        assert_eq!(off.period_ms(Some(2)), Some(2_000));
    }

    #[test]
    fn migration_needs_an_expected_busy_spell_long_enough() {
        assert!(should_migrate(Some(3_600_000), Some(600_000)));
        assert!(!should_migrate(Some(60_000), Some(600_000)), "a short absence of the engine: wait for it");
        assert!(!should_migrate(None, Some(600_000)), "no history: no guess");
        assert!(!should_migrate(Some(3_600_000), None), "migration switched off");
    }

    #[test]
    fn the_busy_spell_runs_to_the_first_available_interval() {
        // Busy (0.0) everywhere but Monday from 09:00 (interval 36) on.
        let cpu: Vec<f64> = (0..WEEK_INTERVALS).map(|i| if (36..60).contains(&i) { 1.0 } else { 0.0 }).collect();
        let signature = WeeklySignature::from_probabilities(&cpu, &cpu).unwrap();
        // A Monday 08:10 UTC: 1970-01-05 is a Monday.
        let monday_0810 = 4 * 24 * 60 + 8 * 60 + 10;
        assert_eq!(expected_busy_ms(&signature, monday_0810), 50 * 60_000, "5 minutes, then 3 intervals");
        assert_eq!(expected_busy_ms(&signature, monday_0810 + 60), 0, "09:10: available");
        let never = WeeklySignature::constant(0.0, 0.0);
        assert_eq!(expected_busy_ms(&never, 0), 7 * 24 * 3_600_000, "at most a week");
    }
}
