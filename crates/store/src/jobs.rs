//! Jobs and everything that hangs off them: tasks (with the requests waiting for a task's
//! checkpoint), assignments of tasks to providers, results (paged, delivered, archived), the
//! sessions attached to a job, and result assurance (a task's assurance state, known answers,
//! spot checks).

use idlegrid_protocol::Payload;
use idlegrid_types::{AssignmentId, ElementHash, JobCounts, JobId, JobState, PartyId, SessionId, TaskIndex, TaskState};

use crate::StoreResult;
use crate::model::*;

/// Jobs and their tasks, the assignments of tasks to providers, results, attachments and result assurance.
pub trait JobsTx {
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
    /// Insert a job; returns false if the ID exists.
    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool>;
    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>>;
    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>>;
    fn save_job_state(&mut self, id: JobId, state: JobState, counts: &JobCounts) -> StoreResult<()>;
    /// Delete a job and its tasks, assignments (with their spot checks), results, attachments,
    /// element references, and its tasks' assurance rows and known answers.
    fn delete_job(&mut self, id: JobId) -> StoreResult<()>;
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
    /// Up to `limit` queued tasks of jobs with a deadline, each with the deadline: highest
    /// priority first, then earliest deadline, then oldest.
    fn queued_tasks_with_deadline(&mut self, limit: u32) -> StoreResult<Vec<(QueuedTask, u64)>>;
    /// Remember that a session waits for a checkpoint of a task (`GetTask`).
    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()>;
    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>>;
    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId>;
    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>>;
    /// End an active assignment (no-op if it already ended); returns whether it was active.
    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool>;
    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>>;
    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>>;
    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>>;
    /// Active assignments whose provider has not been heard from since `contact_before_ms`.
    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>>;
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
    fn upsert_attachment(&mut self, attachment: &AttachmentRow) -> StoreResult<()>;
    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()>;
    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>>;
    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>>;
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
