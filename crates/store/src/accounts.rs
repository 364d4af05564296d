//! Accounts and what they pay for: the ledger's state (through `ledger()`), the journal of work
//! (one record per assignment, billed later), notices waiting to be sent to clients, and
//! clients' settings.

use idlegrid_types::{JobId, PartyId};

use crate::StoreResult;
use crate::model::*;

/// Money and what it pays for: the ledger, the journal of work, notices and client settings.
pub trait AccountsTx {
    /// The ledger's state (accounts, transfers, reservations), in this same transaction.
    fn ledger(&mut self) -> &mut dyn idlegrid_ledger::LedgerStore;
    /// The journal of work (P7.1): one record per assignment, keyed by the assignment id.
    fn upsert_work_record(&mut self, record: &idlegrid_ledger::WorkRecord) -> StoreResult<()>;
    fn work_record(&mut self, id: u64) -> StoreResult<Option<idlegrid_ledger::WorkRecord>>;
    /// Records not fully billed yet, launched before `launched_before_ms`, oldest first.
    fn unbilled_work_records(
        &mut self,
        launched_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>>;
    fn mark_work_records_billed(&mut self, ids: &[u64]) -> StoreResult<()>;
    /// Every journal record of a job, billed or not (statements, audits).
    fn work_records_of_job(&mut self, job: JobId) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>>;
    fn unbilled_records_of_job(&mut self, job: JobId) -> StoreResult<u64>;
    fn push_notice(&mut self, client: &PartyId, channel: &str, body: &str, now_ms: u64) -> StoreResult<i64>;
    fn due_notices(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<NoticeRow>>;
    fn notice_attempted(&mut self, id: i64, delivered: bool, next_try_ms: u64, error: Option<&str>) -> StoreResult<()>;
    fn client_settings(&mut self, client: &PartyId) -> StoreResult<Option<String>>;
    fn set_client_settings(&mut self, client: &PartyId, body: &str) -> StoreResult<()>;
}
