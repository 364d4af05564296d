//! Narrowed attachments in PostgreSQL, as in SQLite (see `crate::watches`).

use idlegrid_types::{JobId, SessionId, TaskIndex};

use super::{PgTx, col, corrupt, get_u64, int};
use crate::StoreResult;
use crate::watches::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE watches (
    session TEXT NOT NULL, job TEXT NOT NULL, task BIGINT, every_ms BIGINT, every_percent DOUBLE PRECISION,
    PRIMARY KEY (session, job));
CREATE TABLE watch_marks (
    session TEXT NOT NULL, job TEXT NOT NULL, task BIGINT NOT NULL, sent_ms BIGINT NOT NULL,
    progress DOUBLE PRECISION NOT NULL, PRIMARY KEY (session, job, task));
"#;

fn opt_u64(value: Option<i64>, what: &str) -> StoreResult<Option<u64>> {
    value.map(|v| u64::try_from(v).map_err(|_| corrupt(what, format!("{v} is negative")))).transpose()
}

impl WatchTx for PgTx<'_> {
    fn set_watch(&mut self, w: &WatchRow) -> StoreResult<()> {
        self.delete_watch(w.session, w.job)?;
        self.execute(
            "INSERT INTO watches (session, job, task, every_ms, every_percent) VALUES ($1, $2, $3, $4, $5)",
            &[&w.session.to_string(), &w.job.to_string(), &w.task.map(int), &w.every_ms.map(int), &w.every_percent],
        )?;
        Ok(())
    }

    fn watch(&mut self, session: SessionId, job: JobId) -> StoreResult<Option<WatchRow>> {
        let Some(row) = self.query_opt(
            "SELECT task, every_ms, every_percent FROM watches WHERE session = $1 AND job = $2",
            &[&session.to_string(), &job.to_string()],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(WatchRow {
            session,
            job,
            task: opt_u64(col(&row, 0, "watches.task")?, "watches.task")?,
            every_ms: opt_u64(col(&row, 1, "watches.every_ms")?, "watches.every_ms")?,
            every_percent: col(&row, 2, "watches.every_percent")?,
        }))
    }

    fn delete_watch(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        let (session, job) = (session.to_string(), job.to_string());
        self.execute("DELETE FROM watches WHERE session = $1 AND job = $2", &[&session, &job])?;
        self.execute("DELETE FROM watch_marks WHERE session = $1 AND job = $2", &[&session, &job])?;
        Ok(())
    }

    fn interim_mark(&mut self, session: SessionId, job: JobId, task: TaskIndex) -> StoreResult<Option<InterimMark>> {
        let Some(row) = self.query_opt(
            "SELECT sent_ms, progress FROM watch_marks WHERE session = $1 AND job = $2 AND task = $3",
            &[&session.to_string(), &job.to_string(), &int(task)],
        )?
        else {
            return Ok(None);
        };
        let progress: f64 = col(&row, 1, "watch_marks.progress")?;
        if !progress.is_finite() {
            return Err(corrupt("watch_marks.progress", progress));
        }
        Ok(Some(InterimMark { sent_ms: get_u64(&row, 0, "watch_marks.sent_ms")?, progress }))
    }

    fn set_interim_mark(
        &mut self,
        session: SessionId,
        job: JobId,
        task: TaskIndex,
        mark: &InterimMark,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO watch_marks (session, job, task, sent_ms, progress) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, job, task) DO UPDATE SET sent_ms = EXCLUDED.sent_ms, progress = EXCLUDED.progress",
            &[&session.to_string(), &job.to_string(), &int(task), &int(mark.sent_ms), &mark.progress],
        )?;
        Ok(())
    }
}
