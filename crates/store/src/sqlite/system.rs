//! The server's own records: metadata, the log lines engines and clients send, and the census, in SQLite (see `crate::system`).

use super::*;

impl SystemTx for SqliteTx<'_> {
    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tx
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")?
            .execute(params![key, value])?;
        Ok(())
    }

    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()> {
        let mut statement = self.tx.prepare_cached(
            "INSERT INTO logs (time_ms, received_ms, party, role, level, component, job, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for line in lines {
            statement.execute(params![
                int(line.time_ms),
                int(line.received_ms),
                &line.party.as_bytes()[..],
                line.role.as_str(),
                line.level,
                line.component,
                line.job.map(|j| j.as_uuid().as_bytes().to_vec()),
                line.message
            ])?;
        }
        Ok(())
    }

    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>> {
        self.collect(
            "SELECT id, time_ms, received_ms, party, role, level, component, job, message FROM logs
             WHERE (?1 IS NULL OR component = ?1) AND (?2 IS NULL OR party = ?2) AND (?3 IS NULL OR job = ?3)
               AND (?4 IS NULL OR level = ?4) AND received_ms >= ?5 AND received_ms < ?6
             ORDER BY id DESC LIMIT ?7",
            params![
                filter.component,
                filter.party.as_ref().map(|p| p.as_bytes().to_vec()),
                filter.job.map(|j| j.as_uuid().as_bytes().to_vec()),
                filter.level,
                int(filter.since_ms.unwrap_or(0)),
                int(filter.until_ms.unwrap_or(i64::MAX as u64)),
                i64::from(filter.limit)
            ],
            |row| {
                let role: String = row.get(4)?;
                let job: Option<Vec<u8>> = row.get(7)?;
                Ok(LogRow {
                    id: uint(row.get(0)?)?,
                    time_ms: uint(row.get(1)?)?,
                    received_ms: uint(row.get(2)?)?,
                    party: get_party_id(row, 3)?,
                    role: role.parse::<Role>().map_err(|_| corrupt("role"))?,
                    level: row.get(5)?,
                    component: row.get(6)?,
                    job: match job {
                        Some(_) => Some(get_job_id(row, 7)?),
                        None => None,
                    },
                    message: row.get(8)?,
                })
            },
        )
    }

    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64> {
        Ok(self.tx.prepare_cached("DELETE FROM logs WHERE received_ms < ?1")?.execute([int(before_ms)])? as u64)
    }

    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census> {
        // From the jobs' counters, so the cost grows with jobs, not tasks.
        let (queued, running, active): (i64, i64, i64) = self
            .tx
            .prepare_cached(
                "SELECT COALESCE(SUM(n_queued), 0), COALESCE(SUM(n_running), 0),
                    COALESCE(SUM(CASE WHEN state <> 'completed' THEN 1 ELSE 0 END), 0) FROM jobs",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let engines: i64 = self
            .tx
            .prepare_cached("SELECT COUNT(*) FROM providers WHERE session IS NOT NULL AND last_contact_ms >= ?1")?
            .query_row([int(contact_since_ms)], |r| r.get(0))?;
        Ok(Census {
            tasks_queued: uint(queued)?,
            tasks_running: uint(running)?,
            jobs_active: uint(active)?,
            engines_connected: uint(engines)?,
        })
    }
}
