//! Behaviour every store implementation must have. Call [`run_all`] with a factory of empty
//! stores; each check panics with a description on failure. Together the checks call every
//! method of [`Tx`] and of [`idlegrid_ledger::LedgerStore`] and assert what it returns.

use std::collections::BTreeMap;

use idlegrid_ledger::{
    AccountId, Action, IdempotencyKey, Ledger, LedgerError, LedgerTotals, Memo, Micros, OverLimit, Purpose,
    Reservation, ReservationKind, Transfer, TransferId, TransferRequest, WorkRecord,
};
use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, FailureKind, JobCounts, JobId, JobProperties, JobState, PartyId, Role,
    SessionId, TaskFailureInfo, TaskState,
};

use crate::*;

mod accounts;
mod caches;
mod deliveries;
mod elements;
mod jobs;
mod market;
mod providers;
mod requests;
mod sessions;
mod system;
mod watches;
mod web;
pub use accounts::*;
pub use caches::cache_reports_replace_and_find_holders;
pub use deliveries::deliveries_queue_retry_and_go_with_their_job;
pub use elements::*;
pub use jobs::*;
pub use market::{market_refuses_conflicts_and_rolls_back, market_rows_round_trip_in_order};
pub use providers::*;
pub use requests::{requests_move_money_once_and_roll_back, requests_round_trip_and_filter};
pub use sessions::*;
pub use system::*;
pub use watches::{a_deleted_session_forgets_its_watches, watches_round_trip_and_forget_their_marks};
pub use web::{web_entries_are_spent_touched_and_expire, web_pages_read_tasks_by_page_and_results_by_time};

type R<T> = Result<T, StoreError>;

fn party(n: u8, role: Role) -> PartyRow {
    let public_key = [n; 32];
    PartyRow { id: PartyId::from_public_key(&public_key), role, public_key, name: format!("p{n}"), created_ms: 1 }
}

fn job(client: &PartyId) -> JobRow {
    JobRow {
        id: JobId::random(),
        client: client.clone(),
        properties: JobProperties { name: "j".into(), ..JobProperties::default() },
        state: JobState::Defining,
        counts: JobCounts::default(),
        created_ms: 5,
        hold: None,
    }
}

fn tasks(range: std::ops::Range<u64>, priority: i32) -> Vec<NewTask> {
    range
        .map(|index| NewTask {
            index,
            priority,
            executable: ElementHash::of(b"exe"),
            data: BTreeMap::from([("in".to_string(), ElementHash::of(b"data"))]),
            params: format!("i={index}").into_bytes(),
            trace: None,
        })
        .collect()
}

fn ledger_failed(error: LedgerError) -> StoreError {
    StoreError::Conflict(error.to_string())
}

pub fn run_all<S: Store>(make: impl Fn() -> S) {
    parties_are_unique(&make());
    revocations_are_kept_once(&make());
    census_counts_from_jobs_and_providers(&make());
    logs_are_filtered_newest_first_and_expire(&make());
    outbox_sequences_and_acks(&make());
    rollback_discards_everything(&make());
    tasks_queue_in_priority_order(&make());
    queued_tasks_with_deadline_come_by_priority_then_deadline(&make());
    assignments_track_provider_load(&make());
    results_page_and_delivery(&make());
    deleting_a_job_removes_its_rows(&make());
    elements_are_referenced_by_grants_and_jobs(&make());
    checkpoints_hold_their_elements_until_released(&make());
    meta_and_client_settings(&make());
    sessions_expire_and_delete_with_their_rows(&make());
    providers_keep_session_and_load_across_updates(&make());
    tasks_keep_their_fields(&make());
    jobs_round_trip_with_states_and_holds(&make());
    completed_jobs_and_archived_results(&make());
    work_records_are_journaled_and_billed(&make());
    notices_wait_until_delivered(&make());
    assurance_state_wants_replicas_of_running_tasks(&make());
    assured_tasks_of_provider_are_listed_once(&make());
    provider_records_keep_the_quarantine_flag(&make());
    known_answers_are_newest_first_and_replaced(&make());
    spot_checks_belong_to_assignments(&make());
    deleting_tasks_and_jobs_removes_their_assurance(&make());
    ledger_store_round_trips(&make());
    ledger_moves_money_once_and_rolls_back(&make());
    requests_round_trip_and_filter(&make());
    requests_move_money_once_and_roll_back(&make());
    market_rows_round_trip_in_order(&make());
    market_refuses_conflicts_and_rolls_back(&make());
    web_entries_are_spent_touched_and_expire(&make());
    web_pages_read_tasks_by_page_and_results_by_time(&make());
    watches_round_trip_and_forget_their_marks(&make());
    a_deleted_session_forgets_its_watches(&make());
    cache_reports_replace_and_find_holders(&make());
    deliveries_queue_retry_and_go_with_their_job(&make());
}

pub fn rollback_discards_everything(store: &impl Store) {
    let p = party(3, Role::Client);
    let result: R<()> = store.write(|tx| {
        tx.insert_party(&p)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(result.is_err());
    store
        .write(|tx| -> R<()> {
            assert!(tx.party(&p.id)?.is_none(), "a failed transaction leaves nothing behind");
            Ok(())
        })
        .unwrap();
}

/// A read of one row, whose result only matters by being an error or not.
type Read<'a> = dyn Fn(&mut dyn Tx) -> R<()> + 'a;

/// A row the store cannot decode is reported as [`StoreError::Corrupt`], never replaced by a
/// default, in every backend. `execute` runs a statement on the store's database behind its
/// back (the statements are plain SQL that SQLite and PostgreSQL both accept); not part of
/// [`run_all`], since only a backend's own tests can reach its database.
pub fn corrupt_rows_are_errors<S: Store>(store: &S, execute: impl Fn(&S, &str)) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider).id;
    let j = job(&client.id);
    let session = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.upsert_provider(&provider, NodeState::Active, 2, 2, 1)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..1, 0))?;
            let key = tx.task(j.id, 0)?.expect("the task was inserted").key;
            let result = NewResult {
                task: key,
                job: j.id,
                index: 0,
                state: TaskState::Succeeded,
                result: None,
                failure: None,
                cpu_ms: 1,
                attempts: 1,
            };
            tx.insert_result(&result, 2)?;
            let attachment =
                AttachmentRow { session, job: j.id, replay: Replay::All, cursor: 0, completion_sent: false };
            tx.upsert_attachment(&attachment)
        })
        .unwrap();
    let reads: [(&str, &Read); 7] = [
        ("UPDATE parties SET role = 'king'", &|tx| tx.party(&client.id).map(drop)),
        ("UPDATE providers SET state = 'dancing'", &|tx| tx.provider(&provider).map(drop)),
        ("UPDATE providers SET state = 'active', last_contact_ms = -5", &|tx| tx.provider(&provider).map(drop)),
        ("UPDATE tasks SET state = 'exploded'", &|tx| tx.task(j.id, 0).map(drop)),
        ("UPDATE jobs SET properties = '[1'", &|tx| tx.job(j.id).map(drop)),
        ("UPDATE results SET state = 'sideways'", &|tx| tx.results_after(j.id, 0, false, 10).map(drop)),
        ("UPDATE attachments SET replay = 'sometimes'", &|tx| tx.attachments_of_job(j.id).map(drop)),
    ];
    for (statement, read) in reads {
        execute(store, statement);
        match store.read(|tx| read(tx)) {
            Err(StoreError::Corrupt(message)) => assert!(!message.is_empty(), "{statement}"),
            other => panic!("after {statement}: {other:?}, not a corrupt row"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_in_memory_conforms() {
        super::run_all(|| crate::SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn sqlite_file_conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        super::parties_are_unique(&crate::SqliteStore::open(&path).unwrap());
        // Reopening runs no migration twice and keeps the data.
        let store = crate::SqliteStore::open(&path).unwrap();
        use crate::Store;
        let n: usize = store
            .write(|tx| -> Result<usize, crate::StoreError> {
                Ok(tx.party(&idlegrid_types::PartyId::from_public_key(&[1; 32]))?.into_iter().count())
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}
