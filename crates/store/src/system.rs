//! The server's own records: metadata (key and value), the log lines engines and clients send
//! (kept for a while, filtered newest first), and the census for health reports.

use crate::StoreResult;
use crate::model::*;

/// The server's own records: metadata, the log lines engines and clients send, and the census.
pub trait SystemTx {
    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()>;
    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()>;
    /// Matching lines, newest first, at most `filter.limit`.
    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>>;
    /// Delete lines received before `before_ms`; returns how many.
    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64>;
    /// Tasks waiting and running, jobs not yet complete, engines heard from since
    /// `contact_since_ms`. Scans tables: for health reports, not for every request.
    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census>;
}
