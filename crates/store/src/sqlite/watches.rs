//! Narrowed attachments in SQLite (see `crate::watches`).

use idlegrid_types::{JobId, SessionId, TaskIndex};
use rusqlite::{OptionalExtension, params};

use super::{SqliteTx, corrupt, int, uint};
use crate::StoreResult;
use crate::watches::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE watches (
    session TEXT NOT NULL, job TEXT NOT NULL, task INTEGER, every_ms INTEGER, every_percent REAL,
    PRIMARY KEY (session, job));
CREATE TABLE watch_marks (
    session TEXT NOT NULL, job TEXT NOT NULL, task INTEGER NOT NULL, sent_ms INTEGER NOT NULL,
    progress REAL NOT NULL, PRIMARY KEY (session, job, task));
"#;

impl WatchTx for SqliteTx<'_> {
    fn set_watch(&mut self, w: &WatchRow) -> StoreResult<()> {
        self.delete_watch(w.session, w.job)?;
        self.tx
            .prepare_cached(
                "INSERT INTO watches (session, job, task, every_ms, every_percent) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                w.session.to_string(),
                w.job.to_string(),
                w.task.map(int),
                w.every_ms.map(int),
                w.every_percent
            ])?;
        Ok(())
    }

    fn watch(&mut self, session: SessionId, job: JobId) -> StoreResult<Option<WatchRow>> {
        let row = self
            .tx
            .prepare_cached("SELECT task, every_ms, every_percent FROM watches WHERE session = ?1 AND job = ?2")?
            .query_row(params![session.to_string(), job.to_string()], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<f64>>(2)?))
            })
            .optional()?;
        let Some((task, every_ms, every_percent)) = row else { return Ok(None) };
        Ok(Some(WatchRow {
            session,
            job,
            task: task.map(uint).transpose()?,
            every_ms: every_ms.map(uint).transpose()?,
            every_percent,
        }))
    }

    fn delete_watch(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        let keys = params![session.to_string(), job.to_string()];
        self.tx.prepare_cached("DELETE FROM watches WHERE session = ?1 AND job = ?2")?.execute(keys)?;
        self.tx.prepare_cached("DELETE FROM watch_marks WHERE session = ?1 AND job = ?2")?.execute(keys)?;
        Ok(())
    }

    fn interim_mark(&mut self, session: SessionId, job: JobId, task: TaskIndex) -> StoreResult<Option<InterimMark>> {
        let row = self
            .tx
            .prepare_cached("SELECT sent_ms, progress FROM watch_marks WHERE session = ?1 AND job = ?2 AND task = ?3")?
            .query_row(params![session.to_string(), job.to_string(), int(task)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
            })
            .optional()?;
        match row {
            Some((sent_ms, progress)) if progress.is_finite() => {
                Ok(Some(InterimMark { sent_ms: uint(sent_ms)?, progress }))
            }
            Some(_) => Err(corrupt("watch_marks.progress").into()),
            None => Ok(None),
        }
    }

    fn set_interim_mark(
        &mut self,
        session: SessionId,
        job: JobId,
        task: TaskIndex,
        mark: &InterimMark,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO watch_marks (session, job, task, sent_ms, progress) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (session, job, task) DO UPDATE SET sent_ms = excluded.sent_ms, progress = excluded.progress",
            )?
            .execute(params![session.to_string(), job.to_string(), int(task), int(mark.sent_ms), mark.progress])?;
        Ok(())
    }
}
