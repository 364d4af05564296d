//! What the engine keeps on disk: its identity and session, the element cache, the tasks it
//! holds (with their outcomes until the server has them), and task checkpoints.
//!
//! Held tasks live in a small SQLite database (`engine.db`, WAL): thousands of tasks a second
//! come and go, and a file per task would spend the time creating and deleting inodes.
//! Checkpoints are files, written atomically and synced, since they are large and rare.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use idlegrid_protocol::messages::{Assignment, AssignmentStatus};
use idlegrid_types::{AssignmentId, SessionId};
use rusqlite::{Connection, OptionalExtension, params};

pub struct Disk {
    root: PathBuf,
    db: Mutex<Connection>,
}

/// Write a file atomically: a reader sees the old bytes or the new, never a mix. With `sync`,
/// the bytes (and the rename) reach the device before this returns.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if sync {
        if let Some(parent) = path.parent() {
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
        }
    }
    Ok(())
}

fn io(error: rusqlite::Error) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

impl Disk {
    pub fn open(root: &Path) -> std::io::Result<Disk> {
        std::fs::create_dir_all(root.join("checkpoints"))?;
        std::fs::create_dir_all(root.join("elements"))?;
        let db = Connection::open(root.join("engine.db")).map_err(io)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(io)?;
        // A killed engine keeps every committed row; a power cut may lose the last ones, which
        // the server then reassigns or the engine reruns.
        db.pragma_update(None, "synchronous", "NORMAL").map_err(io)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (assignment INTEGER PRIMARY KEY, body TEXT NOT NULL, outcome TEXT);",
        )
        .map_err(io)?;
        Ok(Disk { root: root.to_path_buf(), db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    pub fn elements_dir(&self) -> PathBuf {
        self.root.join("elements")
    }

    pub fn session(&self) -> Option<SessionId> {
        let value: Option<String> =
            self.db().query_row("SELECT value FROM meta WHERE key = 'session'", [], |r| r.get(0)).optional().ok().flatten();
        value?.parse().ok()
    }

    pub fn set_session(&self, session: SessionId) -> std::io::Result<()> {
        self.db()
            .execute(
                "INSERT INTO meta (key, value) VALUES ('session', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1",
                [session.to_string()],
            )
            .map_err(io)?;
        Ok(())
    }

    fn checkpoint_path(&self, id: AssignmentId) -> PathBuf {
        self.root.join("checkpoints").join(id.0.to_string())
    }

    /// Save assignments in one transaction (a poll brings many at once).
    pub fn save_assignments(&self, assignments: &[&Assignment]) -> std::io::Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(io)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO tasks (assignment, body) VALUES (?1, ?2) ON CONFLICT (assignment) DO UPDATE SET body = ?2")
                .map_err(io)?;
            for assignment in assignments {
                let body = serde_json::to_string(assignment).expect("serializes");
                insert.execute(params![assignment.assignment.0 as i64, body]).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }


    pub fn save_checkpoint(&self, id: AssignmentId, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.checkpoint_path(id), bytes, true)
    }

    pub fn checkpoint(&self, id: AssignmentId) -> Option<Vec<u8>> {
        std::fs::read(self.checkpoint_path(id)).ok()
    }

    /// Keep final statuses until the server has acknowledged them (P3.9), in one transaction.
    pub fn save_outcomes(&self, statuses: &[&AssignmentStatus]) -> std::io::Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(io)?;
        {
            let mut update = tx.prepare_cached("UPDATE tasks SET outcome = ?2 WHERE assignment = ?1").map_err(io)?;
            for status in statuses {
                let outcome = serde_json::to_string(status).expect("serializes");
                update.execute(params![status.assignment.0 as i64, outcome]).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    /// Reclaim the space of tasks whose final status the server has (P3.12).
    pub fn remove_tasks(&self, ids: &[AssignmentId]) {
        if ids.is_empty() {
            return;
        }
        let mut db = self.db();
        let removed = db.transaction().and_then(|tx| {
            {
                let mut delete = tx.prepare_cached("DELETE FROM tasks WHERE assignment = ?1")?;
                for id in ids {
                    delete.execute([id.0 as i64])?;
                }
            }
            tx.commit()
        });
        if let Err(error) = removed {
            tracing::warn!(%error, "cannot forget finished tasks");
        }
        drop(db);
        for id in ids {
            let _ = std::fs::remove_file(self.checkpoint_path(*id));
        }
    }

    pub fn remove_task(&self, id: AssignmentId) {
        self.remove_tasks(&[id]);
    }

    /// Every held task: its assignment and, if it finished, its unacknowledged outcome.
    pub fn held_tasks(&self) -> Vec<(Assignment, Option<AssignmentStatus>)> {
        let db = self.db();
        let Ok(mut statement) = db.prepare("SELECT body, outcome FROM tasks ORDER BY assignment") else { return Vec::new() };
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)));
        let Ok(rows) = rows else { return Vec::new() };
        rows.flatten()
            .filter_map(|(body, outcome)| {
                let assignment = serde_json::from_str(&body).ok()?;
                Some((assignment, outcome.and_then(|o| serde_json::from_str(&o).ok())))
            })
            .collect()
    }

    /// Checkpoint files of tasks no longer held (debris of a crash between the two writes).
    pub fn sweep_checkpoints(&self) {
        let held: std::collections::BTreeSet<String> =
            self.held_tasks().iter().map(|(a, _)| a.assignment.0.to_string()).collect();
        if let Ok(entries) = std::fs::read_dir(self.root.join("checkpoints")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !held.contains(name.trim_end_matches(".tmp")) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_protocol::messages::AssignmentState;
    use idlegrid_types::{ElementHash, ElementRef, TaskLimitsSpec};

    fn assignment(id: u64) -> Assignment {
        Assignment {
            assignment: AssignmentId(id),
            executable: ElementRef { hash: ElementHash::of(b"x"), size: 1 },
            data: Default::default(),
            params: b"p".to_vec(),
            checkpoint: None,
            priority: 0,
            limits: TaskLimitsSpec::default(),
            ticket: "t".into(),
        }
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"first", true).unwrap();
        write_atomic(&path, b"second", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn held_tasks_survive_reopening_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let disk = Disk::open(dir.path()).unwrap();
            disk.save_assignments(&[&assignment(1), &assignment(2)]).unwrap();
            disk.save_checkpoint(AssignmentId(2), b"cp").unwrap();
            let status = AssignmentStatus {
                assignment: AssignmentId(1),
                state: AssignmentState::Succeeded,
                progress: 1.0,
                status: None,
                result: None,
                failure: None,
                checkpoint: None,
                cpu_ms: 3,
            };
            disk.save_outcomes(&[&status]).unwrap();
            let session = SessionId::random();
            disk.set_session(session).unwrap();
            assert_eq!(disk.session(), Some(session));
        }
        let disk = Disk::open(dir.path()).unwrap();
        let held = disk.held_tasks();
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].1.as_ref().map(|s| s.cpu_ms), Some(3));
        assert!(held[1].1.is_none());
        assert_eq!(disk.checkpoint(AssignmentId(2)).as_deref(), Some(&b"cp"[..]));
        disk.remove_tasks(&[AssignmentId(1), AssignmentId(2)]);
        assert!(disk.held_tasks().is_empty());
        assert!(disk.checkpoint(AssignmentId(2)).is_none());
    }
}
