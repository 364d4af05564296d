//! Attachments a client narrows (P1.4): to one task of a job, and to its own pattern of
//! interim statuses (every so many seconds, every so many percent of progress) instead of
//! every one the server gets. `interim_due` is the pure decision; the store keeps the pattern
//! and, per task, the last interim status sent (`Tx::watches()`).

use idlegrid_protocol::messages::{InterimPattern, TaskStatusReport};
use idlegrid_store::{InterimMark, StoreError, Tx, WatchRow};
use idlegrid_types::{JobId, SessionId, TaskIndex};

/// Whether an interim status at `progress` (0..=1) goes to a session whose last one for the
/// task went at `last`, under a pattern of at most one every `every_ms` and only after
/// `every_percent` of progress. The first one always goes.
pub fn interim_due(
    every_ms: Option<u64>,
    every_percent: Option<f64>,
    last: Option<&InterimMark>,
    now_ms: u64,
    progress: f64,
) -> bool {
    let Some(last) = last else { return true };
    let time_ok = every_ms.is_none_or(|every| now_ms.saturating_sub(last.sent_ms) >= every);
    // A hair under the step still counts: progress is reported as a 32-bit float.
    let progress_ok = every_percent.is_none_or(|step| (progress - last.progress) * 100.0 >= step - 1e-4);
    time_ok && progress_ok
}

/// The stored form of an attachment's narrowing; `None` when it narrows nothing.
pub fn watch_row(
    session: SessionId,
    job: JobId,
    task: Option<TaskIndex>,
    interim: Option<InterimPattern>,
) -> Option<WatchRow> {
    let interim = interim.unwrap_or_default();
    let every_ms = interim.every_secs.map(|s| u64::from(s) * 1000);
    let every_percent = interim.every_percent.map(f64::from);
    if task.is_none() && every_ms.is_none() && every_percent.is_none() {
        return None;
    }
    Some(WatchRow { session, job, task, every_ms, every_percent })
}

/// Whether a session attached to a job gets this interim status now; records it if so.
pub(crate) fn take_interim(
    tx: &mut dyn Tx,
    session: SessionId,
    report: &TaskStatusReport,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let Some(watch) = tx.watches().watch(session, report.job)? else { return Ok(true) };
    if watch.task.is_some_and(|task| task != report.task) {
        return Ok(false);
    }
    if watch.every_ms.is_none() && watch.every_percent.is_none() {
        return Ok(true);
    }
    let last = tx.watches().interim_mark(session, report.job, report.task)?;
    let progress = f64::from(report.progress);
    if !interim_due(watch.every_ms, watch.every_percent, last.as_ref(), now_ms, progress) {
        return Ok(false);
    }
    tx.watches().set_interim_mark(session, report.job, report.task, &InterimMark { sent_ms: now_ms, progress })?;
    Ok(true)
}

/// The one task a session's attachment to a job is narrowed to, if any.
pub(crate) fn only_task(tx: &mut dyn Tx, session: SessionId, job: JobId) -> Result<Option<TaskIndex>, StoreError> {
    Ok(tx.watches().watch(session, job)?.and_then(|w| w.task))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(sent_ms: u64, progress: f64) -> InterimMark {
        InterimMark { sent_ms, progress }
    }

    #[test]
    fn the_first_interim_status_always_goes() {
        assert!(interim_due(Some(60_000), Some(50.0), None, 0, 0.0));
    }

    #[test]
    fn a_period_holds_statuses_back_until_it_passed() {
        let last = mark(1_000, 0.1);
        assert!(!interim_due(Some(5_000), None, Some(&last), 5_999, 0.9));
        assert!(interim_due(Some(5_000), None, Some(&last), 6_000, 0.1));
    }

    #[test]
    fn a_step_of_progress_holds_statuses_back_until_it_is_made() {
        let last = mark(0, 0.2);
        assert!(!interim_due(None, Some(10.0), Some(&last), 1_000_000, 0.29));
        assert!(interim_due(None, Some(10.0), Some(&last), 1, 0.3f32 as f64));
        assert!(!interim_due(Some(1_000), Some(10.0), Some(&last), 500, 0.5), "both bounds hold");
    }

    #[test]
    fn an_attachment_that_narrows_nothing_is_not_stored() {
        let (session, job) = (SessionId::random(), JobId::random());
        assert_eq!(watch_row(session, job, None, None), None);
        assert_eq!(watch_row(session, job, None, Some(InterimPattern::default())), None);
        let row = watch_row(session, job, Some(2), Some(InterimPattern { every_secs: Some(3), every_percent: None }));
        assert_eq!(row.map(|r| (r.task, r.every_ms)), Some((Some(2), Some(3_000))));
    }
}
