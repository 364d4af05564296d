//! The model's invariants, checked in full (tests, the simulator).

use super::*;

impl Scheduler {
    /// Checks every internal invariant (for tests): counts, index membership, capacity.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut copies = 0u64;
        let mut indexed = 0usize;
        for (slot, record) in self.providers.iter().enumerate() {
            let Some(record) = record else { continue };
            let slot = slot as u32;
            if record.copies.len() as u32 > record.slots {
                return Err(format!("{} holds {} copies in {} slots", record.id, record.copies.len(), record.slots));
            }
            if record.plan_used != 0 {
                return Err(format!("{} has plan_used {}", record.id, record.plan_used));
            }
            copies += record.copies.len() as u64;
            let want = Self::wants_index(record);
            if want != record.index_at.is_some() {
                return Err(format!("{} indexed {:?}, wanted {}", record.id, record.index_at, want));
            }
            if let Some(at) = record.index_at {
                indexed += 1;
                if at.bucket != speed_bucket(record.effective_speed) {
                    return Err(format!("{} in bucket {} for speed {}", record.id, at.bucket, record.effective_speed));
                }
            }
            for task in &record.copies {
                let node = self
                    .tasks
                    .get(task)
                    .and_then(|t| t.node.as_ref())
                    .ok_or(format!("{task} on {} is not running", record.id))?;
                if !node.members.iter().any(|m| m.slot == slot) {
                    return Err(format!("{task} on {} is not a member", record.id));
                }
                if !self.busy.contains(&(node.class, node.priority, record.busy_bucket, slot, *task)) {
                    return Err(format!("{task} on {} missing from busy", record.id));
                }
            }
            let watched = self.silent_watch.contains(&(record.last_contact_ms, slot));
            if watched != (!record.connected && !record.copies.is_empty()) {
                return Err(format!("{} silent watch {}", record.id, watched));
            }
        }
        if copies != self.copies_running || self.busy.len() as u64 != copies {
            return Err(format!("copies {} counted {} busy {}", copies, self.copies_running, self.busy.len()));
        }
        if indexed != self.index.len() {
            return Err(format!("indexed {} but index holds {}", indexed, self.index.len()));
        }
        let mut waiting = 0u64;
        let mut nodes = 0u64;
        for (key, task) in &self.tasks {
            let job = self.jobs.get(&task.job).ok_or(format!("{key} without job"))?;
            let in_waiting = job.waiting.contains(&(Reverse(task.priority), task.seq, *key));
            match &task.node {
                Some(node) => {
                    nodes += 1;
                    if in_waiting || node.members.is_empty() {
                        return Err(format!("{key} running yet waiting or empty"));
                    }
                    let mut slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
                    slots.sort_unstable();
                    slots.dedup();
                    if slots.len() != node.members.len() {
                        return Err(format!("{key} twice on one provider"));
                    }
                }
                None => {
                    waiting += 1;
                    if !in_waiting {
                        return Err(format!("{key} neither running nor waiting"));
                    }
                }
            }
        }
        if waiting != self.tasks_waiting || nodes != self.nodes_running {
            return Err(format!("waiting {waiting}/{} nodes {nodes}/{}", self.tasks_waiting, self.nodes_running));
        }
        for (key, job) in &self.jobs {
            let running = self.tasks.values().filter(|t| t.job == *key && t.node.is_some()).count() as u32;
            if running != job.nodes_running {
                return Err(format!("{key} counts {} nodes, has {running}", job.nodes_running));
            }
            if job.waiting.is_empty() == self.jobs_waiting.contains(key) {
                return Err(format!("{key} waiting set out of step"));
            }
        }
        Ok(())
    }
}
