//! Priorities across the system with preemption (P5.6), carried out over the store: when more
//! tasks wait than engines have room for, the operator's policy
//! (`idlegrid_scheduler::preempt`) names running copies of lower priority, and their engines
//! are told `Stop`; each checkpoints and hands its task back suspended, the task is queued
//! again (to resume from its checkpoint), and the freed slot goes to the waiting task in the
//! next pass. Runs in maintenance, after the scheduling pass.

use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_scheduler::preempt::{self, RunningCopy};
use idlegrid_store::{AssignmentRow, StoreError, Tx};

use crate::{Coordinator, Effects};

/// Waiting tasks considered per pass.
const WAITING_MAX: u32 = 64;
/// Engines whose running copies are considered per pass.
const PROVIDERS_SCAN_MAX: u32 = 1000;

fn stop_key(assignment: &AssignmentRow) -> String {
    format!("preempt/stop/{}", assignment.id)
}

fn count_key(task: idlegrid_store::TaskKey) -> String {
    format!("preempt/count/{task}")
}

fn count_of(tx: &mut dyn Tx, key: &str) -> Result<u32, StoreError> {
    Ok(tx.meta(key)?.and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok()).map_or(0, u32::from_be_bytes))
}

impl Coordinator {
    /// Ask back running copies of lower priority for the tasks that wait beyond the room there
    /// is; returns how many were asked.
    pub(crate) fn preempt_for_waiting(
        &self,
        tx: &mut dyn Tx,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u32, StoreError> {
        let policy = self.config.preemption;
        if !policy.enabled {
            return Ok(0);
        }
        let waiting = tx.queued_tasks(WAITING_MAX)?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let since = now_ms.saturating_sub(self.config.provider_silence_ms_max);
        let room: u64 = tx.providers_with_room(since)?.iter().map(|r| u64::from(r.room)).sum();
        if waiting.len() as u64 <= room {
            return Ok(0);
        }
        let mut copies = Vec::new();
        let mut rows = Vec::new();
        let mut stopping = 0u64;
        for provider in tx.providers_heard_since(since, PROVIDERS_SCAN_MAX)? {
            if provider.session.is_none() {
                continue;
            }
            for assignment in tx.active_assignments_of_provider(&provider.id)? {
                let Some(task) = tx.task_by_key(assignment.task)? else { continue };
                let asked = tx.meta(&stop_key(&assignment))?.is_some();
                stopping += u64::from(asked);
                let protected = asked || self.is_benchmark(&task) || tx.spot_check(assignment.id)?.is_some();
                let preempted = count_of(tx, &count_key(task.key))?;
                copies.push(RunningCopy { priority: task.priority, preempted, protected });
                rows.push(assignment);
            }
        }
        // The first waiters take the room there is and the copies already asked back.
        let mut aged = Vec::new();
        for queued in waiting.iter().skip((room + stopping).min(usize::MAX as u64) as usize) {
            let Some(task) = tx.task_by_key(queued.key)? else { continue };
            let created = tx.job(task.job)?.map_or(now_ms, |job| job.created_ms);
            aged.push(policy.aged(queued.priority, now_ms.saturating_sub(created)));
        }
        let victims = preempt::victims(&policy, &aged, &copies);
        for &victim in &victims {
            let assignment = &rows[victim];
            tx.set_meta(&stop_key(assignment), &now_ms.to_be_bytes())?;
            let key = count_key(assignment.task);
            let count = count_of(tx, &key)?.saturating_add(1);
            tx.set_meta(&key, &count.to_be_bytes())?;
            tracing::info!(
                assignment = %assignment.id,
                provider = %assignment.provider,
                priority = copies[victim].priority,
                times = count,
                "task preempted for a waiting task of a higher priority"
            );
            self.tell_provider(tx, &assignment.provider, &ServerToProvider::Stop { assignment: assignment.id }, fx)?;
        }
        Ok(victims.len() as u32)
    }
}
