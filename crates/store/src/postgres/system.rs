//! The server's own records: metadata, the log lines engines and clients send, and the census, in PostgreSQL (see `crate::system`).

use super::*;

impl SystemTx for PgTx<'_> {
    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|row| col(&row, 0, "meta.value"))
            .transpose()
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()> {
        for line in lines {
            let job = line.job.map(|j| j.as_uuid().as_bytes().to_vec());
            self.execute(
                "INSERT INTO logs (time_ms, received_ms, party, role, level, component, job, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &int(line.time_ms),
                    &int(line.received_ms),
                    &&line.party.as_bytes()[..],
                    &line.role.as_str(),
                    &line.level,
                    &line.component,
                    &job,
                    &line.message,
                ],
            )?;
        }
        Ok(())
    }

    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>> {
        let party = filter.party.as_ref().map(|p| p.as_bytes().to_vec());
        let job = filter.job.map(|j| j.as_uuid().as_bytes().to_vec());
        let rows = self.query(
            "SELECT id, time_ms, received_ms, party, role, level, component, job, message FROM logs
             WHERE ($1::TEXT IS NULL OR component = $1) AND ($2::BYTEA IS NULL OR party = $2) AND ($3::BYTEA IS NULL OR job = $3)
               AND ($4::TEXT IS NULL OR level = $4) AND received_ms >= $5 AND received_ms < $6
             ORDER BY id DESC LIMIT $7",
            &[
                &filter.component,
                &party,
                &job,
                &filter.level,
                &int(filter.since_ms.unwrap_or(0)),
                &int(filter.until_ms.unwrap_or(i64::MAX as u64)),
                &i64::from(filter.limit),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let role: &str = col(row, 4, "logs.role")?;
                let job: Option<&[u8]> = col(row, 7, "logs.job")?;
                Ok(LogRow {
                    id: get_u64(row, 0, "logs.id")?,
                    time_ms: get_u64(row, 1, "logs.time_ms")?,
                    received_ms: get_u64(row, 2, "logs.received_ms")?,
                    party: get_party_id(row, 3, "logs.party")?,
                    role: role.parse::<Role>().map_err(|e| corrupt("logs.role", e))?,
                    level: col(row, 5, "logs.level")?,
                    component: col(row, 6, "logs.component")?,
                    job: match job {
                        Some(_) => Some(get_job_id(row, 7, "logs.job")?),
                        None => None,
                    },
                    message: col(row, 8, "logs.message")?,
                })
            })
            .collect()
    }

    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64> {
        self.execute("DELETE FROM logs WHERE received_ms < $1", &[&int(before_ms)])
    }

    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census> {
        let row = self
            .query_opt(
                "SELECT COALESCE(SUM(n_queued), 0)::BIGINT, COALESCE(SUM(n_running), 0)::BIGINT,
                    COUNT(*) FILTER (WHERE state <> 'completed')::BIGINT FROM jobs",
                &[],
            )?
            .ok_or_else(|| StoreError::Database("the census query returned no row".into()))?;
        let engines = self
            .query_opt(
                "SELECT COUNT(*) FROM providers WHERE session IS NOT NULL AND last_contact_ms >= $1",
                &[&int(contact_since_ms)],
            )?
            .ok_or_else(|| StoreError::Database("the census query returned no row".into()))?;
        Ok(Census {
            tasks_queued: get_u64(&row, 0, "census.queued")?,
            tasks_running: get_u64(&row, 1, "census.running")?,
            jobs_active: get_u64(&row, 2, "census.active")?,
            engines_connected: get_u64(&engines, 0, "census.engines")?,
        })
    }
}
