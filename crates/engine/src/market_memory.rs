//! Memory this engine's provider sold on the market, as the engine applies it: the server says
//! how much is reserved for buyers (`MarketContracts`) and, just before a buyer's task, the
//! memory granted to that assignment (`MarketMemoryGrant`). A granted task may use up to its
//! grant (above the owner's usual per-task cap, within the engine's memory); every other task
//! is held to what the reservation leaves, one by one and all together. Pure decisions, used by
//! the engine's core.

use std::collections::{BTreeMap, VecDeque};

use idlegrid_types::AssignmentId;

/// Grants kept for tasks that have not arrived yet, at most (the oldest go first).
pub const PENDING_GRANTS_MAX: usize = 4096;

/// The reservation and the grants waiting for their tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketMemory {
    /// Bytes reserved for buyers by active contracts.
    pub reserved_bytes: u64,
    pending: BTreeMap<AssignmentId, u64>,
    order: VecDeque<AssignmentId>,
}

impl MarketMemory {
    /// The server granted `bytes` to the task of `assignment` (it arrives next).
    pub fn grant(&mut self, assignment: AssignmentId, bytes: u64) {
        if self.pending.insert(assignment, bytes).is_none() {
            self.order.push_back(assignment);
        }
        while self.order.len() > PENDING_GRANTS_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.pending.remove(&oldest);
            }
        }
    }

    /// The grant of a task that just arrived, taken out of the pending ones.
    pub fn take(&mut self, assignment: AssignmentId) -> Option<u64> {
        let grant = self.pending.remove(&assignment)?;
        self.order.retain(|id| *id != assignment);
        Some(grant)
    }

    /// The memory a task may use: what its job asks, capped by its grant (within the engine's
    /// memory) or, without one, by the owner's per-task cap and what the reservation leaves.
    pub fn task_cap(&self, asked: u64, grant: Option<u64>, task_max: u64, engine_max: u64) -> u64 {
        match grant {
            Some(granted) => asked.min(granted.max(task_max).min(engine_max)),
            None => asked.min(task_max).min(self.left_for_others(engine_max)),
        }
    }

    /// What tasks without a grant may use together.
    pub fn left_for_others(&self, engine_max: u64) -> u64 {
        engine_max.saturating_sub(self.reserved_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn a_granted_task_may_use_its_grant_and_others_what_remains() {
        let memory = MarketMemory { reserved_bytes: 300 * MB, ..MarketMemory::default() };
        // The buyer's task asks 512 MB: granted 200 MB above the owner's 64 MB cap.
        assert_eq!(memory.task_cap(512 * MB, Some(200 * MB), 64 * MB, 1024 * MB), 200 * MB);
        // A grant never lowers the usual cap, nor raises a task above what it asks.
        assert_eq!(memory.task_cap(512 * MB, Some(10 * MB), 64 * MB, 1024 * MB), 64 * MB);
        assert_eq!(memory.task_cap(100 * MB, Some(200 * MB), 64 * MB, 1024 * MB), 100 * MB);
        // Nor above the engine's memory.
        assert_eq!(memory.task_cap(8192 * MB, Some(4096 * MB), 64 * MB, 1024 * MB), 1024 * MB);
        // Others: the usual cap, and never beyond what the reservation leaves.
        assert_eq!(memory.task_cap(512 * MB, None, 64 * MB, 1024 * MB), 64 * MB);
        assert_eq!(memory.task_cap(800 * MB, None, 900 * MB, 1024 * MB), 724 * MB);
        let all = MarketMemory { reserved_bytes: 2048 * MB, ..MarketMemory::default() };
        assert_eq!(all.task_cap(512 * MB, None, 64 * MB, 1024 * MB), 0);
        assert_eq!(all.left_for_others(1024 * MB), 0);
    }

    #[test]
    fn grants_are_taken_once_and_bounded() {
        let mut memory = MarketMemory::default();
        memory.grant(AssignmentId(1), 5);
        memory.grant(AssignmentId(1), 6);
        assert_eq!(memory.take(AssignmentId(1)), Some(6));
        assert_eq!(memory.take(AssignmentId(1)), None);
        for id in 0..(PENDING_GRANTS_MAX as u64 + 10) {
            memory.grant(AssignmentId(id), id);
        }
        assert_eq!(memory.take(AssignmentId(0)), None, "the oldest went first");
        assert_eq!(memory.take(AssignmentId(PENDING_GRANTS_MAX as u64 + 9)), Some(PENDING_GRANTS_MAX as u64 + 9));
    }
}
