//! Deliveries of results outside the server in SQLite (see `crate::deliveries`).

use idlegrid_types::{JobId, TaskIndex};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteTx, corrupt, get_job_id, int, uint};
use crate::StoreResult;
use crate::deliveries::{DeliveryCounts, DeliveryRow, DeliveryState, DeliveryTarget, DeliveryTx};

pub(super) const MIGRATION: &str = r#"
CREATE TABLE delivery_targets (job BLOB PRIMARY KEY, task INTEGER, url TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE deliveries (
    job BLOB NOT NULL, idx INTEGER NOT NULL, result INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_try_ms INTEGER NOT NULL, last_error TEXT, delivered_ms INTEGER,
    PRIMARY KEY (job, idx)) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries(next_try_ms) WHERE state = 'pending';
"#;

const COLUMNS: &str = "job, idx, result, state, attempts, next_try_ms, last_error, delivered_ms";

fn key(job: JobId) -> Vec<u8> {
    job.as_uuid().as_bytes().to_vec()
}

fn delivery_row(row: &Row) -> rusqlite::Result<DeliveryRow> {
    let state: String = row.get(3)?;
    Ok(DeliveryRow {
        job: get_job_id(row, 0)?,
        task: uint(row.get(1)?)?,
        result_id: row.get(2)?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state"))?,
        attempts: u32::try_from(uint(row.get(4)?)?).map_err(|_| corrupt("delivery attempts"))?,
        next_try_ms: uint(row.get(5)?)?,
        last_error: row.get(6)?,
        delivered_ms: row.get::<_, Option<i64>>(7)?.map(uint).transpose()?,
    })
}

impl DeliveryTx for SqliteTx<'_> {
    fn set_delivery_target(&mut self, target: &DeliveryTarget) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO delivery_targets (job, task, url, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job) DO UPDATE SET task = excluded.task, url = excluded.url, created_ms = excluded.created_ms",
            )?
            .execute(params![key(target.job), target.task.map(int), target.url, int(target.created_ms)])?;
        Ok(())
    }

    fn delivery_target(&mut self, job: JobId) -> StoreResult<Option<DeliveryTarget>> {
        Ok(self
            .tx
            .prepare_cached("SELECT task, url, created_ms FROM delivery_targets WHERE job = ?1")?
            .query_row([key(job)], |row| {
                Ok(DeliveryTarget {
                    job,
                    task: row.get::<_, Option<i64>>(0)?.map(uint).transpose()?,
                    url: row.get(1)?,
                    created_ms: uint(row.get(2)?)?,
                })
            })
            .optional()?)
    }

    fn queue_delivery(&mut self, job: JobId, task: TaskIndex, result_id: i64, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO deliveries (job, idx, result, state, attempts, next_try_ms) VALUES (?1, ?2, ?3, 'pending', 0, ?4)
                 ON CONFLICT (job, idx) DO UPDATE SET result = excluded.result, state = 'pending', attempts = 0,
                     next_try_ms = excluded.next_try_ms, last_error = NULL, delivered_ms = NULL",
            )?
            .execute(params![key(job), int(task), result_id, int(now_ms)])?;
        Ok(())
    }

    fn due_deliveries(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        self.collect(
            &format!(
                "SELECT {COLUMNS} FROM deliveries WHERE state = 'pending' AND next_try_ms <= ?1
                 ORDER BY next_try_ms LIMIT ?2"
            ),
            params![int(now_ms), limit],
            delivery_row,
        )
    }

    fn delivery_attempted(
        &mut self,
        job: JobId,
        task: TaskIndex,
        state: DeliveryState,
        attempts: u32,
        next_try_ms: u64,
        error: Option<&str>,
        delivered_ms: Option<u64>,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempts = ?4, next_try_ms = ?5, last_error = ?6, delivered_ms = ?7
                 WHERE job = ?1 AND idx = ?2",
            )?
            .execute(params![
                key(job),
                int(task),
                state.as_str(),
                attempts,
                int(next_try_ms),
                error,
                delivered_ms.map(int)
            ])?;
        Ok(())
    }

    fn deliveries_of_job(
        &mut self,
        job: JobId,
        after_task: Option<TaskIndex>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let after = after_task.map(int).unwrap_or(-1);
        self.collect(
            &format!("SELECT {COLUMNS} FROM deliveries WHERE job = ?1 AND idx > ?2 ORDER BY idx LIMIT ?3"),
            params![key(job), after, limit],
            delivery_row,
        )
    }

    fn delivery_counts(&mut self, job: JobId) -> StoreResult<DeliveryCounts> {
        let mut counts = DeliveryCounts::default();
        let rows =
            self.collect("SELECT state, COUNT(*) FROM deliveries WHERE job = ?1 GROUP BY state", [key(job)], |row| {
                Ok((row.get::<_, String>(0)?, uint(row.get(1)?)?))
            })?;
        for (state, n) in rows {
            match DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state"))? {
                DeliveryState::Pending => counts.pending = n,
                DeliveryState::Delivered => counts.delivered = n,
                DeliveryState::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }
}
