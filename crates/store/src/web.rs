//! The web manager's tables, reached through `Tx::web()`: sign-in links and browser sessions
//! (so that every server instance on one database accepts the same cookie), and the read
//! queries its pages need on big jobs: one page of a job's tasks by index, and how many results
//! arrived in each interval of time (the chart's history), without reading every row; and the
//! last health report of every server instance.
//!
//! Tokens are stored as the hexadecimal SHA-256 of the secret the browser holds, never the
//! secret itself. The store never reads the clock: expiry times are computed by the caller.

use idlegrid_types::{JobId, PartyId, Role, TaskIndex, TaskState};

use crate::StoreResult;

/// Whether an entry is a sign-in link waiting to be opened or an open browser session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebEntryKind {
    Link,
    Session,
}

impl WebEntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebEntryKind::Link => "link",
            WebEntryKind::Session => "session",
        }
    }

    pub fn parse(text: &str) -> Option<WebEntryKind> {
        match text {
            "link" => Some(WebEntryKind::Link),
            "session" => Some(WebEntryKind::Session),
            _ => None,
        }
    }
}

/// A link or a session, keyed by the SHA-256 (hex) of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebEntryRow {
    pub key: String,
    pub kind: WebEntryKind,
    pub party: PartyId,
    pub role: Role,
    /// The session's CSRF token; empty for a link.
    pub csrf: String,
    pub started_ms: u64,
    pub last_seen_ms: u64,
    /// When it stops working, as computed by the caller at its last use.
    pub expires_ms: u64,
}

/// One task of a job as its page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    pub index: TaskIndex,
    pub state: TaskState,
    pub attempts: u32,
    pub cpu_ms: u64,
    pub progress: f32,
}

/// Results of a job that arrived in one interval `[start_ms, start_ms + width)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultBucket {
    pub start_ms: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// What a server instance last reported of its health, for the operators' page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceReport {
    pub instance: String,
    pub reported_ms: u64,
    /// The instance's status document (JSON).
    pub body: String,
}

/// The web manager's operations inside a transaction.
pub trait WebTx {
    /// Store a new link or session; a key already stored is an error.
    fn insert_web_entry(&mut self, entry: &WebEntryRow) -> StoreResult<()>;
    /// The entry of a key and kind, if stored.
    fn web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>>;
    /// Remove an entry and return it (a link is spent by opening it, whatever happens next).
    fn take_web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>>;
    /// Record a session's use; false if it is not stored.
    fn touch_web_entry(&mut self, key: &str, last_seen_ms: u64, expires_ms: u64) -> StoreResult<bool>;
    /// Remove every link and session of a party; how many were removed.
    fn delete_web_entries_of(&mut self, party: &PartyId) -> StoreResult<u64>;
    /// Remove every entry that expired at or before `now_ms`; how many were removed.
    fn delete_expired_web_entries(&mut self, now_ms: u64) -> StoreResult<u64>;
    /// How many entries of a kind are stored and not expired at `now_ms`.
    fn count_web_entries(&mut self, kind: WebEntryKind, now_ms: u64) -> StoreResult<u64>;
    /// Up to `limit` tasks of a job with an index above `after` (all from the first without),
    /// by index.
    fn task_page(&mut self, job: JobId, after: Option<TaskIndex>, limit: u32) -> StoreResult<Vec<TaskLine>>;
    /// The job's results created at or after `since_ms`, counted per interval of `width_ms`
    /// (intervals start at multiples of `width_ms`), oldest first; empty intervals are left out.
    fn result_history(&mut self, job: JobId, since_ms: u64, width_ms: u64) -> StoreResult<Vec<ResultBucket>>;
    /// The engines running the job's running tasks now (one entry per placement), at most
    /// `limit`: read from the running tasks, not from all of the job's.
    fn running_engines(&mut self, job: JobId, limit: u32) -> StoreResult<Vec<PartyId>>;
    /// Record an instance's report, replacing its previous one.
    fn put_instance_report(&mut self, report: &InstanceReport) -> StoreResult<()>;
    /// Up to `limit` instances' reports, by instance name.
    fn instance_reports(&mut self, limit: u32) -> StoreResult<Vec<InstanceReport>>;
}
