//! What the engine keeps on disk: its identity and session, the element cache, and one folder
//! per held task (the assignment, its latest checkpoint, its outcome until the server has it).

use std::path::{Path, PathBuf};

use idlegrid_protocol::messages::{Assignment, AssignmentStatus};
use idlegrid_types::{AssignmentId, ElementHash, SessionId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionFile {
    session: SessionId,
}

/// Write a file atomically: a reader sees the old bytes or the new, never a mix. With `sync`,
/// the bytes are on the device before the rename (checkpoints); without, a killed process
/// still leaves them in the page cache (the server re-sends what a power cut loses).
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
            // The rename itself must reach the disk too.
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
        }
    }
    Ok(())
}

impl Disk {
    pub fn open(root: &Path) -> std::io::Result<Disk> {
        std::fs::create_dir_all(root.join("tasks"))?;
        std::fs::create_dir_all(root.join("elements"))?;
        Ok(Disk { root: root.to_path_buf() })
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    pub fn elements_dir(&self) -> PathBuf {
        self.root.join("elements")
    }

    pub fn element_path(&self, hash: &ElementHash) -> PathBuf {
        self.root.join("elements").join(hash.to_string())
    }

    pub fn session(&self) -> Option<SessionId> {
        let text = std::fs::read_to_string(self.root.join("session.json")).ok()?;
        serde_json::from_str::<SessionFile>(&text).ok().map(|f| f.session)
    }

    pub fn set_session(&self, session: SessionId) -> std::io::Result<()> {
        let text = serde_json::to_vec(&SessionFile { session }).expect("serializes");
        write_atomic(&self.root.join("session.json"), &text, true)
    }

    fn task_dir(&self, id: AssignmentId) -> PathBuf {
        self.root.join("tasks").join(id.0.to_string())
    }

    pub fn save_assignment(&self, assignment: &Assignment) -> std::io::Result<()> {
        let dir = self.task_dir(assignment.assignment);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("assignment.json"), &serde_json::to_vec(assignment).expect("serializes"), false)
    }

    pub fn save_checkpoint(&self, id: AssignmentId, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.task_dir(id);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("checkpoint.bin"), bytes, true)
    }

    pub fn checkpoint(&self, id: AssignmentId) -> Option<Vec<u8>> {
        std::fs::read(self.task_dir(id).join("checkpoint.bin")).ok()
    }

    /// Keep the final status until the server has acknowledged it (P3.9).
    pub fn save_outcome(&self, status: &AssignmentStatus) -> std::io::Result<()> {
        let dir = self.task_dir(status.assignment);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("outcome.json"), &serde_json::to_vec(status).expect("serializes"), false)
    }

    /// Reclaim a task's space once the server has its final status (P3.12).
    pub fn remove_task(&self, id: AssignmentId) {
        let _ = std::fs::remove_dir_all(self.task_dir(id));
    }

    /// Every held task: its assignment and, if it finished, its unacknowledged outcome.
    pub fn held_tasks(&self) -> Vec<(Assignment, Option<AssignmentStatus>)> {
        let Ok(entries) = std::fs::read_dir(self.root.join("tasks")) else { return Vec::new() };
        let mut held = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let assignment = std::fs::read(dir.join("assignment.json")).ok().and_then(|b| serde_json::from_slice::<Assignment>(&b).ok());
            match assignment {
                Some(assignment) => {
                    let outcome = std::fs::read(dir.join("outcome.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
                    held.push((assignment, outcome));
                }
                // A folder without a readable assignment is debris of a crash mid-write.
                None => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        held.sort_by_key(|(a, _)| a.assignment);
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"first", true).unwrap();
        write_atomic(&path, b"second", false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }
}
