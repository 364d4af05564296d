//! The web manager's tables and read queries in SQLite (see `crate::web`).

use idlegrid_types::{JobId, PartyId, TaskIndex};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteTx, corrupt, get_party_id, int, task_state, uint};
use crate::StoreResult;
use crate::web::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE web_entries (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, party TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    started_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX web_entries_party ON web_entries(party);
CREATE INDEX web_entries_expires ON web_entries(expires_ms);
CREATE INDEX web_results_job_time ON results(job, created_ms);
CREATE TABLE web_instances (instance TEXT PRIMARY KEY, reported_ms INTEGER NOT NULL, body TEXT NOT NULL);
"#;

const COLUMNS: &str = "key, kind, party, role, csrf, started_ms, last_seen_ms, expires_ms";

fn entry_row(row: &Row) -> rusqlite::Result<WebEntryRow> {
    let kind: String = row.get(1)?;
    let party: String = row.get(2)?;
    let role: String = row.get(3)?;
    Ok(WebEntryRow {
        key: row.get(0)?,
        kind: WebEntryKind::parse(&kind).ok_or_else(|| corrupt("web entry kind"))?,
        party: party.parse().map_err(|_| corrupt("web entry party"))?,
        role: role.parse().map_err(|_| corrupt("web entry role"))?,
        csrf: row.get(4)?,
        started_ms: uint(row.get(5)?)?,
        last_seen_ms: uint(row.get(6)?)?,
        expires_ms: uint(row.get(7)?)?,
    })
}

impl WebTx for SqliteTx<'_> {
    fn insert_web_entry(&mut self, e: &WebEntryRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(&format!("INSERT INTO web_entries ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"))?
            .execute(params![
                e.key,
                e.kind.as_str(),
                e.party.to_string(),
                e.role.as_str(),
                e.csrf,
                int(e.started_ms),
                int(e.last_seen_ms),
                int(e.expires_ms)
            ])?;
        Ok(())
    }

    fn web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM web_entries WHERE key = ?1 AND kind = ?2"))?
            .query_row(params![key, kind.as_str()], entry_row)
            .optional()?)
    }

    fn take_web_entry(&mut self, key: &str, kind: WebEntryKind) -> StoreResult<Option<WebEntryRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("DELETE FROM web_entries WHERE key = ?1 AND kind = ?2 RETURNING {COLUMNS}"))?
            .query_row(params![key, kind.as_str()], entry_row)
            .optional()?)
    }

    fn touch_web_entry(&mut self, key: &str, last_seen_ms: u64, expires_ms: u64) -> StoreResult<bool> {
        let changed = self
            .tx
            .prepare_cached("UPDATE web_entries SET last_seen_ms = ?2, expires_ms = ?3 WHERE key = ?1")?
            .execute(params![key, int(last_seen_ms), int(expires_ms)])?;
        Ok(changed == 1)
    }

    fn delete_web_entries_of(&mut self, party: &PartyId) -> StoreResult<u64> {
        let n =
            self.tx.prepare_cached("DELETE FROM web_entries WHERE party = ?1")?.execute(params![party.to_string()])?;
        Ok(n as u64)
    }

    fn delete_expired_web_entries(&mut self, now_ms: u64) -> StoreResult<u64> {
        let n =
            self.tx.prepare_cached("DELETE FROM web_entries WHERE expires_ms <= ?1")?.execute(params![int(now_ms)])?;
        Ok(n as u64)
    }

    fn count_web_entries(&mut self, kind: WebEntryKind, now_ms: u64) -> StoreResult<u64> {
        let n: i64 = self
            .tx
            .prepare_cached("SELECT COUNT(*) FROM web_entries WHERE kind = ?1 AND expires_ms > ?2")?
            .query_row(params![kind.as_str(), int(now_ms)], |r| r.get(0))?;
        Ok(uint(n)?)
    }

    fn task_page(&mut self, job: JobId, after: Option<TaskIndex>, limit: u32) -> StoreResult<Vec<TaskLine>> {
        let after = after.map_or(-1, int);
        let mut statement = self.tx.prepare_cached(
            "SELECT idx, state, attempts, cpu_ms, progress FROM tasks WHERE job = ?1 AND idx > ?2 ORDER BY idx LIMIT ?3",
        )?;
        let rows = statement.query_map(params![&job.as_uuid().as_bytes()[..], after, limit], |row| {
            Ok(TaskLine {
                index: uint(row.get(0)?)?,
                state: task_state(row, 1)?,
                attempts: row.get(2)?,
                cpu_ms: uint(row.get(3)?)?,
                progress: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn result_history(&mut self, job: JobId, since_ms: u64, width_ms: u64) -> StoreResult<Vec<ResultBucket>> {
        let width = int(width_ms.max(1));
        let mut statement = self.tx.prepare_cached(
            "SELECT (created_ms / ?3) * ?3 AS b, SUM(state = 'succeeded'), SUM(state = 'failed') FROM results
             INDEXED BY web_results_job_time WHERE job = ?1 AND created_ms >= ?2 GROUP BY b ORDER BY b",
        )?;
        let rows = statement.query_map(params![&job.as_uuid().as_bytes()[..], int(since_ms), width], |row| {
            Ok(ResultBucket { start_ms: uint(row.get(0)?)?, succeeded: uint(row.get(1)?)?, failed: uint(row.get(2)?)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn running_engines(&mut self, job: JobId, limit: u32) -> StoreResult<Vec<PartyId>> {
        let mut statement = self.tx.prepare_cached(
            "SELECT a.provider FROM tasks t INDEXED BY tasks_job_state JOIN assignments a ON a.task = t.key
             WHERE t.job = ?1 AND t.state = 'running' AND a.active = 1 ORDER BY a.id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![&job.as_uuid().as_bytes()[..], limit], |row| get_party_id(row, 0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn put_instance_report(&mut self, r: &InstanceReport) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO web_instances (instance, reported_ms, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (instance) DO UPDATE SET reported_ms = excluded.reported_ms, body = excluded.body",
            )?
            .execute(params![r.instance, int(r.reported_ms), r.body])?;
        Ok(())
    }

    fn instance_reports(&mut self, limit: u32) -> StoreResult<Vec<InstanceReport>> {
        let mut statement = self
            .tx
            .prepare_cached("SELECT instance, reported_ms, body FROM web_instances ORDER BY instance LIMIT ?1")?;
        let rows = statement.query_map(params![limit], |row| {
            Ok(InstanceReport { instance: row.get(0)?, reported_ms: uint(row.get(1)?)?, body: row.get(2)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
