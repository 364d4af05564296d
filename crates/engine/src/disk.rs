//! What the engine keeps on disk: its identity and session, the element cache, the tasks it
//! holds (with their outcomes until the server has them), and task checkpoints.
//!
//! Held tasks live in a small SQLite database (`engine.db`, WAL): thousands of tasks a second
//! come and go, and a file per task would spend the time creating and deleting inodes.
//! Checkpoints are files, written atomically and synced, since they are large and rare. Task
//! rows and checkpoints are sealed by the [`Vault`] (P3.7); a row or checkpoint that fails to
//! open was tampered with and is dropped, never used.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use idlegrid_protocol::messages::{Assignment, AssignmentStatus};
use idlegrid_types::{AssignmentId, SessionId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::vault::Vault;

pub struct Disk {
    root: PathBuf,
    db: Mutex<Connection>,
    vault: Arc<Vault>,
}

/// Write a file atomically: a reader sees the old bytes or the new, never a mix. With `sync`,
/// the bytes (and the rename) reach the device before this returns. On any failure the
/// temporary file is removed: a full disk must not stay full because of a half-written copy.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temporary_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    if sync
        && let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Where [`write_atomic`] writes before the rename.
fn temporary_path(path: &Path) -> PathBuf {
    path.with_extension(TEMPORARY_EXTENSION)
}

const TEMPORARY_EXTENSION: &str = "tmp";

/// Bytes available to this (unprivileged) process on the file system holding `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    idlegrid_platform::available_bytes(path)
}

/// Whether an I/O error means the disk (or the owner's quota) is full.
pub fn is_disk_full(error: &std::io::Error) -> bool {
    idlegrid_platform::is_disk_full(error)
}

fn io(error: rusqlite::Error) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

impl Disk {
    pub fn open(root: &Path, vault: Arc<Vault>) -> std::io::Result<Disk> {
        std::fs::create_dir_all(root.join("checkpoints"))?;
        std::fs::create_dir_all(root.join("elements"))?;
        let db = Connection::open(root.join("engine.db")).map_err(io)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(io)?;
        // A killed engine keeps every committed row; a power cut may lose the last ones, which
        // the server then reassigns or the engine reruns.
        db.pragma_update(None, "synchronous", "NORMAL").map_err(io)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (assignment INTEGER PRIMARY KEY, body BLOB NOT NULL, outcome BLOB);",
        )
        .map_err(io)?;
        Ok(Disk { root: root.to_path_buf(), db: Mutex::new(db), vault })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    pub fn session(&self) -> Option<SessionId> {
        let value: Option<String> = self
            .db()
            .query_row("SELECT value FROM meta WHERE key = 'session'", [], |r| r.get(0))
            .optional()
            .ok()
            .flatten();
        value?.parse().ok()
    }

    pub fn set_session(&self, session: SessionId) -> std::io::Result<()> {
        self.set_meta("session", &session.to_string())
    }

    pub fn meta(&self, key: &str) -> Option<String> {
        self.db().query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().ok().flatten()
    }

    pub fn set_meta(&self, key: &str, value: &str) -> std::io::Result<()> {
        self.db()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                [key, value],
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
                let id = assignment.assignment;
                let body = self.vault.seal(
                    &serde_json::to_vec(assignment).expect("serializes"),
                    format!("assignment/{}", id.0).as_bytes(),
                );
                insert.execute(params![id.0 as i64, body]).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    fn checkpoint_context(id: AssignmentId) -> Vec<u8> {
        format!("checkpoint/{}", id.0).into_bytes()
    }

    /// Bytes a checkpoint of `len` bytes takes on disk.
    pub fn sealed_checkpoint_size(len: usize) -> u64 {
        (len + 24 + 16) as u64
    }

    /// Bytes the task's checkpoint takes on disk now.
    pub fn checkpoint_bytes(&self, id: AssignmentId) -> u64 {
        std::fs::metadata(self.checkpoint_path(id)).map(|m| m.len()).unwrap_or(0)
    }

    /// Seal and store a checkpoint durably (write, fsync, rename: P3.8).
    pub fn save_checkpoint(&self, id: AssignmentId, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.checkpoint_path(id), &self.vault.seal(bytes, &Self::checkpoint_context(id)), true)
    }

    /// The task's checkpoint; one that was tampered with is deleted and reported absent.
    pub fn checkpoint(&self, id: AssignmentId) -> Option<Vec<u8>> {
        let sealed = std::fs::read(self.checkpoint_path(id)).ok()?;
        match self.vault.open(&sealed, &Self::checkpoint_context(id)) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::warn!(assignment = %id, %error, "a checkpoint on disk was altered; dropped");
                let _ = std::fs::remove_file(self.checkpoint_path(id));
                None
            }
        }
    }

    /// Total bytes of checkpoints on disk (counted against the owner's budget at start-up).
    pub fn checkpoints_bytes(&self) -> u64 {
        std::fs::read_dir(self.root.join("checkpoints"))
            .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// Keep final statuses until the server has acknowledged them (P3.9), in one transaction.
    pub fn save_outcomes(&self, statuses: &[&AssignmentStatus]) -> std::io::Result<()> {
        let mut db = self.db();
        let tx = db.transaction().map_err(io)?;
        {
            let mut update = tx.prepare_cached("UPDATE tasks SET outcome = ?2 WHERE assignment = ?1").map_err(io)?;
            for status in statuses {
                let id = status.assignment;
                let outcome = self
                    .vault
                    .seal(&serde_json::to_vec(status).expect("serializes"), format!("outcome/{}", id.0).as_bytes());
                update.execute(params![id.0 as i64, outcome]).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    /// Reclaim the space of tasks whose final status the server has (P3.12). Returns the bytes
    /// of checkpoints freed.
    pub fn remove_tasks(&self, ids: &[AssignmentId]) -> u64 {
        if ids.is_empty() {
            return 0;
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
        let mut freed = 0;
        for id in ids {
            freed += self.checkpoint_bytes(*id);
            let _ = std::fs::remove_file(self.checkpoint_path(*id));
        }
        freed
    }

    /// Every held task: its assignment and, if it finished, its unacknowledged outcome. Rows
    /// that fail to open (tampered with) are deleted.
    pub fn held_tasks(&self) -> Vec<(Assignment, Option<AssignmentStatus>)> {
        let rows: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = {
            let db = self.db();
            let Ok(mut statement) = db.prepare("SELECT assignment, body, outcome FROM tasks ORDER BY assignment")
            else {
                return Vec::new();
            };
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)));
            match rows {
                Ok(rows) => rows.flatten().collect(),
                Err(_) => return Vec::new(),
            }
        };
        let mut held = Vec::new();
        for (id, body, outcome) in rows {
            let assignment = self
                .vault
                .open(&body, format!("assignment/{id}").as_bytes())
                .ok()
                .and_then(|plain| serde_json::from_slice::<Assignment>(&plain).ok());
            let Some(assignment) = assignment else {
                tracing::warn!(assignment = id, "a held task on disk was altered; dropped");
                self.remove_tasks(&[AssignmentId(id as u64)]);
                continue;
            };
            let outcome = outcome
                .and_then(|o| self.vault.open(&o, format!("outcome/{id}").as_bytes()).ok())
                .and_then(|p| serde_json::from_slice(&p).ok());
            held.push((assignment, outcome));
        }
        held
    }

    /// Remove what a crash or a failed write left behind: temporary copies of checkpoints (the
    /// checkpoint itself, if any, is intact), and checkpoint files of tasks no longer held
    /// (debris of a crash between the two writes). Returns how many files went.
    pub fn sweep_checkpoints(&self) -> usize {
        let held: std::collections::BTreeSet<String> =
            self.held_tasks().iter().map(|(a, _)| a.assignment.0.to_string()).collect();
        let mut removed = 0;
        if let Ok(entries) = std::fs::read_dir(self.root.join("checkpoints")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let temporary = Path::new(&name).extension().is_some_and(|e| e == TEMPORARY_EXTENSION);
                if (temporary || !held.contains(&name)) && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
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
            signature: String::new(),
            checkpoint_upload_ms: None,
            trace: None,
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

    /// A write that runs out of space (its temporary file is `/dev/full`) fails as a full disk
    /// and leaves nothing behind: neither the temporary file nor a changed original.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_that_finds_the_disk_full_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7");
        write_atomic(&path, b"old", true).unwrap();
        std::os::unix::fs::symlink("/dev/full", temporary_path(&path)).unwrap();
        let error = write_atomic(&path, &[1u8; 10_000], true).unwrap_err();
        assert!(is_disk_full(&error), "{error:?}");
        assert!(std::fs::symlink_metadata(temporary_path(&path)).is_err(), "the temporary file was removed");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!is_disk_full(&std::io::Error::from(std::io::ErrorKind::PermissionDenied)));
        assert!(is_disk_full(&io(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into())
        ))));
    }

    #[test]
    fn leftover_temporary_checkpoints_are_swept_even_for_held_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let disk = open(dir.path());
        disk.save_assignments(&[&assignment(1)]).unwrap();
        disk.save_checkpoint(AssignmentId(1), b"kept").unwrap();
        let checkpoints = dir.path().join("checkpoints");
        std::fs::write(checkpoints.join("1.tmp"), b"half").unwrap();
        std::fs::write(checkpoints.join("2"), b"orphan").unwrap();
        std::fs::write(checkpoints.join("2.tmp"), b"half").unwrap();
        assert_eq!(disk.sweep_checkpoints(), 3);
        let left: Vec<String> = std::fs::read_dir(&checkpoints)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into())
            .collect();
        assert_eq!(left, vec!["1".to_string()]);
        assert_eq!(disk.checkpoint(AssignmentId(1)).as_deref(), Some(&b"kept"[..]));
    }

    fn open(dir: &Path) -> Disk {
        let vault = Arc::new(Vault::load_or_create(&dir.join("storage.key")).unwrap());
        Disk::open(dir, vault).unwrap()
    }

    #[test]
    fn held_tasks_survive_reopening_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let disk = open(dir.path());
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
                trace: None,
            };
            disk.save_outcomes(&[&status]).unwrap();
            let session = SessionId::random();
            disk.set_session(session).unwrap();
            assert_eq!(disk.session(), Some(session));
        }
        let disk = open(dir.path());
        let held = disk.held_tasks();
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].1.as_ref().map(|s| s.cpu_ms), Some(3));
        assert!(held[1].1.is_none());
        assert_eq!(disk.checkpoint(AssignmentId(2)).as_deref(), Some(&b"cp"[..]));
        disk.remove_tasks(&[AssignmentId(1), AssignmentId(2)]);
        assert!(disk.held_tasks().is_empty());
        assert!(disk.checkpoint(AssignmentId(2)).is_none());
    }

    #[test]
    fn tampered_rows_and_checkpoints_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = open(dir.path());
        disk.save_assignments(&[&assignment(1), &assignment(2)]).unwrap();
        disk.save_checkpoint(AssignmentId(1), b"state").unwrap();
        let raw = std::fs::read(dir.path().join("checkpoints/1")).unwrap();
        assert!(!raw.windows(5).any(|w| w == b"state"), "sealed at rest");
        let mut altered = raw.clone();
        altered[30] ^= 1;
        std::fs::write(dir.path().join("checkpoints/1"), altered).unwrap();
        assert_eq!(disk.checkpoint(AssignmentId(1)), None);
        assert!(!dir.path().join("checkpoints/1").exists());
        disk.db().execute("UPDATE tasks SET body = x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899' WHERE assignment = 2", []).unwrap();
        let held = disk.held_tasks();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0.assignment, AssignmentId(1));
    }
}
