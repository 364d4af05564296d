//! Deliveries of results outside the server in PostgreSQL, as in SQLite (see `crate::deliveries`).

use super::Row;
use idlegrid_types::{JobId, TaskIndex};

use super::{PgTx, col, corrupt, get_job_id, get_u32, get_u64, int};
use crate::StoreResult;
use crate::deliveries::{DeliveryCounts, DeliveryRow, DeliveryState, DeliveryTarget, DeliveryTx};

pub(super) const MIGRATION: &str = r#"
CREATE TABLE delivery_targets (job BYTEA PRIMARY KEY, task BIGINT, url TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE deliveries (
    job BYTEA NOT NULL, idx BIGINT NOT NULL, result BIGINT NOT NULL, state TEXT NOT NULL,
    attempts BIGINT NOT NULL, next_try_ms BIGINT NOT NULL, last_error TEXT, delivered_ms BIGINT,
    PRIMARY KEY (job, idx));
CREATE INDEX deliveries_due ON deliveries(next_try_ms) WHERE state = 'pending';
"#;

const COLUMNS: &str = "job, idx, result, state, attempts, next_try_ms, last_error, delivered_ms";

fn key(job: JobId) -> Vec<u8> {
    job.as_uuid().as_bytes().to_vec()
}

fn opt_u64(row: &Row, i: usize, what: &str) -> StoreResult<Option<u64>> {
    let value: Option<i64> = col(row, i, what)?;
    value.map(|v| u64::try_from(v).map_err(|_| corrupt(what, format!("{v} is negative")))).transpose()
}

fn delivery_row(row: &Row) -> StoreResult<DeliveryRow> {
    let state: &str = col(row, 3, "deliveries.state")?;
    Ok(DeliveryRow {
        job: get_job_id(row, 0, "deliveries.job")?,
        task: get_u64(row, 1, "deliveries.idx")?,
        result_id: col(row, 2, "deliveries.result")?,
        state: DeliveryState::parse(state).ok_or_else(|| corrupt("deliveries.state", state))?,
        attempts: get_u32(row, 4, "deliveries.attempts")?,
        next_try_ms: get_u64(row, 5, "deliveries.next_try_ms")?,
        last_error: col(row, 6, "deliveries.last_error")?,
        delivered_ms: opt_u64(row, 7, "deliveries.delivered_ms")?,
    })
}

impl DeliveryTx for PgTx<'_> {
    fn set_delivery_target(&mut self, target: &DeliveryTarget) -> StoreResult<()> {
        self.execute(
            "INSERT INTO delivery_targets (job, task, url, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job) DO UPDATE SET task = excluded.task, url = excluded.url, created_ms = excluded.created_ms",
            &[&key(target.job), &target.task.map(int), &target.url, &int(target.created_ms)],
        )?;
        Ok(())
    }

    fn delivery_target(&mut self, job: JobId) -> StoreResult<Option<DeliveryTarget>> {
        self.query_opt("SELECT task, url, created_ms FROM delivery_targets WHERE job = $1", &[&key(job)])?
            .map(|row| {
                Ok(DeliveryTarget {
                    job,
                    task: opt_u64(&row, 0, "delivery_targets.task")?,
                    url: col(&row, 1, "delivery_targets.url")?,
                    created_ms: get_u64(&row, 2, "delivery_targets.created_ms")?,
                })
            })
            .transpose()
    }

    fn queue_delivery(&mut self, job: JobId, task: TaskIndex, result_id: i64, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO deliveries (job, idx, result, state, attempts, next_try_ms) VALUES ($1, $2, $3, 'pending', 0, $4)
             ON CONFLICT (job, idx) DO UPDATE SET result = excluded.result, state = 'pending', attempts = 0,
                 next_try_ms = excluded.next_try_ms, last_error = NULL, delivered_ms = NULL",
            &[&key(job), &int(task), &result_id, &int(now_ms)],
        )?;
        Ok(())
    }

    fn due_deliveries(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<DeliveryRow>> {
        self.collect(
            &format!(
                "SELECT {COLUMNS} FROM deliveries WHERE state = 'pending' AND next_try_ms <= $1
                 ORDER BY next_try_ms LIMIT $2"
            ),
            &[&int(now_ms), &i64::from(limit)],
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
        self.execute(
            "UPDATE deliveries SET state = $3, attempts = $4, next_try_ms = $5, last_error = $6, delivered_ms = $7
             WHERE job = $1 AND idx = $2",
            &[
                &key(job),
                &int(task),
                &state.as_str(),
                &i64::from(attempts),
                &int(next_try_ms),
                &error,
                &delivered_ms.map(int),
            ],
        )?;
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
            &format!("SELECT {COLUMNS} FROM deliveries WHERE job = $1 AND idx > $2 ORDER BY idx LIMIT $3"),
            &[&key(job), &after, &i64::from(limit)],
            delivery_row,
        )
    }

    fn delivery_counts(&mut self, job: JobId) -> StoreResult<DeliveryCounts> {
        let mut counts = DeliveryCounts::default();
        for row in self.query("SELECT state, COUNT(*) FROM deliveries WHERE job = $1 GROUP BY state", &[&key(job)])? {
            let state: &str = col(&row, 0, "deliveries.state")?;
            let n = get_u64(&row, 1, "COUNT(deliveries)")?;
            match DeliveryState::parse(state).ok_or_else(|| corrupt("deliveries.state", state))? {
                DeliveryState::Pending => counts.pending = n,
                DeliveryState::Delivered => counts.delivered = n,
                DeliveryState::Failed => counts.failed = n,
            }
        }
        Ok(counts)
    }
}
