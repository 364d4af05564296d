//! What a client narrowed its attachment to, behind `Tx::watches()`: one task of the job
//! instead of all of them, and its own pattern of interim statuses (every so many
//! milliseconds, every so many percent of progress) instead of every one. Beside it, per
//! attached task, when the last interim status went and at which progress, so the pattern
//! can be kept. Sessions and jobs are kept as their text IDs, the same in both backends.

use idlegrid_types::{JobId, SessionId, TaskIndex};

use crate::StoreResult;

/// A session's narrowing of its attachment to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchRow {
    pub session: SessionId,
    pub job: JobId,
    /// Only this task's statuses and result; `None`: every task's.
    pub task: Option<TaskIndex>,
    /// Interim statuses at most this often; `None`: no bound by time.
    pub every_ms: Option<u64>,
    /// Interim statuses only when progress moved this many percent; `None`: no bound by progress.
    pub every_percent: Option<f64>,
}

/// The last interim status of a task a session was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct InterimMark {
    pub sent_ms: u64,
    pub progress: f64,
}

pub trait WatchTx {
    /// Set (or replace) the narrowing of a session's attachment; its marks start afresh.
    fn set_watch(&mut self, watch: &WatchRow) -> StoreResult<()>;
    fn watch(&mut self, session: SessionId, job: JobId) -> StoreResult<Option<WatchRow>>;
    /// Forget a narrowing and its marks (a plain attachment, or detached).
    fn delete_watch(&mut self, session: SessionId, job: JobId) -> StoreResult<()>;
    fn interim_mark(&mut self, session: SessionId, job: JobId, task: TaskIndex) -> StoreResult<Option<InterimMark>>;
    fn set_interim_mark(
        &mut self,
        session: SessionId,
        job: JobId,
        task: TaskIndex,
        mark: &InterimMark,
    ) -> StoreResult<()>;
}
