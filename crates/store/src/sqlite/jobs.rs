//! Jobs and their tasks, the assignments of tasks to providers, results, attachments and result assurance, in SQLite (see `crate::jobs`).

use super::*;

/// Each task keeps the trace its request carried (a W3C `traceparent`), for its assignments.
pub(super) const TRACE_MIGRATION: &str = "ALTER TABLE tasks ADD COLUMN trace TEXT;";

const TASK_COLUMNS: &str =
    "key, job, idx, state, priority, executable, data, params, attempts, checkpoint, progress, status, cpu_ms, trace";

fn task_row(row: &Row) -> rusqlite::Result<TaskRow> {
    let data: BTreeMap<String, ElementHash> = get_json(row, 6)?;
    let checkpoint: Option<Vec<u8>> = row.get(9)?;
    Ok(TaskRow {
        key: row.get(0)?,
        job: get_job_id(row, 1)?,
        index: uint(row.get(2)?)?,
        state: task_state(row, 3)?,
        priority: row.get(4)?,
        executable: get_hash(row, 5)?,
        data,
        params: row.get(7)?,
        attempts: row.get(8)?,
        checkpoint: checkpoint
            .map(|b| b.try_into().map(ElementHash::from_bytes).map_err(|_| corrupt("checkpoint hash")))
            .transpose()?,
        progress: row.get::<_, f64>(10)? as f32,
        status: get_opt_json(row, 11)?,
        cpu_ms: uint(row.get(12)?)?,
        trace: row.get(13)?,
    })
}

const JOB_COLUMNS: &str =
    "id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded, n_failed, created_ms, hold";

fn job_row(row: &Row) -> rusqlite::Result<JobRow> {
    let state: String = row.get(3)?;
    Ok(JobRow {
        id: get_job_id(row, 0)?,
        client: get_party_id(row, 1)?,
        properties: get_json(row, 2)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state"))?,
        counts: JobCounts {
            created: uint(row.get(4)?)?,
            queued: uint(row.get(5)?)?,
            running: uint(row.get(6)?)?,
            stopped: uint(row.get(7)?)?,
            succeeded: uint(row.get(8)?)?,
            failed: uint(row.get(9)?)?,
        },
        created_ms: uint(row.get(10)?)?,
        hold: row.get(11)?,
    })
}

fn assignment_row(row: &Row) -> rusqlite::Result<AssignmentRow> {
    let active: bool = row.get(3)?;
    Ok(AssignmentRow {
        id: AssignmentId(uint(row.get(0)?)?),
        task: row.get(1)?,
        provider: get_party_id(row, 2)?,
        state: if active { AssignmentRowState::Active } else { AssignmentRowState::Ended },
        created_ms: uint(row.get(4)?)?,
    })
}

/// A result's payload: the JSON column, or the archived (gzip) copy of it.
fn result_payload(row: &Row) -> rusqlite::Result<Option<Payload>> {
    use std::io::Read;
    if let Some(archived) = row.get::<_, Option<Vec<u8>>>(10)? {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&archived[..])
            .read_to_string(&mut text)
            .map_err(|_| corrupt("archived result"))?;
        return serde_json::from_str(&text).map(Some).map_err(|_| corrupt("archived result"));
    }
    get_opt_json(row, 5)
}

fn result_row(row: &Row) -> rusqlite::Result<ResultRow> {
    Ok(ResultRow {
        id: row.get(0)?,
        result: NewResult {
            task: row.get(1)?,
            job: get_job_id(row, 2)?,
            index: uint(row.get(3)?)?,
            state: task_state(row, 4)?,
            result: result_payload(row)?,
            failure: get_opt_json(row, 6)?,
            cpu_ms: uint(row.get(7)?)?,
            attempts: row.get(8)?,
        },
        delivered: row.get(9)?,
    })
}

fn attachment_row(row: &Row) -> rusqlite::Result<AttachmentRow> {
    let replay_text: String = row.get(2)?;
    Ok(AttachmentRow {
        session: get_session_id(row, 0)?,
        job: get_job_id(row, 1)?,
        replay: replay(&replay_text)?,
        cursor: row.get(3)?,
        completion_sent: row.get(4)?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, provider, active, created_ms";
const RESULT_COLUMNS: &str = "id, task, job, idx, state, result, failure, cpu_ms, attempts, delivered, archived";

impl JobsTx for SqliteTx<'_> {
    fn mark_job_completed(&mut self, id: JobId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET completed_ms = COALESCE(completed_ms, ?2) WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn completed_jobs_with_undelivered_results(
        &mut self,
        completed_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<(JobId, u64, bool)>> {
        self.collect(
            "SELECT j.id, j.completed_ms, j.purge_warned FROM jobs j
             WHERE j.state = 'completed' AND j.completed_ms IS NOT NULL AND j.completed_ms < ?1
               AND EXISTS (SELECT 1 FROM results r WHERE r.job = j.id AND r.delivered = 0)
             ORDER BY j.completed_ms LIMIT ?2",
            params![int(completed_before_ms), limit],
            |row| Ok((get_job_id(row, 0)?, uint(row.get(1)?)?, row.get(2)?)),
        )
    }

    fn set_purge_warned(&mut self, id: JobId) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET purge_warned = 1 WHERE id = ?1")?
            .execute([&id.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn archive_results(&mut self, job: JobId, delivered: bool) -> StoreResult<u64> {
        use std::io::Write;
        let rows: Vec<(i64, Option<String>)> = self.collect(
            "SELECT id, result FROM results WHERE job = ?1 AND archived IS NULL AND result IS NOT NULL AND delivered = ?2",
            params![&job.as_uuid().as_bytes()[..], delivered],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut stmt = self.tx.prepare_cached("UPDATE results SET archived = ?2, result = NULL WHERE id = ?1")?;
        let mut archived = 0;
        for (id, result) in rows {
            let Some(result) = result else { continue };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(result.as_bytes()).map_err(|e| StoreError::Database(e.to_string()))?;
            let compressed = encoder.finish().map_err(|e| StoreError::Database(e.to_string()))?;
            stmt.execute(params![id, compressed])?;
            archived += 1;
        }
        Ok(archived)
    }

    fn set_job_hold(&mut self, id: JobId, hold: Option<&str>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET hold = ?2 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], hold])?;
        Ok(())
    }

    fn held_jobs_of_client(&mut self, client: &PartyId, hold: &str) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = ?1 AND hold = ?2 ORDER BY created_ms, id"),
            params![&client.as_bytes()[..], hold],
            job_row,
        )
    }

    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool> {
        let c = &job.counts;
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO jobs (id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded,
                                   n_failed, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                &job.id.as_uuid().as_bytes()[..],
                &job.client.as_bytes()[..],
                json(&job.properties),
                job.state.as_str(),
                int(c.created),
                int(c.queued),
                int(c.running),
                int(c.stopped),
                int(c.succeeded),
                int(c.failed),
                int(job.created_ms)
            ])?;
        Ok(n == 1)
    }

    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([&id.as_uuid().as_bytes()[..]], job_row)
            .optional()?)
    }

    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = ?1 ORDER BY created_ms, id"),
            [&client.as_bytes()[..]],
            job_row,
        )
    }

    fn save_job_state(&mut self, id: JobId, state: JobState, c: &JobCounts) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "UPDATE jobs SET state = ?2, n_created = ?3, n_queued = ?4, n_running = ?5, n_stopped = ?6,
                                 n_succeeded = ?7, n_failed = ?8 WHERE id = ?1",
            )?
            .execute(params![
                &id.as_uuid().as_bytes()[..],
                state.as_str(),
                int(c.created),
                int(c.queued),
                int(c.running),
                int(c.stopped),
                int(c.succeeded),
                int(c.failed)
            ])?;
        Ok(())
    }

    fn delete_job(&mut self, id: JobId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        // Assignments first: they are found through the job's tasks.
        let ended = self.collect(
            "UPDATE assignments SET active = 0 WHERE active = 1 AND task IN (SELECT key FROM tasks WHERE job = ?1)
             RETURNING provider",
            [key],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        for provider in ended {
            self.tx
                .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                .execute([provider])?;
        }
        self.tx
            .prepare_cached(
                "DELETE FROM spot_checks WHERE assignment IN
                 (SELECT a.id FROM assignments a JOIN tasks t ON t.key = a.task WHERE t.job = ?1)",
            )?
            .execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM assignments WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        // Task keys can be reused after a deletion: nothing may stay keyed by them.
        self.tx
            .prepare_cached("DELETE FROM task_assurance WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM known_answers WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM results WHERE job = ?1")?.execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM task_requests WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM tasks WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM attachments WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM job_elements WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM deliveries WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM delivery_targets WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute([key])?;
        Ok(())
    }

    fn insert_tasks(&mut self, job: JobId, tasks: &[NewTask]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO tasks (job, idx, state, priority, executable, data, params, trace)
             VALUES (?1, ?2, 'created', ?3, ?4, ?5, ?6, ?7)",
        )?;
        for task in tasks {
            let data: BTreeMap<&String, String> = task.data.iter().map(|(k, v)| (k, v.to_string())).collect();
            let inserted = stmt.execute(params![
                &job.as_uuid().as_bytes()[..],
                int(task.index),
                task.priority,
                &task.executable.as_bytes()[..],
                json(&data),
                task.params,
                task.trace
            ]);
            match inserted {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    return Err(StoreError::Conflict(format!("task {} of job {job} exists already", task.index)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn task(&mut self, job: JobId, index: TaskIndex) -> StoreResult<Option<TaskRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job = ?1 AND idx = ?2"))?
            .query_row(params![&job.as_uuid().as_bytes()[..], int(index)], task_row)
            .optional()?)
    }

    fn task_by_key(&mut self, key: TaskKey) -> StoreResult<Option<TaskRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE key = ?1"))?
            .query_row([key], task_row)
            .optional()?)
    }

    fn set_task_state(&mut self, key: TaskKey, state: TaskState) -> StoreResult<()> {
        self.tx.prepare_cached("UPDATE tasks SET state = ?2 WHERE key = ?1")?.execute(params![key, state.as_str()])?;
        Ok(())
    }

    fn move_job_tasks(&mut self, job: JobId, from: &[TaskState], to: TaskState) -> StoreResult<Vec<(TaskState, u64)>> {
        let mut moved = Vec::new();
        for state in from {
            let n = self
                .tx
                .prepare_cached("UPDATE tasks SET state = ?3 WHERE job = ?1 AND state = ?2")?
                .execute(params![&job.as_uuid().as_bytes()[..], state.as_str(), to.as_str()])?;
            moved.push((*state, n as u64));
        }
        Ok(moved)
    }

    fn set_task_progress(&mut self, key: TaskKey, progress: f32, status: Option<&Payload>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE tasks SET progress = ?2, status = COALESCE(?3, status) WHERE key = ?1")?
            .execute(params![key, progress as f64, status.map(json)])?;
        Ok(())
    }

    fn set_task_checkpoint(&mut self, key: TaskKey, checkpoint: Option<&ElementHash>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE tasks SET checkpoint = ?2 WHERE key = ?1")?
            .execute(params![key, checkpoint.map(|h| h.as_bytes().to_vec())])?;
        Ok(())
    }

    fn set_task_run(&mut self, key: TaskKey, attempts: u32, cpu_ms: u64) -> StoreResult<()> {
        self.tx.prepare_cached("UPDATE tasks SET attempts = ?2, cpu_ms = ?3 WHERE key = ?1")?.execute(params![
            key,
            attempts,
            int(cpu_ms)
        ])?;
        Ok(())
    }

    fn delete_task(&mut self, key: TaskKey) -> StoreResult<()> {
        let ended = self.collect(
            "UPDATE assignments SET active = 0 WHERE active = 1 AND task = ?1 RETURNING provider",
            [key],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        for provider in ended {
            self.tx
                .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                .execute([provider])?;
        }
        self.tx
            .prepare_cached("DELETE FROM spot_checks WHERE assignment IN (SELECT id FROM assignments WHERE task = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM assignments WHERE task = ?1")?.execute([key])?;
        // Task keys can be reused after a deletion: nothing may stay keyed by them.
        self.tx.prepare_cached("DELETE FROM task_assurance WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM known_answers WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM results WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM task_requests WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM tasks WHERE key = ?1")?.execute([key])?;
        Ok(())
    }

    fn queued_tasks(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(
            "SELECT key, priority FROM tasks WHERE state = 'queued' ORDER BY priority DESC, key LIMIT ?1",
            [limit],
            |row| Ok(QueuedTask { key: row.get(0)?, priority: row.get(1)? }),
        )
    }

    fn queued_tasks_with_deadline(&mut self, limit: u32) -> StoreResult<Vec<(QueuedTask, u64)>> {
        self.collect(
            "SELECT t.key, t.priority, CAST(json_extract(j.properties, '$.deadline_unix_ms') AS INTEGER) AS deadline
             FROM jobs j JOIN tasks t ON t.job = j.id AND t.state = 'queued'
             WHERE j.n_queued > 0 AND json_extract(j.properties, '$.deadline_unix_ms') IS NOT NULL
             ORDER BY t.priority DESC, deadline, t.key LIMIT ?1",
            [limit],
            |row| Ok((QueuedTask { key: row.get(0)?, priority: row.get(1)? }, uint(row.get(2)?)?)),
        )
    }

    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO task_requests (task, session, reply_to) VALUES (?1, ?2, ?3)")?
            .execute(params![task, &session.as_uuid().as_bytes()[..], int(reply_to)])?;
        Ok(())
    }

    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>> {
        self.collect("DELETE FROM task_requests WHERE task = ?1 RETURNING session, reply_to", [task], |row| {
            Ok((get_session_id(row, 0)?, uint(row.get(1)?)?))
        })
    }

    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId> {
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO assignments (task, provider, active, created_ms) VALUES (?1, ?2, 1, ?3) RETURNING id",
            )?
            .query_row(params![task, &provider.as_bytes()[..], int(now_ms)], |r| r.get(0))?;
        self.tx
            .prepare_cached("UPDATE providers SET assigned = assigned + 1 WHERE id = ?1")?
            .execute([&provider.as_bytes()[..]])?;
        Ok(AssignmentId(uint(id)?))
    }

    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = ?1"))?
            .query_row([int(id.0)], assignment_row)
            .optional()?)
    }

    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool> {
        let provider: Option<Vec<u8>> = self
            .tx
            .prepare_cached(
                "UPDATE assignments SET active = 0, ended_ms = ?2 WHERE id = ?1 AND active = 1 RETURNING provider",
            )?
            .query_row(params![int(id.0), int(now_ms)], |r| r.get(0))
            .optional()?;
        match provider {
            None => Ok(false),
            Some(provider) => {
                self.tx
                    .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                    .execute([provider])?;
                Ok(true)
            }
        }
    }

    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE task = ?1 AND active = 1 ORDER BY id"),
            [task],
            assignment_row,
        )
    }

    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE provider = ?1 AND active = 1 ORDER BY id"),
            [&provider.as_bytes()[..]],
            assignment_row,
        )
    }

    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                 WHERE active = 1 AND task IN (SELECT key FROM tasks WHERE job = ?1) ORDER BY id"
            ),
            [&job.as_uuid().as_bytes()[..]],
            assignment_row,
        )
    }

    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            "SELECT a.id, a.task, a.provider, a.active, a.created_ms FROM assignments a JOIN providers p ON p.id = a.provider
             WHERE a.active = 1 AND p.last_contact_ms < ?1 ORDER BY a.id LIMIT ?2",
            params![int(contact_before_ms), limit],
            assignment_row,
        )
    }

    fn insert_result(&mut self, r: &NewResult, now_ms: u64) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO results (task, job, idx, state, result, failure, cpu_ms, attempts, delivered, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9) RETURNING id",
            )?
            .query_row(
                params![
                    r.task,
                    &r.job.as_uuid().as_bytes()[..],
                    int(r.index),
                    r.state.as_str(),
                    r.result.as_ref().map(json),
                    r.failure.as_ref().map(json),
                    int(r.cpu_ms),
                    r.attempts,
                    int(now_ms)
                ],
                |row| row.get(0),
            )?)
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
                "SELECT {RESULT_COLUMNS} FROM results WHERE job = ?1 AND id > ?2 AND delivered = 0 ORDER BY id LIMIT ?3"
            )
        } else {
            format!("SELECT {RESULT_COLUMNS} FROM results WHERE job = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
        };
        self.collect(&sql, params![&job.as_uuid().as_bytes()[..], after, limit], result_row)
    }

    fn last_result_id(&mut self, job: JobId) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM results WHERE job = ?1")?
            .query_row([&job.as_uuid().as_bytes()[..]], |r| r.get(0))?)
    }

    fn mark_delivered(&mut self, result_ids: &[i64]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached("UPDATE results SET delivered = 1 WHERE id = ?1")?;
        for id in result_ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn upsert_attachment(&mut self, a: &AttachmentRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO attachments (session, job, replay, cursor, completion_sent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (session, job) DO UPDATE SET replay = ?3, cursor = ?4, completion_sent = ?5",
            )?
            .execute(params![
                &a.session.as_uuid().as_bytes()[..],
                &a.job.as_uuid().as_bytes()[..],
                replay_str(a.replay),
                a.cursor,
                a.completion_sent
            ])?;
        Ok(())
    }

    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        self.tx
            .prepare_cached("DELETE FROM attachments WHERE session = ?1 AND job = ?2")?
            .execute([&session.as_uuid().as_bytes()[..], &job.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE job = ?1",
            [&job.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE session = ?1",
            [&session.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn task_assurance(&mut self, task: TaskKey) -> StoreResult<Option<AssuranceRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT state, replicas_wanted FROM task_assurance WHERE task = ?1")?
            .query_row([task], |row| Ok(AssuranceRow { state: row.get(0)?, replicas_wanted: row.get(1)? }))
            .optional()?)
    }

    fn set_task_assurance(&mut self, task: TaskKey, state: &str, replicas_wanted: u32) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO task_assurance (task, state, replicas_wanted) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task) DO UPDATE SET state = ?2, replicas_wanted = ?3",
            )?
            .execute(params![task, state, replicas_wanted])?;
        Ok(())
    }

    fn tasks_wanting_replicas(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(TASKS_WANTING_REPLICAS, [limit], |row| Ok(QueuedTask { key: row.get(0)?, priority: row.get(1)? }))
    }

    fn assured_tasks_of_provider(&mut self, provider: &PartyId, limit: u32) -> StoreResult<Vec<TaskKey>> {
        self.collect(ASSURED_TASKS_OF_PROVIDER, params![&provider.as_bytes()[..], limit], |row| row.get(0))
    }

    fn insert_known_answer(&mut self, task: TaskKey, digest: &ElementHash, now_ms: u64) -> StoreResult<()> {
        // A repeat is a new insertion: it moves the answer to the newest.
        self.tx
            .prepare_cached(
                "INSERT INTO known_answers (task, digest, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task) DO UPDATE SET digest = ?2, created_ms = ?3",
            )?
            .execute(params![task, &digest.as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn known_answers(&mut self, limit: u32) -> StoreResult<Vec<(TaskKey, ElementHash)>> {
        self.collect(
            "SELECT task, digest FROM known_answers ORDER BY created_ms DESC, task DESC LIMIT ?1",
            [limit],
            |row| Ok((row.get(0)?, get_hash(row, 1)?)),
        )
    }

    fn insert_spot_check(&mut self, assignment: AssignmentId, expected: &ElementHash) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO spot_checks (assignment, expected) VALUES (?1, ?2) ON CONFLICT (assignment) DO UPDATE SET expected = ?2",
            )?
            .execute(params![int(assignment.0), &expected.as_bytes()[..]])?;
        Ok(())
    }

    fn spot_check(&mut self, assignment: AssignmentId) -> StoreResult<Option<ElementHash>> {
        Ok(self
            .tx
            .prepare_cached("SELECT expected FROM spot_checks WHERE assignment = ?1")?
            .query_row([int(assignment.0)], |row| get_hash(row, 0))
            .optional()?)
    }
}
