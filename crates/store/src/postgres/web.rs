//! The web manager's tables and read queries in PostgreSQL, as in SQLite (see `crate::web`).

use idlegrid_types::{JobId, PartyId, TaskIndex};
use postgres::Row;

use super::{PgTx, col, corrupt, get_party_id, get_task_state, get_u32, get_u64, int};
use crate::StoreResult;
use crate::web::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE web_entries (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, party TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    started_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE INDEX web_entries_party ON web_entries(party);
CREATE INDEX web_entries_expires ON web_entries(expires_ms);
CREATE INDEX web_results_job_time ON results(job, created_ms);
CREATE TABLE web_instances (instance TEXT PRIMARY KEY, reported_ms BIGINT NOT NULL, body TEXT NOT NULL);
"#;

const COLUMNS: &str = "key, kind, party, role, csrf, started_ms, last_seen_ms, expires_ms";

fn entry_row(row: &Row) -> StoreResult<WebEntryRow> {
    let kind: String = col(row, 1, "web_entries.kind")?;
    let party: String = col(row, 2, "web_entries.party")?;
    let role: String = col(row, 3, "web_entries.role")?;
    Ok(WebEntryRow {
        key: col(row, 0, "web_entries.key")?,
        kind: WebEntryKind::parse(&kind).ok_or_else(|| corrupt("web_entries.kind", &kind))?,
        party: party.parse().map_err(|e| corrupt("web_entries.party", e))?,
        role: role.parse().map_err(|e| corrupt("web_entries.role", e))?,
        csrf: col(row, 4, "web_entries.csrf")?,
        started_ms: get_u64(row, 5, "web_entries.started_ms")?,
        last_seen_ms: get_u64(row, 6, "web_entries.last_seen_ms")?,
        expires_ms: get_u64(row, 7, "web_entries.expires_ms")?,
    })
}

impl WebTx for PgTx<'_> {
    fn insert_web_entry(&mut self, e: &WebEntryRow) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO web_entries ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                &e.key,
                &e.kind.as_str(),
                &e.party.to_string(),
                &e.role.as_str(),
                &e.csrf,
                &int(e.started_ms),
                &int(e.last_seen_ms),
                &int(e.expires_ms),
            ],
        )?;
        Ok(())
    }

    fn web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>> {
        let sql = format!("SELECT {COLUMNS} FROM web_entries WHERE key = $1 AND kind = $2");
        self.query_opt(&sql, &[&key, &kind.as_str()])?.as_ref().map(entry_row).transpose()
    }

    fn take_web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>> {
        let sql = format!("DELETE FROM web_entries WHERE key = $1 AND kind = $2 RETURNING {COLUMNS}");
        self.query_opt(&sql, &[&key, &kind.as_str()])?.as_ref().map(entry_row).transpose()
    }

    fn touch_web_entry(&mut self, key: &str, last_seen_ms: u64, expires_ms: u64) -> StoreResult<bool> {
        let changed = self.execute(
            "UPDATE web_entries SET last_seen_ms = $2, expires_ms = $3 WHERE key = $1",
            &[&key, &int(last_seen_ms), &int(expires_ms)],
        )?;
        Ok(changed == 1)
    }

    fn delete_web_entries_of(&mut self, party: &PartyId) -> StoreResult<u64> {
        self.execute("DELETE FROM web_entries WHERE party = $1", &[&party.to_string()])
    }

    fn delete_expired_web_entries(&mut self, now_ms: u64) -> StoreResult<u64> {
        self.execute("DELETE FROM web_entries WHERE expires_ms <= $1", &[&int(now_ms)])
    }

    fn count_web_entries(&mut self, kind: WebEntryKind, now_ms: u64) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM web_entries WHERE kind = $1 AND expires_ms > $2",
            &[&kind.as_str(), &int(now_ms)],
        )?;
        get_u64(&row, 0, "COUNT(web_entries)")
    }

    fn task_page(&mut self, job: JobId, after: Option<TaskIndex>, limit: u32) -> StoreResult<Vec<TaskLine>> {
        let after = after.map_or(-1, int);
        self.collect(
            "SELECT idx, state, attempts, cpu_ms, progress FROM tasks WHERE job = $1 AND idx > $2 ORDER BY idx LIMIT $3",
            &[&&job.as_uuid().as_bytes()[..], &after, &i64::from(limit)],
            |row| {
                let progress: f64 = col(row, 4, "tasks.progress")?;
                Ok(TaskLine {
                    index: get_u64(row, 0, "tasks.idx")?,
                    state: get_task_state(row, 1, "tasks.state")?,
                    attempts: get_u32(row, 2, "tasks.attempts")?,
                    cpu_ms: get_u64(row, 3, "tasks.cpu_ms")?,
                    progress: progress as f32,
                })
            },
        )
    }

    fn result_history(&mut self, job: JobId, since_ms: u64, width_ms: u64) -> StoreResult<Vec<ResultBucket>> {
        let width = int(width_ms.max(1));
        self.collect(
            "SELECT (created_ms / $3) * $3 AS b, COUNT(*) FILTER (WHERE state = 'succeeded'),
                    COUNT(*) FILTER (WHERE state = 'failed')
             FROM results WHERE job = $1 AND created_ms >= $2 GROUP BY b ORDER BY b",
            &[&&job.as_uuid().as_bytes()[..], &int(since_ms), &width],
            |row| {
                Ok(ResultBucket {
                    start_ms: get_u64(row, 0, "result bucket")?,
                    succeeded: get_u64(row, 1, "result bucket succeeded")?,
                    failed: get_u64(row, 2, "result bucket failed")?,
                })
            },
        )
    }

    fn running_engines(&mut self, job: JobId, limit: u32) -> StoreResult<Vec<PartyId>> {
        self.collect(
            "SELECT a.provider FROM tasks t JOIN assignments a ON a.task = t.key
             WHERE t.job = $1 AND t.state = 'running' AND a.active ORDER BY a.id LIMIT $2",
            &[&&job.as_uuid().as_bytes()[..], &i64::from(limit)],
            |row| get_party_id(row, 0, "assignments.provider"),
        )
    }

    fn put_instance_report(&mut self, r: &InstanceReport) -> StoreResult<()> {
        self.execute(
            "INSERT INTO web_instances (instance, reported_ms, body) VALUES ($1, $2, $3)
             ON CONFLICT (instance) DO UPDATE SET reported_ms = excluded.reported_ms, body = excluded.body",
            &[&r.instance, &int(r.reported_ms), &r.body],
        )?;
        Ok(())
    }

    fn instance_reports(&mut self, limit: u32) -> StoreResult<Vec<InstanceReport>> {
        self.collect(
            "SELECT instance, reported_ms, body FROM web_instances ORDER BY instance LIMIT $1",
            &[&i64::from(limit)],
            |row| {
                Ok(InstanceReport {
                    instance: col(row, 0, "web_instances.instance")?,
                    reported_ms: get_u64(row, 1, "web_instances.reported_ms")?,
                    body: col(row, 2, "web_instances.body")?,
                })
            },
        )
    }
}
