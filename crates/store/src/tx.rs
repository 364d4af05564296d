//! The domain operations available inside a transaction.

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::NodeState;
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, JobCounts, JobId, JobState, PartyId, SessionId, TaskIndex, TaskState,
};

use crate::StoreResult;
use crate::model::*;

/// Everything the coordinator may do to durable state, inside one transaction.
pub trait Tx {
    /// The ledger's state (accounts, transfers, reservations), in this same transaction.
    fn ledger(&mut self) -> &mut dyn idlegrid_ledger::LedgerStore;
    /// The market's tables (offers, requests, negotiations, contracts), in this same transaction.
    fn market(&mut self) -> &mut dyn crate::market::MarketTx;
    /// Attachments narrowed to one task or a pattern of interim statuses, in this same transaction.
    fn watches(&mut self) -> &mut dyn crate::watches::WatchTx;

    // ---- holds, journal, notices, client settings
    /// Mark a job as held stopped by the server, with the reason ("cost_max", "account_limit"),
    /// or clear the hold.
    fn set_job_hold(&mut self, id: JobId, hold: Option<&str>) -> StoreResult<()>;
    /// Record when a job completed (kept at the first completion).
    fn mark_job_completed(&mut self, id: JobId, now_ms: u64) -> StoreResult<()>;
    /// Completed jobs (before `completed_before_ms`) whose results were not all fetched: id,
    /// completion time, whether the client was warned of the purge.
    fn completed_jobs_with_undelivered_results(
        &mut self,
        completed_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<(JobId, u64, bool)>>;
    fn set_purge_warned(&mut self, id: JobId) -> StoreResult<()>;
    /// Compress the stored results of a job (delivered or not); returns how many.
    fn archive_results(&mut self, job: JobId, delivered: bool) -> StoreResult<u64>;
    fn held_jobs_of_client(&mut self, client: &PartyId, hold: &str) -> StoreResult<Vec<JobRow>>;
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

    // ---- metadata
    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()>;

    // ---- parties
    /// Insert a party; returns false if the ID exists already (with whatever key it has).
    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool>;
    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>>;
    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()>;
    /// Matching lines, newest first, at most `filter.limit`.
    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>>;
    /// Delete lines received before `before_ms`; returns how many.
    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64>;
    /// Tasks waiting and running, jobs not yet complete, engines heard from since
    /// `contact_since_ms`. Scans tables: for health reports, not for every request.
    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census>;
    /// Tell every server instance sharing the database that these sessions have new messages,
    /// when (and only if) this transaction commits. One process needs nothing: its own wakers
    /// suffice, so the default does nothing.
    fn announce_wakes(&mut self, _sessions: &[SessionId]) -> StoreResult<()> {
        Ok(())
    }
    /// Record a revocation; returns false if the party was revoked already (the first
    /// reason and time are kept).
    fn revoke_party(&mut self, revocation: &RevocationRow) -> StoreResult<bool>;
    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>>;
    /// Every revocation, oldest first.
    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>>;

    // ---- sessions and their outboxes
    fn insert_session(&mut self, party: &PartyId, session: &SessionRow) -> StoreResult<()>;
    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>>;
    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()>;
    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()>;
    /// Delete a session with its outbox and attachments.
    fn delete_session(&mut self, id: SessionId) -> StoreResult<()>;
    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>>;
    /// Append a message; returns its sequence number. `result` links a final result so that it
    /// is marked delivered when the party acknowledges the message.
    fn push_outbox(
        &mut self,
        session: SessionId,
        reply_to: Option<u64>,
        body: &str,
        result: Option<i64>,
    ) -> StoreResult<u64>;
    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>>;
    /// Drop messages up to `upto`; returns the result ids they carried.
    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>>;

    // ---- providers
    fn upsert_provider(
        &mut self,
        id: &PartyId,
        state: NodeState,
        slots: u32,
        capacity: u32,
        now_ms: u64,
    ) -> StoreResult<()>;
    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()>;
    /// The profile last set (JSON), if the provider is known and has one.
    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>>;
    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()>;
    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()>;
    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>>;
    /// Active providers heard from since `contact_since_ms` that can take more tasks.
    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>>;
    /// Up to `limit` providers heard from since `contact_since_ms`, in any state, by ID.
    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>>;

    // ---- elements
    /// Record stored bytes (no-op if known).
    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()>;
    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>>;
    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()>;
    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>>;
    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool>;
    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()>;
    /// Elements stored before `created_before_ms` that no owner and no job refers to. The age
    /// bound spares elements uploaded just before the message that will refer to them.
    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>>;
    /// Whether a client may read an element: it registered it, or a job of its refers to it.
    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool>;
    /// What an owner stores: the bytes and the number of the elements granted to it.
    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage>;
    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()>;

    // ---- jobs
    /// Insert a job; returns false if the ID exists.
    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool>;
    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>>;
    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>>;
    fn save_job_state(&mut self, id: JobId, state: JobState, counts: &JobCounts) -> StoreResult<()>;
    /// Delete a job and its tasks, assignments (with their spot checks), results, attachments,
    /// element references, and its tasks' assurance rows and known answers.
    fn delete_job(&mut self, id: JobId) -> StoreResult<()>;

    // ---- tasks
    /// Insert tasks; fails with `Conflict` naming the first index that exists already.
    fn insert_tasks(&mut self, job: JobId, tasks: &[NewTask]) -> StoreResult<()>;
    fn task(&mut self, job: JobId, index: TaskIndex) -> StoreResult<Option<TaskRow>>;
    fn task_by_key(&mut self, key: TaskKey) -> StoreResult<Option<TaskRow>>;
    fn set_task_state(&mut self, key: TaskKey, state: TaskState) -> StoreResult<()>;
    /// Move every task of the job in one of `from` to `to`; returns how many moved per source.
    fn move_job_tasks(&mut self, job: JobId, from: &[TaskState], to: TaskState) -> StoreResult<Vec<(TaskState, u64)>>;
    fn set_task_progress(&mut self, key: TaskKey, progress: f32, status: Option<&Payload>) -> StoreResult<()>;
    fn set_task_checkpoint(&mut self, key: TaskKey, checkpoint: Option<&ElementHash>) -> StoreResult<()>;
    fn set_task_run(&mut self, key: TaskKey, attempts: u32, cpu_ms: u64) -> StoreResult<()>;
    /// Delete a task with its assignments (and their spot checks), result, requests, assurance
    /// row and known answer.
    fn delete_task(&mut self, key: TaskKey) -> StoreResult<()>;
    /// Up to `limit` queued tasks, highest priority first, then oldest.
    fn queued_tasks(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>>;

    /// Remember that a session waits for a checkpoint of a task (`GetTask`).
    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()>;
    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>>;

    // ---- assignments
    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId>;
    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>>;
    /// End an active assignment (no-op if it already ended); returns whether it was active.
    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool>;
    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>>;
    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>>;
    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>>;
    /// Active assignments whose provider has not been heard from since `contact_before_ms`.
    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>>;

    // ---- results
    fn insert_result(&mut self, result: &NewResult, now_ms: u64) -> StoreResult<i64>;
    /// Results of a job with an id above `after`, oldest first.
    fn results_after(
        &mut self,
        job: JobId,
        after: i64,
        undelivered_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<ResultRow>>;
    fn last_result_id(&mut self, job: JobId) -> StoreResult<i64>;
    fn mark_delivered(&mut self, result_ids: &[i64]) -> StoreResult<()>;

    // ---- attachments
    fn upsert_attachment(&mut self, attachment: &AttachmentRow) -> StoreResult<()>;
    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()>;
    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>>;
    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>>;

    // ---- result assurance (P6.1, P6.2)
    /// The assurance state of a task: an opaque JSON document the coordinator writes, and how many
    /// more replicas it wants placed.
    fn task_assurance(&mut self, task: TaskKey) -> StoreResult<Option<AssuranceRow>>;
    /// Insert or replace a task's assurance state.
    fn set_task_assurance(&mut self, task: TaskKey, state: &str, replicas_wanted: u32) -> StoreResult<()>;
    /// Tasks in state `running` whose assurance row wants more replicas (replicas_wanted > 0),
    /// highest priority first, then lowest key: the same order and row type as `queued_tasks`.
    fn tasks_wanting_replicas(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>>;
    /// Tasks with an assurance row on which `provider` has or had an assignment (active or
    /// ended), lowest key first, without repeats, at most `limit`.
    fn assured_tasks_of_provider(&mut self, provider: &PartyId, limit: u32) -> StoreResult<Vec<TaskKey>>;
    /// What the server remembers of a provider's results (opaque JSON), if anything.
    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>>;
    /// Insert or replace a provider's record; `quarantined` is kept in its own column for the query below.
    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()>;
    /// Every quarantined provider.
    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>>;
    /// Remember that `task`'s result, accepted after a check, has SHA-256 `digest`: a known answer
    /// for spot checks. Repeating it for the same task replaces the digest.
    fn insert_known_answer(&mut self, task: TaskKey, digest: &ElementHash, now_ms: u64) -> StoreResult<()>;
    /// The newest known answers (by insertion time, then task key descending), at most `limit`.
    fn known_answers(&mut self, limit: u32) -> StoreResult<Vec<(TaskKey, ElementHash)>>;
    /// Mark an assignment as a spot check whose correct result has SHA-256 `expected`.
    fn insert_spot_check(&mut self, assignment: AssignmentId, expected: &ElementHash) -> StoreResult<()>;
    /// The expected digest if `assignment` is a spot check.
    fn spot_check(&mut self, assignment: AssignmentId) -> StoreResult<Option<ElementHash>>;
}
