//! Jobs and their tasks, the assignments of tasks to providers, results, attachments and result assurance, in PostgreSQL (see `crate::jobs`).

use super::*;

/// Each task keeps the trace its request carried (a W3C `traceparent`), for its assignments.
pub(super) const TRACE_MIGRATION: &str = "ALTER TABLE tasks ADD COLUMN trace TEXT;";

const TASK_COLUMNS: &str =
    "key, job, idx, state, priority, executable, data, params, attempts, checkpoint, progress, status, cpu_ms, trace";

fn task_row(row: &Row) -> StoreResult<TaskRow> {
    let checkpoint: Option<&[u8]> = col(row, 9, "tasks.checkpoint")?;
    let progress: f64 = col(row, 10, "tasks.progress")?;
    Ok(TaskRow {
        key: col(row, 0, "tasks.key")?,
        job: get_job_id(row, 1, "tasks.job")?,
        index: get_u64(row, 2, "tasks.idx")?,
        state: get_task_state(row, 3, "tasks.state")?,
        priority: get_i32(row, 4, "tasks.priority")?,
        executable: get_hash(row, 5, "tasks.executable")?,
        data: get_json(row, 6, "tasks.data")?,
        params: col(row, 7, "tasks.params")?,
        attempts: get_u32(row, 8, "tasks.attempts")?,
        checkpoint: checkpoint.map(|b| hash(b, "tasks.checkpoint")).transpose()?,
        progress: progress as f32,
        status: get_opt_json(row, 11, "tasks.status")?,
        cpu_ms: get_u64(row, 12, "tasks.cpu_ms")?,
        trace: col(row, 13, "tasks.trace")?,
    })
}

const JOB_COLUMNS: &str =
    "id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded, n_failed, created_ms, hold";

fn job_row(row: &Row) -> StoreResult<JobRow> {
    let state: &str = col(row, 3, "jobs.state")?;
    Ok(JobRow {
        id: get_job_id(row, 0, "jobs.id")?,
        client: get_party_id(row, 1, "jobs.client")?,
        properties: get_json(row, 2, "jobs.properties")?,
        state: JobState::parse(state).ok_or_else(|| corrupt("jobs.state", format!("unknown job state {state:?}")))?,
        counts: JobCounts {
            created: get_u64(row, 4, "jobs.n_created")?,
            queued: get_u64(row, 5, "jobs.n_queued")?,
            running: get_u64(row, 6, "jobs.n_running")?,
            stopped: get_u64(row, 7, "jobs.n_stopped")?,
            succeeded: get_u64(row, 8, "jobs.n_succeeded")?,
            failed: get_u64(row, 9, "jobs.n_failed")?,
        },
        created_ms: get_u64(row, 10, "jobs.created_ms")?,
        hold: col(row, 11, "jobs.hold")?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, provider, active, created_ms";

fn assignment_row(row: &Row) -> StoreResult<AssignmentRow> {
    let active: bool = col(row, 3, "assignments.active")?;
    Ok(AssignmentRow {
        id: AssignmentId(get_u64(row, 0, "assignments.id")?),
        task: col(row, 1, "assignments.task")?,
        provider: get_party_id(row, 2, "assignments.provider")?,
        state: if active { AssignmentRowState::Active } else { AssignmentRowState::Ended },
        created_ms: get_u64(row, 4, "assignments.created_ms")?,
    })
}

const RESULT_COLUMNS: &str = "id, task, job, idx, state, result, failure, cpu_ms, attempts, delivered, archived";

/// A result's payload: the JSON column, or the archived (gzip) copy of it.
fn result_payload(row: &Row) -> StoreResult<Option<Payload>> {
    use std::io::Read;
    if let Some(archived) = col::<Option<&[u8]>>(row, 10, "results.archived")? {
        let mut text = String::new();
        flate2::read::GzDecoder::new(archived).read_to_string(&mut text).map_err(|e| corrupt("results.archived", e))?;
        return serde_json::from_str(&text).map(Some).map_err(|e| corrupt("results.archived", e));
    }
    get_opt_json(row, 5, "results.result")
}

fn result_row(row: &Row) -> StoreResult<ResultRow> {
    Ok(ResultRow {
        id: col(row, 0, "results.id")?,
        result: NewResult {
            task: col(row, 1, "results.task")?,
            job: get_job_id(row, 2, "results.job")?,
            index: get_u64(row, 3, "results.idx")?,
            state: get_task_state(row, 4, "results.state")?,
            result: result_payload(row)?,
            failure: get_opt_json(row, 6, "results.failure")?,
            cpu_ms: get_u64(row, 7, "results.cpu_ms")?,
            attempts: get_u32(row, 8, "results.attempts")?,
        },
        delivered: col(row, 9, "results.delivered")?,
    })
}

fn attachment_row(row: &Row) -> StoreResult<AttachmentRow> {
    Ok(AttachmentRow {
        session: get_session_id(row, 0, "attachments.session")?,
        job: get_job_id(row, 1, "attachments.job")?,
        replay: replay(col(row, 2, "attachments.replay")?, "attachments.replay")?,
        cursor: col(row, 3, "attachments.cursor")?,
        completion_sent: col(row, 4, "attachments.completion_sent")?,
    })
}

impl JobsTx for PgTx<'_> {
    fn mark_job_completed(&mut self, id: JobId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE jobs SET completed_ms = COALESCE(completed_ms, $2) WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn completed_jobs_with_undelivered_results(
        &mut self,
        completed_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<(JobId, u64, bool)>> {
        self.collect(
            "SELECT j.id, j.completed_ms, j.purge_warned FROM jobs j
             WHERE j.state = 'completed' AND j.completed_ms IS NOT NULL AND j.completed_ms < $1
               AND EXISTS (SELECT 1 FROM results r WHERE r.job = j.id AND NOT r.delivered)
             ORDER BY j.completed_ms LIMIT $2",
            &[&int(completed_before_ms), &i64::from(limit)],
            |row| {
                Ok((
                    get_job_id(row, 0, "jobs.id")?,
                    get_u64(row, 1, "jobs.completed_ms")?,
                    col(row, 2, "jobs.purge_warned")?,
                ))
            },
        )
    }

    fn set_purge_warned(&mut self, id: JobId) -> StoreResult<()> {
        self.execute("UPDATE jobs SET purge_warned = TRUE WHERE id = $1", &[&&id.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn archive_results(&mut self, job: JobId, delivered: bool) -> StoreResult<u64> {
        use std::io::Write;
        let rows = self.collect(
            "SELECT id, result FROM results WHERE job = $1 AND archived IS NULL AND result IS NOT NULL AND delivered = $2",
            &[&&job.as_uuid().as_bytes()[..], &delivered],
            |row| Ok((col::<i64>(row, 0, "results.id")?, col::<Option<String>>(row, 1, "results.result")?)),
        )?;
        let mut archived = 0;
        for (id, result) in rows {
            let Some(result) = result else { continue };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(result.as_bytes()).map_err(|e| StoreError::Database(e.to_string()))?;
            let compressed = encoder.finish().map_err(|e| StoreError::Database(e.to_string()))?;
            self.execute("UPDATE results SET archived = $2, result = NULL WHERE id = $1", &[&id, &compressed])?;
            archived += 1;
        }
        Ok(archived)
    }

    fn set_job_hold(&mut self, id: JobId, hold: Option<&str>) -> StoreResult<()> {
        self.execute("UPDATE jobs SET hold = $2 WHERE id = $1", &[&&id.as_uuid().as_bytes()[..], &hold])?;
        Ok(())
    }

    fn held_jobs_of_client(&mut self, client: &PartyId, hold: &str) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 AND hold = $2 ORDER BY created_ms, id"),
            &[&&client.as_bytes()[..], &hold],
            job_row,
        )
    }

    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool> {
        let c = &job.counts;
        let n = self.execute(
            "INSERT INTO jobs (id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded,
                               n_failed, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            &[
                &&job.id.as_uuid().as_bytes()[..],
                &&job.client.as_bytes()[..],
                &json(&job.properties, "job properties")?,
                &job.state.as_str(),
                &int(c.created),
                &int(c.queued),
                &int(c.running),
                &int(c.stopped),
                &int(c.succeeded),
                &int(c.failed),
                &int(job.created_ms),
            ],
        )?;
        Ok(n == 1)
    }

    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.query_opt(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"), &[&&id.as_uuid().as_bytes()[..]])?
            .map(|row| job_row(&row))
            .transpose()
    }

    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 ORDER BY created_ms, id"),
            &[&&client.as_bytes()[..]],
            job_row,
        )
    }

    fn save_job_state(&mut self, id: JobId, state: JobState, c: &JobCounts) -> StoreResult<()> {
        self.execute(
            "UPDATE jobs SET state = $2, n_created = $3, n_queued = $4, n_running = $5, n_stopped = $6,
                             n_succeeded = $7, n_failed = $8 WHERE id = $1",
            &[
                &&id.as_uuid().as_bytes()[..],
                &state.as_str(),
                &int(c.created),
                &int(c.queued),
                &int(c.running),
                &int(c.stopped),
                &int(c.succeeded),
                &int(c.failed),
            ],
        )?;
        Ok(())
    }

    fn delete_job(&mut self, id: JobId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        // Assignments first: they are found through the job's tasks.
        let ended = self.collect(
            "UPDATE assignments SET active = FALSE WHERE active AND task IN (SELECT key FROM tasks WHERE job = $1)
             RETURNING provider",
            &[&key],
            |row| col::<Vec<u8>>(row, 0, "assignments.provider"),
        )?;
        self.release_providers(&ended)?;
        self.execute(
            "DELETE FROM spot_checks WHERE assignment IN
             (SELECT a.id FROM assignments a JOIN tasks t ON t.key = a.task WHERE t.job = $1)",
            &[&key],
        )?;
        self.execute("DELETE FROM assignments WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM task_assurance WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM known_answers WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM results WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM task_requests WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM tasks WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM attachments WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM job_elements WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM deliveries WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM delivery_targets WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM jobs WHERE id = $1", &[&key])?;
        Ok(())
    }

    fn insert_tasks(&mut self, job: JobId, tasks: &[NewTask]) -> StoreResult<()> {
        // One statement for the batch (a round trip per task would dominate a large job's
        // submission). SQLite inserts up to the first index that exists and stops there with
        // a conflict; the same prefix is found first here, so both leave the same rows.
        let key = &job.as_uuid().as_bytes()[..];
        let indexes: Vec<i64> = tasks.iter().map(|t| int(t.index)).collect();
        let existing: HashSet<i64> = self
            .collect("SELECT idx FROM tasks WHERE job = $1 AND idx = ANY($2)", &[&key, &indexes], |row| {
                col(row, 0, "tasks.idx")
            })?
            .into_iter()
            .collect();
        let mut seen = HashSet::new();
        let prefix = indexes.iter().position(|i| existing.contains(i) || !seen.insert(*i)).unwrap_or(tasks.len());
        let batch = &tasks[..prefix];
        let mut data = Vec::with_capacity(batch.len());
        for task in batch {
            let names: BTreeMap<&String, String> = task.data.iter().map(|(k, v)| (k, v.to_string())).collect();
            data.push(json(&names, "task data")?);
        }
        let priorities: Vec<i64> = batch.iter().map(|t| i64::from(t.priority)).collect();
        let executables: Vec<&[u8]> = batch.iter().map(|t| &t.executable.as_bytes()[..]).collect();
        let params: Vec<&[u8]> = batch.iter().map(|t| &t.params[..]).collect();
        let traces: Vec<Option<&str>> = batch.iter().map(|t| t.trace.as_deref()).collect();
        let inserted = self.execute(
            "INSERT INTO tasks (job, idx, state, priority, executable, data, params, trace)
             SELECT $1, t.idx, 'created', t.priority, t.executable, t.data, t.params, t.trace
             FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BYTEA[], $5::TEXT[], $6::BYTEA[], $7::TEXT[])
                  WITH ORDINALITY AS t(idx, priority, executable, data, params, trace, n)
             ORDER BY t.n
             ON CONFLICT (job, idx) DO NOTHING",
            &[&key, &&indexes[..prefix], &priorities, &executables, &data, &params, &traces],
        )?;
        if prefix < tasks.len() || inserted < prefix as u64 {
            let index = tasks.get(prefix).map(|t| t.index.to_string()).unwrap_or_else(|| "in the batch".to_string());
            return Err(StoreError::Conflict(format!("task {index} of job {job} exists already")));
        }
        Ok(())
    }

    fn task(&mut self, job: JobId, index: TaskIndex) -> StoreResult<Option<TaskRow>> {
        self.query_opt(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job = $1 AND idx = $2"),
            &[&&job.as_uuid().as_bytes()[..], &int(index)],
        )?
        .map(|row| task_row(&row))
        .transpose()
    }

    fn task_by_key(&mut self, key: TaskKey) -> StoreResult<Option<TaskRow>> {
        self.query_opt(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE key = $1"), &[&key])?
            .map(|row| task_row(&row))
            .transpose()
    }

    fn set_task_state(&mut self, key: TaskKey, state: TaskState) -> StoreResult<()> {
        self.execute("UPDATE tasks SET state = $2 WHERE key = $1", &[&key, &state.as_str()])?;
        Ok(())
    }

    fn move_job_tasks(&mut self, job: JobId, from: &[TaskState], to: TaskState) -> StoreResult<Vec<(TaskState, u64)>> {
        let mut moved = Vec::new();
        for state in from {
            let n = self.execute(
                "UPDATE tasks SET state = $3 WHERE job = $1 AND state = $2",
                &[&&job.as_uuid().as_bytes()[..], &state.as_str(), &to.as_str()],
            )?;
            moved.push((*state, n));
        }
        Ok(moved)
    }

    fn set_task_progress(&mut self, key: TaskKey, progress: f32, status: Option<&Payload>) -> StoreResult<()> {
        let status = status.map(|s| json(s, "task status")).transpose()?;
        self.execute(
            "UPDATE tasks SET progress = $2, status = COALESCE($3, status) WHERE key = $1",
            &[&key, &f64::from(progress), &status],
        )?;
        Ok(())
    }

    fn set_task_checkpoint(&mut self, key: TaskKey, checkpoint: Option<&ElementHash>) -> StoreResult<()> {
        let checkpoint = checkpoint.map(|h| &h.as_bytes()[..]);
        self.execute("UPDATE tasks SET checkpoint = $2 WHERE key = $1", &[&key, &checkpoint])?;
        Ok(())
    }

    fn set_task_run(&mut self, key: TaskKey, attempts: u32, cpu_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE tasks SET attempts = $2, cpu_ms = $3 WHERE key = $1",
            &[&key, &i64::from(attempts), &int(cpu_ms)],
        )?;
        Ok(())
    }

    fn delete_task(&mut self, key: TaskKey) -> StoreResult<()> {
        let ended = self.collect(
            "UPDATE assignments SET active = FALSE WHERE active AND task = $1 RETURNING provider",
            &[&key],
            |row| col::<Vec<u8>>(row, 0, "assignments.provider"),
        )?;
        self.release_providers(&ended)?;
        self.execute(
            "DELETE FROM spot_checks WHERE assignment IN (SELECT id FROM assignments WHERE task = $1)",
            &[&key],
        )?;
        self.execute("DELETE FROM assignments WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM task_assurance WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM known_answers WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM results WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM task_requests WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM tasks WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn queued_tasks(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(
            "SELECT key, priority FROM tasks WHERE state = 'queued' ORDER BY priority DESC, key LIMIT $1",
            &[&i64::from(limit)],
            |row| Ok(QueuedTask { key: col(row, 0, "tasks.key")?, priority: get_i32(row, 1, "tasks.priority")? }),
        )
    }

    fn queued_tasks_with_deadline(&mut self, limit: u32) -> StoreResult<Vec<(QueuedTask, u64)>> {
        self.collect(
            "SELECT t.key, t.priority, (j.properties::jsonb ->> 'deadline_unix_ms')::bigint AS deadline
             FROM jobs j JOIN tasks t ON t.job = j.id AND t.state = 'queued'
             WHERE j.n_queued > 0 AND (j.properties::jsonb ->> 'deadline_unix_ms') IS NOT NULL
             ORDER BY t.priority DESC, deadline, t.key LIMIT $1",
            &[&i64::from(limit)],
            |row| {
                let task = QueuedTask { key: col(row, 0, "tasks.key")?, priority: get_i32(row, 1, "tasks.priority")? };
                Ok((task, get_u64(row, 2, "jobs.properties.deadline_unix_ms")?))
            },
        )
    }

    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO task_requests (task, session, reply_to) VALUES ($1, $2, $3)",
            &[&task, &&session.as_uuid().as_bytes()[..], &int(reply_to)],
        )?;
        Ok(())
    }

    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>> {
        self.collect("DELETE FROM task_requests WHERE task = $1 RETURNING session, reply_to", &[&task], |row| {
            Ok((get_session_id(row, 0, "task_requests.session")?, get_u64(row, 1, "task_requests.reply_to")?))
        })
    }

    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId> {
        let row = self.query_one(
            "INSERT INTO assignments (task, provider, active, created_ms) VALUES ($1, $2, TRUE, $3) RETURNING id",
            &[&task, &&provider.as_bytes()[..], &int(now_ms)],
        )?;
        let id = get_u64(&row, 0, "assignments.id")?;
        self.execute("UPDATE providers SET assigned = assigned + 1 WHERE id = $1", &[&&provider.as_bytes()[..]])?;
        Ok(AssignmentId(id))
    }

    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>> {
        self.query_opt(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"), &[&int(id.0)])?
            .map(|row| assignment_row(&row))
            .transpose()
    }

    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool> {
        let row = self.query_opt(
            "UPDATE assignments SET active = FALSE, ended_ms = $2 WHERE id = $1 AND active RETURNING provider",
            &[&int(id.0), &int(now_ms)],
        )?;
        match row {
            None => Ok(false),
            Some(row) => {
                self.release_providers(&[col(&row, 0, "assignments.provider")?])?;
                Ok(true)
            }
        }
    }

    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE task = $1 AND active ORDER BY id"),
            &[&task],
            assignment_row,
        )
    }

    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE provider = $1 AND active ORDER BY id"),
            &[&&provider.as_bytes()[..]],
            assignment_row,
        )
    }

    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                 WHERE active AND task IN (SELECT key FROM tasks WHERE job = $1) ORDER BY id"
            ),
            &[&&job.as_uuid().as_bytes()[..]],
            assignment_row,
        )
    }

    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            "SELECT a.id, a.task, a.provider, a.active, a.created_ms FROM assignments a JOIN providers p ON p.id = a.provider
             WHERE a.active AND p.last_contact_ms < $1 ORDER BY a.id LIMIT $2",
            &[&int(contact_before_ms), &i64::from(limit)],
            assignment_row,
        )
    }

    fn insert_result(&mut self, r: &NewResult, now_ms: u64) -> StoreResult<i64> {
        let result = r.result.as_ref().map(|p| json(p, "a result")).transpose()?;
        let failure = r.failure.as_ref().map(|f| json(f, "a failure")).transpose()?;
        let row = self.query_one(
            "INSERT INTO results (task, job, idx, state, result, failure, cpu_ms, attempts, delivered, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9) RETURNING id",
            &[
                &r.task,
                &&r.job.as_uuid().as_bytes()[..],
                &int(r.index),
                &r.state.as_str(),
                &result,
                &failure,
                &int(r.cpu_ms),
                &i64::from(r.attempts),
                &int(now_ms),
            ],
        )?;
        col(&row, 0, "results.id")
    }

    fn results_after(
        &mut self,
        job: JobId,
        after: i64,
        undelivered_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<ResultRow>> {
        let sql = if undelivered_only {
            format!(
                "SELECT {RESULT_COLUMNS} FROM results WHERE job = $1 AND id > $2 AND NOT delivered ORDER BY id LIMIT $3"
            )
        } else {
            format!("SELECT {RESULT_COLUMNS} FROM results WHERE job = $1 AND id > $2 ORDER BY id LIMIT $3")
        };
        self.collect(&sql, &[&&job.as_uuid().as_bytes()[..], &after, &i64::from(limit)], result_row)
    }

    fn last_result_id(&mut self, job: JobId) -> StoreResult<i64> {
        let row = self
            .query_one("SELECT COALESCE(MAX(id), 0) FROM results WHERE job = $1", &[&&job.as_uuid().as_bytes()[..]])?;
        col(&row, 0, "MAX(results.id)")
    }

    fn mark_delivered(&mut self, result_ids: &[i64]) -> StoreResult<()> {
        self.execute("UPDATE results SET delivered = TRUE WHERE id = ANY($1)", &[&result_ids])?;
        Ok(())
    }

    fn upsert_attachment(&mut self, a: &AttachmentRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO attachments (session, job, replay, cursor, completion_sent) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, job) DO UPDATE SET replay = EXCLUDED.replay, cursor = EXCLUDED.cursor,
                                                      completion_sent = EXCLUDED.completion_sent",
            &[
                &&a.session.as_uuid().as_bytes()[..],
                &&a.job.as_uuid().as_bytes()[..],
                &replay_str(a.replay),
                &a.cursor,
                &a.completion_sent,
            ],
        )?;
        Ok(())
    }

    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        self.execute(
            "DELETE FROM attachments WHERE session = $1 AND job = $2",
            &[&&session.as_uuid().as_bytes()[..], &&job.as_uuid().as_bytes()[..]],
        )?;
        Ok(())
    }

    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE job = $1",
            &[&&job.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE session = $1",
            &[&&session.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn task_assurance(&mut self, task: TaskKey) -> StoreResult<Option<AssuranceRow>> {
        self.query_opt("SELECT state, replicas_wanted FROM task_assurance WHERE task = $1", &[&task])?
            .map(|row| {
                Ok(AssuranceRow {
                    state: col(&row, 0, "task_assurance.state")?,
                    replicas_wanted: get_u32(&row, 1, "task_assurance.replicas_wanted")?,
                })
            })
            .transpose()
    }

    fn set_task_assurance(&mut self, task: TaskKey, state: &str, replicas_wanted: u32) -> StoreResult<()> {
        self.execute(
            "INSERT INTO task_assurance (task, state, replicas_wanted) VALUES ($1, $2, $3)
             ON CONFLICT (task) DO UPDATE SET state = EXCLUDED.state, replicas_wanted = EXCLUDED.replicas_wanted",
            &[&task, &state, &i64::from(replicas_wanted)],
        )?;
        Ok(())
    }

    fn tasks_wanting_replicas(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(TASKS_WANTING_REPLICAS, &[&i64::from(limit)], |row| {
            Ok(QueuedTask { key: col(row, 0, "tasks.key")?, priority: get_i32(row, 1, "tasks.priority")? })
        })
    }

    fn assured_tasks_of_provider(&mut self, provider: &PartyId, limit: u32) -> StoreResult<Vec<TaskKey>> {
        self.collect(ASSURED_TASKS_OF_PROVIDER, &[&&provider.as_bytes()[..], &i64::from(limit)], |row| {
            col(row, 0, "assignments.task")
        })
    }

    fn insert_known_answer(&mut self, task: TaskKey, digest: &ElementHash, now_ms: u64) -> StoreResult<()> {
        // A repeat is a new insertion: it moves the answer to the newest.
        self.execute(
            "INSERT INTO known_answers (task, digest, created_ms) VALUES ($1, $2, $3)
             ON CONFLICT (task) DO UPDATE SET digest = EXCLUDED.digest, created_ms = EXCLUDED.created_ms",
            &[&task, &&digest.as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn known_answers(&mut self, limit: u32) -> StoreResult<Vec<(TaskKey, ElementHash)>> {
        self.collect(
            "SELECT task, digest FROM known_answers ORDER BY created_ms DESC, task DESC LIMIT $1",
            &[&i64::from(limit)],
            |row| Ok((col(row, 0, "known_answers.task")?, get_hash(row, 1, "known_answers.digest")?)),
        )
    }

    fn insert_spot_check(&mut self, assignment: AssignmentId, expected: &ElementHash) -> StoreResult<()> {
        self.execute(
            "INSERT INTO spot_checks (assignment, expected) VALUES ($1, $2)
             ON CONFLICT (assignment) DO UPDATE SET expected = EXCLUDED.expected",
            &[&int(assignment.0), &&expected.as_bytes()[..]],
        )?;
        Ok(())
    }

    fn spot_check(&mut self, assignment: AssignmentId) -> StoreResult<Option<ElementHash>> {
        self.query_opt("SELECT expected FROM spot_checks WHERE assignment = $1", &[&int(assignment.0)])?
            .map(|row| get_hash(&row, 0, "spot_checks.expected"))
            .transpose()
    }
}
